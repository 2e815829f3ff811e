"""One batch orchestration (issue 27): the Batch tab runs the ``batch`` command's steps (jobs/batch_job.py), so it
checks the output folder and sweeps what dead writers left, as the command always did."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from emotion2vec_webui.audio.signals import noise, tone, write_audio
from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.jobs.batch import BatchOptions
from emotion2vec_webui.jobs.batch_job import prepare_batch
from emotion2vec_webui.jobs.inputs import discover_inputs
from tests.head_data import write_head


@pytest.fixture
def clips(tmp_path) -> Path:
    folder = tmp_path / "clips"
    folder.mkdir()
    write_audio(folder / "a.wav", tone(0.8, 16000), 16000, "wav")
    write_audio(folder / "b.wav", noise(0.8, 16000, seed=1), 16000, "wav")
    return folder


@pytest.fixture
def service(engine, settings, clips):
    from emotion2vec_webui.runs.inference.service import Service

    s = dataclasses.replace(settings, input_dirs=(clips,), heads_dir=clips.parent / "heads")
    service = Service(s, engine)
    service.start()
    yield service
    service.stop()


def _stale_temp(folder: Path) -> Path:
    """A temporary folder a writer that died left behind (hidden, an hour old)."""
    stale = folder / ".tmp-deadbeef-interrupted"
    stale.mkdir(parents=True)
    (stale / "result.json").write_text("{}")
    os.utime(stale, (0, 0))
    return stale


def test_ui_batch_sweeps_stale_temps_like_the_cli(service, clips):
    from emotion2vec_webui.ui.batch_tab import run_ui_batch

    outputs = Path(service.settings.output_dir)
    stale = _stale_temp(outputs)
    html, table, *_ = run_ui_batch(service, None, str(clips), "utterance", False)
    assert "2 ok, 0 failed" in html and len(table) == 2
    assert not stale.exists()  # the CLI's start-up sweep, now the page's too


def test_ui_batch_refuses_an_unusable_output_folder_before_any_work(service, clips):
    from emotion2vec_webui.ui.batch_tab import run_ui_batch

    blocked = clips.parent / "not_a_folder"
    blocked.write_text("a file where the outputs should be")
    service.settings = dataclasses.replace(service.settings, output_dir=blocked)
    with pytest.raises(E2VError) as err:
        run_ui_batch(service, None, str(clips), "utterance", False)
    assert err.value.code == "storage_unavailable" and str(blocked) in err.value.message


def test_a_head_for_another_backbone_stops_the_page_before_a_folder_is_made(service, clips):
    from emotion2vec_webui.ui.batch_tab import run_ui_batch

    write_head(Path(service.settings.heads_dir) / "foreign", checkpoint="f" * 64)
    outputs = Path(service.settings.output_dir)
    with pytest.raises(E2VError) as err:
        run_ui_batch(service, None, str(clips), "utterance", False, head="foreign")
    assert err.value.code == "head_mismatch"
    assert not outputs.exists() or not list(outputs.glob("batch_*"))


def test_prepare_then_run_resumes_with_nothing_left(engine, settings, clips, tmp_path):
    """The CLI's path (no execute: the batch loads nothing when nothing is left to do)."""
    items = discover_inputs(clips)
    first = prepare_batch(items, settings, BatchOptions(), str(clips), batch_dir=tmp_path / "b")
    assert first.skipped == 0 and len(first.todo) == 2
    first.execute = lambda fn: fn(engine)  # the tiny engine already loaded
    report = first.run()
    assert report.failed == 0 and (tmp_path / "b" / "report.txt").is_file()
    again = prepare_batch(items, settings, BatchOptions(), str(clips), batch_dir=tmp_path / "b", resume=True)
    assert again.todo == [] and again.skipped == 2
    assert again.run().skipped == 2  # no engine was needed
