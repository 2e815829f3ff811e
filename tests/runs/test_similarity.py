"""Similarity of two clips: cosine properties, the service entry point, and the CLI end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

from emotion2vec_webui.audio.decode import decode_audio
from emotion2vec_webui.audio.signals import noise, tone, write_audio
from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.runs.inference.service import Service
from emotion2vec_webui.runs.similarity import cosine, similarity_decoded, similarity_from_sources


def test_cosine_properties():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=64), rng.normal(size=64)
    assert cosine(a, a) == pytest.approx(1.0)
    assert cosine(a, -a) == pytest.approx(-1.0)
    assert cosine(a, b) == pytest.approx(cosine(b, a))
    assert -1 <= cosine(a, b) <= 1
    assert cosine(a, 3 * a) == pytest.approx(1.0)
    assert cosine(np.zeros(64), a) == 0.0


@pytest.fixture
def clips(tmp_path, speech_wav):
    other = write_audio(
        tmp_path / "noise.flac", tone(1.5, 22050, freq=330)[:, 0] + noise(1.5, 22050)[:, 0], 22050, "flac"
    )
    return speech_wav, other


def test_a_clip_is_identical_to_itself_and_order_does_not_matter(engine, clips):
    a, b = (decode_audio(p) for p in clips)
    same = similarity_decoded(engine, a, a)
    assert same["cosine"] == pytest.approx(1.0, abs=1e-6)
    ab, ba = similarity_decoded(engine, a, b), similarity_decoded(engine, b, a)
    assert ab["cosine"] == pytest.approx(ba["cosine"], abs=1e-6)
    assert -1 <= ab["cosine"] <= 1
    assert ab["a"] == ba["b"] and ab["b"] == ba["a"]
    assert set(ab["a"]) == {"emotion", "confidence", "scores", "source_name", "duration_s"}
    assert ab["a"]["source_name"] == clips[0].name and ab["b"]["duration_s"] == pytest.approx(1.5, abs=0.01)


def test_service_entry_point_takes_bytes_and_names_a_bad_clip(engine, settings, clips):
    service = Service(settings, engine)
    service.start()
    try:
        out = similarity_from_sources(service, clips[0].read_bytes(), "a.wav", str(clips[1]), None)
        assert out["a"]["source_name"] == "a.wav" and out["b"]["source_name"] == "noise.flac"
        with pytest.raises(E2VError) as err:
            similarity_from_sources(service, b"not audio at all", "bad.bin", str(clips[1]), None)
        assert err.value.code == "audio_undecodable" and "bad.bin" in err.value.message
    finally:
        service.stop()
    assert not list(settings.output_dir.glob("outputs_*")), "similarity writes no run folders"


def test_cli_end_to_end(tiny_model_dir, clips, tmp_path, capsys, monkeypatch):
    from tests.cli.test_cli import run_main  # the CLI's entry point in-process (the process is not under test)

    env = {"E2V_MODEL": str(tiny_model_dir), "E2V_DEVICE": "cpu"}
    ok = run_main(capsys, monkeypatch, "similarity", str(clips[0]), str(clips[1]), "--json", env=env)
    assert ok.returncode == 0, ok.stderr[-2000:]
    out = json.loads(ok.stdout.strip().splitlines()[-1])
    assert -1 <= out["cosine"] <= 1 and out["b"]["source_name"] == "noise.flac"
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF....WAVEjunk")
    fail = run_main(capsys, monkeypatch, "similarity", str(clips[0]), str(bad), env=env)
    assert fail.returncode == 2
    assert "broken.wav" in fail.stderr and "[audio_undecodable]" in fail.stderr
