"""The ``batch`` command: a real CLI process over 10 of 20 clips, kill and resume, labels, batched calls."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from emotion2vec_webui.audio.signals import noise, tone, write_audio
from emotion2vec_webui.jobs.batch import BatchOptions, classify_group, finish_batch, open_batch, run_local
from emotion2vec_webui.jobs.inputs import discover_inputs
from emotion2vec_webui.labels import EMOTIONS
from emotion2vec_webui.runs.recognize import RecognizeOptions
from emotion2vec_webui.runs.storage import RUN_FILES, RUN_ID_RE

CORRUPT = {"c06.wav": b"RIFF\x10\x00\x00\x00WAVEjunk" * 8, "c13.flac": b"not audio at all\n" * 20}


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    """20 short clips (tones and noise, 1–1.95 s, a few formats and rates), 2 of them corrupt."""
    folder = tmp_path_factory.mktemp("clips")
    for i in range(20):
        name = f"c{i:02d}.flac" if i % 4 == 1 else f"c{i:02d}.wav"
        if name in CORRUPT:
            (folder / name).write_bytes(CORRUPT[name])
            continue
        seconds = 1.0 + 0.05 * i
        rate = 22050 if i % 3 == 0 else 16000
        audio = tone(seconds, rate, freq=140 + 25 * i) if i % 2 else noise(seconds, rate, seed=i)
        write_audio(folder / name, audio, rate, "flac" if name.endswith(".flac") else "wav")
    return folder


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "emotion2vec_webui", "--log-level", "WARNING", "batch", *args]


def _rows(batch_dir: Path) -> list[dict]:
    path = batch_dir / "summary.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def _check_complete(batch_dir: Path, rows: list[dict]) -> None:
    folders = [p for p in batch_dir.iterdir() if p.is_dir()]
    # a write the kill interrupted left its hidden .tmp-<pid>-… folder; --resume swept it (the pid is dead)
    assert not [p.name for p in folders if p.name.startswith(".")], [p.name for p in folders]
    runs = sorted(p for p in folders if not p.name.startswith("."))
    assert all(RUN_ID_RE.match(p.name) for p in runs), [p.name for p in runs]
    assert sorted(r["run_folder"] for r in rows if r["status"] == "ok") == [p.name for p in runs]
    for run in runs:
        assert {"result.json", "processed_audio.wav", "run.log"} <= {p.name for p in run.iterdir()} <= set(RUN_FILES)


def test_cli_batch_killed_then_resumed(clips, tiny_model_dir, tmp_path):
    """10 clips, 2 corrupt: killed midway, resumed, → 8 ok + 2 error rows, no input done twice, exit 1.

    10 of the module's 20 clips (c00–c07, c12, c13: both corrupt ones, wav and flac, 16 and 22.05 kHz, tones and
    noise, the first three good as before):
    the kill still lands mid-batch (rows come one by one with ``--batch-size 1`` and the kill follows the third
    within a 20 ms poll) and the resume still has done, interrupted and new inputs to tell apart; the 10 more rows
    of the 20 only added their run-folder writes to the two processes' start.
    """
    folder = tmp_path / "clips"
    folder.mkdir()
    for name in [f"c{i:02d}.wav" for i in (0, 2, 3, 4, 6, 7, 12)] + [f"c{i:02d}.flac" for i in (1, 5, 13)]:
        (folder / name).write_bytes((clips / name).read_bytes())
    assert set(CORRUPT) <= {p.name for p in folder.iterdir()}
    total = 10
    batch_dir = tmp_path / "b"
    args = [str(folder), "--model", str(tiny_model_dir), "--device", "cpu", "--batch-dir", str(batch_dir)]
    log = (tmp_path / "first.log").open("w")
    proc = subprocess.Popen(_cli(*args, "--batch-size", "1"), stdout=log, stderr=log, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while len(_rows(batch_dir)) < 3 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    first = _rows(batch_dir)
    assert 3 <= len(first) < total, f"the batch was not killed midway ({len(first)} rows)"
    assert not (batch_dir / "summary.csv").exists()  # written at the end only
    done_before = {r["file"]: r["run_folder"] for r in first if r["status"] == "ok"}

    proc = subprocess.run(_cli(*args, "--resume"), capture_output=True, text=True, timeout=240)
    assert proc.returncode == 1, proc.stderr[-2000:]
    rows = _rows(batch_dir)
    assert len(rows) == total and len({r["file"] for r in rows}) == total  # no duplicates
    after = {r["file"]: r["run_folder"] for r in rows}
    assert all(after[f] == run for f, run in done_before.items())  # done inputs were not redone
    _check_complete(batch_dir, rows)  # exactly one complete run folder per ok input

    bad = {Path(r["file"]).name: r for r in rows if r["status"] == "error"}
    assert set(bad) == set(CORRUPT)
    assert all(r["error_code"] == "audio_undecodable" and r["error_message"] for r in bad.values())
    ok = [r for r in rows if r["status"] == "ok"]
    assert len(ok) == total - 2
    for r in ok:
        assert r["emotion"] in EMOTIONS and abs(sum(r[k] for k in EMOTIONS) - 1) < 1e-4
        assert r["confidence"] == max(r[k] for k in EMOTIONS)
        assert 0.9 < r["duration_s"] < 2.0
    csv_lines = (batch_dir / "summary.csv").read_text().splitlines()
    assert len(csv_lines) == total + 1 and csv_lines[0].startswith("file,label,status,emotion,confidence,angry")
    assert f"{total - 2} ok, 2 failed" in proc.stdout
    skipped = int(re.search(r"(\d+) done before", proc.stdout).group(1))
    assert skipped - len(done_before) in (0, 1)  # +1 when a run landed just before the kill (adopted)
    assert not (batch_dir / "metrics.json").exists()  # no labels, no evaluation
    assert "no labels found (looked for: folder-per-label, CSV label column, RAVDESS/CREMA-D names)" in proc.stdout
    assert "未找到标签" in proc.stdout  # the report says it in both languages


def _labelled_list(clips: Path, tmp_path: Path) -> Path:
    labels = ["calm", "angry", "happy", "sad", "fear", "surprise"]
    names = sorted(p.name for p in clips.iterdir() if p.name not in CORRUPT)[:12]
    lines = ["path,label"] + [f"{clips / n},{labels[i % len(labels)]}" for i, n in enumerate(names)]
    lines.append(f"{clips / 'c06.wav'},sad")  # labelled but corrupt: counted as failed, not scored
    listing = tmp_path / "list.csv"
    listing.write_text("\n".join(lines) + "\n")
    return listing


def test_labelled_list_gives_metrics(clips, engine, settings, tmp_path):
    items = discover_inputs(_labelled_list(clips, tmp_path))
    options = BatchOptions(batch_size=4, workers=2, label_map={"surprise": "sad"})
    summary, todo = open_batch(items, tmp_path / "batch", resume=False, manifest={})
    s = settings.__class__(**{**settings.__dict__, "output_dir": summary.folder})
    audio_s = run_local(todo, summary, s, options, lambda pairs: classify_group(engine, pairs, s, options))
    report = finish_batch(summary, items, options, 0, audio_s, 1.0)
    mapping = {"calm": "neutral", "angry": "angry", "happy": "happy", "sad": "sad", "fear": "fearful"}
    mapping["surprise"] = "sad"  # the user's --label-map wins over the default (surprised)
    scored = [r for r in report.rows if r["status"] == "ok"]
    assert len(scored) == 12 and report.failed == 1
    right = sum(mapping[r["label"]] == r["emotion"] for r in scored)
    metrics = json.loads((summary.folder / "metrics.json").read_text())
    assert metrics["count"] == 12 and metrics["labelled_failed"] == 1
    assert metrics["accuracy"] == pytest.approx(right / 12)
    assert sum(map(sum, metrics["confusion"])) == 12
    assert (summary.folder / "confusion_matrix.png").stat().st_size > 1000
    assert (summary.folder / "confusion_matrix.csv").exists()


class _BatchingEngine:
    """The real engine plus a ``recognize_batch`` that records its calls."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.info = engine.info
        self.calls: list[int] = []

    def recognize(self, *a, **kw):
        return self.engine.recognize(*a, **kw)

    def recognize_batch(self, waveforms, granularity="utterance", extract_embedding=True, max_batch=None, window_s=30.0):
        self.calls.append(len(waveforms))
        # the real length-bucketed, padded batches (issue 7)
        return self.engine.recognize_batch(
            waveforms, granularity, extract_embedding, max_batch=len(waveforms), window_s=window_s
        )


def test_batched_calls_give_the_same_results(clips, engine, settings, tmp_path):
    from emotion2vec_webui.audio.decode import decode_audio

    items = [it for it in discover_inputs(clips) if Path(it.file).name not in CORRUPT][:5]
    pairs = [(it, decode_audio(it.file)) for it in items]
    options = BatchOptions(RecognizeOptions("frame", True), batch_size=5)
    one = classify_group(engine, pairs, settings, options)
    batching = _BatchingEngine(engine)
    many = classify_group(batching, pairs, settings, options)
    assert batching.calls == [5]
    for a, b in zip(one, many, strict=True):
        assert a.result["emotion"] == b.result["emotion"]
        assert all(abs(a.result["scores"][k] - b.result["scores"][k]) < 1e-5 for k in EMOTIONS)
        assert a.engine_result.embedding.shape == b.engine_result.embedding.shape
        assert a.run.path != b.run.path and (b.run.path / "embedding.npy").exists()


def test_ui_batch_folder_uploads_and_refusals(clips, engine, settings, tmp_path):
    import zipfile

    import gradio as gr

    from emotion2vec_webui.errors import E2VError
    from emotion2vec_webui.runs.inference.service import Service
    from emotion2vec_webui.ui.batch_tab import build_batch_tab, run_ui_batch

    service = Service(dataclasses.replace(settings, input_dirs=(clips,)), engine)
    service.start()
    try:
        seen = []
        html, table, csv_path, zip_path, matrix, head_matrix = run_ui_batch(
            service, None, str(clips), "utterance", False, lambda p, **kw: seen.append(p)
        )
        assert len(table) == 20 and sum(status == "error" for status in table.iloc[:, 1]) == 2
        assert "18 ok, 2 failed" in html and matrix is None and head_matrix is None
        assert "no labels found (looked for: folder-per-label" in html and "未找到标签" in html  # said on the page
        assert seen[0] == (0, 20) and seen[-1] == (20, 20)
        with zipfile.ZipFile(zip_path) as zf:
            names = zf.namelist()
        assert any(n.endswith("/summary.csv") for n in names) and sum(n.endswith("/result.json") for n in names) == 18
        assert Path(csv_path).read_text().count("\n") == 21

        upload = tmp_path / "up" / "03-01-05-01-01-01-01.wav"  # RAVDESS name: angry
        upload.parent.mkdir()
        upload.write_bytes((clips / "c00.wav").read_bytes())
        html, table, *_, matrix, _head = run_ui_batch(service, [str(upload)], "", "frame", True)
        assert len(table) == 1 and table.iloc[0, 1] == "ok" and matrix and Path(matrix).exists()

        for folder in (str(tmp_path), "/etc", f"{clips}/.."):
            with pytest.raises(E2VError) as err:
                run_ui_batch(service, None, folder, "utterance", False)
            assert err.value.code == "forbidden"
        closed = Service(settings, engine)  # E2V_INPUT_DIRS unset: uploads only
        with pytest.raises(E2VError) as err:
            run_ui_batch(closed, None, str(clips), "utterance", False)
        assert err.value.code == "forbidden"
    finally:
        service.stop()
    with gr.Blocks():
        build_batch_tab(service)
