"""decode → engine → result.json → run folder, in process, on the tiny model."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import soundfile as sf

from emotion2vec_webui.audio.signals import tone, write_audio
from emotion2vec_webui.errors import AudioError
from emotion2vec_webui.runs.recognize import Recognition, RecognizeOptions
from tests.spec_check import check_result


@pytest.mark.parametrize("granularity", ["utterance", "frame"])
def test_result_and_run_folder(engine, settings, speech_wav, granularity):
    out = Recognition(settings, RecognizeOptions(granularity, True)).run(speech_wav, lambda fn: fn(engine))
    check_result(out.result, granularity)
    folder = out.run.path
    on_disk = json.loads((folder / "result.json").read_text("utf-8"))
    assert on_disk == out.result
    assert on_disk["model"]["random_weights"] is True
    wav, rate = sf.read(folder / "processed_audio.wav", dtype="float32")
    assert rate == 16000 and wav.ndim == 1
    emb = np.load(folder / "embedding.npy")
    assert list(emb.shape) == on_disk["embedding"]["shape"]
    assert emb.shape[-1] == engine.info.embedding_dim
    log = (folder / "run.log").read_text("utf-8")
    assert "decoded" in log and "inference" in log and "cpu" in log


def test_processed_audio_is_exactly_what_the_model_saw(engine, settings, tmp_path):
    src = write_audio(tmp_path / "a.ogg", tone(2.0, 44100, channels=2), 44100, "ogg")
    out = Recognition(settings, RecognizeOptions("utterance", True)).run(src, lambda fn: fn(engine))
    wav, _ = sf.read(out.run.path / "processed_audio.wav", dtype="float32")
    again = engine.recognize(wav, "utterance", True)
    assert again.scores == out.engine_result.scores
    np.testing.assert_array_equal(again.embedding, out.engine_result.embedding)


def test_bad_audio_writes_no_run_folder(engine, settings):
    with pytest.raises(AudioError):
        Recognition(settings).run(b"not audio at all", lambda fn: fn(engine), "x.wav")
    assert not settings.output_dir.exists() or not any(settings.output_dir.iterdir())


def test_truncated_input_carries_its_warning_into_result(engine, settings, tmp_path):
    data = write_audio(tmp_path / "t.wav", tone(2.0, 16000), 16000, "wav").read_bytes()
    out = Recognition(settings).run(data[: len(data) // 2], lambda fn: fn(engine), "t.wav")
    assert any("truncated" in w for w in out.result["warnings"])


def test_output_dir_setting_is_respected(engine, settings, tone_wav, tmp_path):
    other = dataclasses.replace(settings, output_dir=tmp_path / "elsewhere")
    out = Recognition(other).run(tone_wav, lambda fn: fn(engine))
    assert out.run.path.parent == (tmp_path / "elsewhere").resolve()
