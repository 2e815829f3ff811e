"""A nine-class calibration in the recognise flow: frames, VAD segments and the answer calibrated alike; abstention."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from emotion2vec_webui.engine.calibration import NINE, Calibration
from emotion2vec_webui.engine.result import softmax
from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.labels import EMOTIONS
from emotion2vec_webui.runs.recognize import Recognition, RecognizeOptions
from tests.spec_check import check_result

T = 0.5  # sharpens the tiny model's near-uniform scores: the change is easy to see


@pytest.fixture
def calibrated_settings(settings, tiny_model_dir, tmp_path):
    from emotion2vec_webui.runs.stores.calibration_store import write_calibration
    from emotion2vec_webui.runs.stores.head_store import checkpoint_sha256

    bias = np.linspace(-0.4, 0.4, 9)
    write_calibration(tmp_path / "heads", Calibration("sharp", NINE, tuple(EMOTIONS), T, bias,
                                                      checkpoint_sha256(tiny_model_dir)), b"", "test")  # fmt: skip
    write_calibration(tmp_path / "heads", Calibration("alien", NINE, tuple(EMOTIONS), 2.0, np.zeros(9), "0" * 64),
                      b"", "test")  # fmt: skip
    return dataclasses.replace(settings, heads_dir=tmp_path / "heads"), bias


def run(engine, settings, path, **options) -> dict:
    flow = Recognition(settings, RecognizeOptions(extract_embedding=False, **options), write=False)
    return flow.run(str(path), lambda fn: fn(engine), source_name=path.name).result


def calibrate(scores: list[float], bias) -> np.ndarray:
    return softmax(np.log(np.maximum(scores, 1e-300)) / T + bias)


def test_frames_segments_and_answer_are_calibrated_and_marked(engine, calibrated_settings, speech_wav):
    settings, bias = calibrated_settings
    plain = run(engine, settings, speech_wav, granularity="frame", segmentation="vad")
    got = run(engine, settings, speech_wav, granularity="frame", segmentation="vad", calibration="sharp",
              min_confidence=0.2)  # fmt: skip
    check_result(got, "frame")
    assert got["calibration"]["name"] == "sharp" and got["calibration"]["bias"] is True
    np.testing.assert_allclose([got["scores"][e] for e in EMOTIONS],
                               calibrate([plain["scores"][e] for e in EMOTIONS], bias), atol=2e-5)  # fmt: skip
    raw_plain, raw_got = np.array(plain["frames"]["raw_scores"]), np.array(got["frames"]["raw_scores"])
    np.testing.assert_allclose(raw_got, calibrate(raw_plain, bias), atol=1e-4)  # raw scores keep 4-5 digits
    assert len(got["segments"]) == len(plain["segments"]) >= 1
    for seg, seg_plain in zip(got["segments"], plain["segments"], strict=True):
        want = calibrate([seg_plain["scores"][e] for e in EMOTIONS], bias)
        np.testing.assert_allclose([seg["scores"][e] for e in EMOTIONS], want, atol=2e-5)
        assert seg["uncertain"] == (seg["confidence"] < 0.2)
    assert got["min_confidence"] == 0.2 and got["uncertain"] == (got["confidence"] < 0.2)


def test_a_calibration_of_another_model_is_refused(engine, calibrated_settings, tone_wav):
    settings, _ = calibrated_settings
    with pytest.raises(E2VError) as err:
        run(engine, settings, tone_wav, calibration="alien")
    assert err.value.code == "head_mismatch" and " / " in err.value.message
    with pytest.raises(E2VError) as err:
        run(engine, settings, tone_wav, calibration="nothing")
    assert err.value.code == "not_found"


def test_conversation_turns_are_calibrated_and_marked(engine, calibrated_settings, stereo_dialogue):
    settings, bias = calibrated_settings
    path, _ = stereo_dialogue
    plain = run(engine, settings, path, speakers="channels")
    got = run(engine, settings, path, speakers="channels", calibration="sharp", min_confidence=0.3)
    check_result(got)
    assert len(got["turns"]) == len(plain["turns"]) >= 2
    for turn, turn_plain in zip(got["turns"], plain["turns"], strict=True):
        want = calibrate([turn_plain["scores"][e] for e in EMOTIONS], bias)
        np.testing.assert_allclose([turn["scores"][e] for e in EMOTIONS], want, atol=2e-5)
        assert turn["emotion"] == EMOTIONS[int(np.argmax(want))]
        assert turn["uncertain"] == (turn["confidence"] < 0.3) and "uncertain" not in turn_plain
