"""The Batch and Conversation tabs offer REST's options, with choices from options.py (ui/option_controls.py)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from emotion2vec_webui import options as opt
from emotion2vec_webui.audio.signals import noise, tone, write_audio


def _components(blocks) -> dict:
    return {b.elem_id: b for b in blocks.blocks.values() if getattr(b, "elem_id", None)}


def _values(component) -> list:
    return [value for _label, value in component.choices]


def test_tab_choices_are_the_options_values(engine, settings):
    import gradio as gr

    from emotion2vec_webui.runs.inference.service import Service
    from emotion2vec_webui.ui.batch_tab import build_batch_tab
    from emotion2vec_webui.ui.conversation_tab import build_conversation_tab

    service = Service(settings, engine)
    with gr.Blocks() as demo:
        build_batch_tab(service)
        build_conversation_tab(service)
    c = _components(demo)
    assert _values(c["batch_granularity"]) == list(opt.GRANULARITY.values)
    for tab in ("batch", "conversation"):
        assert _values(c[f"{tab}_segmentation"]) == list(opt.SEGMENTATION.values)
        assert c[f"{tab}_segmentation"].value == opt.SEGMENTATION.default
        assert _values(c[f"{tab}_channels"]) == list(opt.CHANNEL_NAMES.values) and c[f"{tab}_channels"].allow_custom_value
        assert _values(c[f"{tab}_asr_model"]) == ["", *opt.ASR_MODEL_NAMES]  # "": the server's E2V_ASR_MODEL
        assert c[f"{tab}_num_speakers"].maximum == opt.NUM_SPEAKERS.high
    assert _values(c["batch_speakers"]) == list(opt.SPEAKERS.values)
    assert _values(c["conversation_speakers"]) == [v for v in opt.SPEAKERS.values if v != "none"]
    assert c["batch_audio_stream"].maximum == opt.AUDIO_STREAM.high
    assert "conversation_head_pick" in c and "batch_head_pick" in c
    labels = [label for comp in c.values() if getattr(comp, "choices", None) for label, _ in comp.choices]
    assert all(" / " in label for label in labels if label not in opt.ASR_MODEL_NAMES), labels  # 中文 / English


@pytest.fixture()
def stereo_clip(tmp_path) -> Path:
    (tmp_path / "clips").mkdir()
    left, right = tone(3.0, 16000, freq=220.0)[:, 0], noise(3.0, 16000, amp=0.2)[:, 0]
    return write_audio(tmp_path / "clips" / "call.wav", np.stack([left, right], axis=1), 16000, "wav")


def test_ui_batch_passes_rest_options_through(engine, settings, stereo_clip):
    from emotion2vec_webui.errors import E2VError
    from emotion2vec_webui.runs.inference.service import Service
    from emotion2vec_webui.ui.batch_tab import run_ui_batch

    service = Service(dataclasses.replace(settings, input_dirs=(stereo_clip.parent,)), engine)
    service.start()
    try:
        _html, table, csv_path, *_ = run_ui_batch(service, None, str(stereo_clip.parent), "utterance", False,
                                                  segmentation="vad", channels="right", audio_stream=0)  # fmt: skip
        assert len(table) == 1 and table.iloc[0, 1] == "ok", table
        (result_path,) = Path(csv_path).parent.glob("*/result.json")
        result = json.loads(result_path.read_text())
        assert result["audio"]["channels"] == "right" and result["audio"]["original_channels"] == 2
        assert result["audio"]["audio_stream"] == 0 and result["segments"] is not None  # vad: speech segments
        plain = run_ui_batch(service, None, str(stereo_clip.parent), "utterance", False)[2]
        (plain_path,) = Path(plain).parent.glob("*/result.json")
        plain_result = json.loads(plain_path.read_text())
        assert plain_result["audio"]["channels"] == "mix" and plain_result["segments"] is None  # the defaults
        for bad in ({"speakers": "two"}, {"channels": "middle"}, {"num_speakers": 99}, {"segmentation": "x"}):
            with pytest.raises(E2VError) as err:
                run_ui_batch(service, None, str(stereo_clip.parent), "utterance", False, **bad)
            assert err.value.code == "bad_request" and " / " in err.value.message, bad
    finally:
        service.stop()
