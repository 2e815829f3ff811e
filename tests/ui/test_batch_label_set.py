"""The Batch tab's benchmark label set (``batch --label-set``): its choices are label_sets.py's, the batch is scored
on the chosen set as the CLI scores it, and an unknown set is refused before any work."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from emotion2vec_webui.audio.signals import noise, tone, write_audio
from emotion2vec_webui.label_sets import LABEL_SETS


def test_the_label_set_choices_are_label_sets_py(engine, settings):
    import gradio as gr

    from emotion2vec_webui.runs.inference.service import Service
    from emotion2vec_webui.ui.batch_tab import build_batch_tab

    with gr.Blocks() as demo:
        build_batch_tab(Service(settings, engine))
    (picker,) = [b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "batch_label_set"]
    assert [value for _label, value in picker.choices] == ["", *LABEL_SETS] and picker.value == ""
    assert all(" / " in label and "类" in label for label, _ in picker.choices)  # 中文 / English
    assert any("ravdess8" in label and "RAVDESS" in label for label, _ in picker.choices)


@pytest.fixture()
def ravdess(tmp_path) -> Path:
    """Three clips with RAVDESS names: angry (05), sad (04), calm (02: outside a 4-class set)."""
    folder = tmp_path / "ravdess"
    folder.mkdir()
    for i, emotion in enumerate(("05", "04", "02")):
        x = tone(1.0, 16000, freq=200.0 + 90 * i)[:, 0] + noise(1.0, 16000, amp=0.05, seed=i)[:, 0]
        write_audio(folder / f"03-01-{emotion}-01-01-01-0{i + 1}.wav", x, 16000, "wav")
    return folder


def test_ui_batch_scores_the_chosen_label_set(engine, settings, ravdess):
    from emotion2vec_webui.errors import E2VError
    from emotion2vec_webui.runs.inference.service import Service
    from emotion2vec_webui.ui.batch_tab import run_ui_batch

    service = Service(dataclasses.replace(settings, input_dirs=(ravdess,)), engine)
    service.start()
    try:
        html, table, csv_path, *_ = run_ui_batch(service, None, str(ravdess), "utterance", False, label_set="ravdess4")
        assert len(table) == 3 and set(table.iloc[:, 1]) == {"ok"}, table
        metrics = json.loads((Path(csv_path).parent / "metrics.json").read_text())
        block = metrics["label_set"]
        assert block["name"] == "ravdess4" and block["scored"] == 2 and block["dropped"] == 1  # calm: dropped
        assert "label set ravdess4" in html and "标签集 ravdess4" in html
        assert (Path(csv_path).parent / "label_set_confusion_matrix.csv").is_file()

        plain = run_ui_batch(service, None, str(ravdess), "utterance", False, label_set="")  # none: as before
        assert json.loads((Path(plain[2]).parent / "metrics.json").read_text()).get("label_set") is None
        assert "label set" not in plain[0]

        before = sorted(p.name for p in Path(csv_path).parent.parent.iterdir())
        with pytest.raises(E2VError) as err:
            run_ui_batch(service, None, str(ravdess), "utterance", False, label_set="iemocap99")
        assert err.value.code == "bad_request" and " / " in err.value.message and "iemocap4" in err.value.message
        assert sorted(p.name for p in Path(csv_path).parent.parent.iterdir()) == before  # refused before any work
    finally:
        service.stop()
