"""Speech-segment mode: silero-vad finds the phrases; each is classified as an utterance."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from emotion2vec_webui.audio.signals import espeak_available, speech, write_audio
from emotion2vec_webui.engine.vad import speech_segments, vad_segments
from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.labels import EMOTIONS
from emotion2vec_webui.runs.recognize import Recognition, RecognizeOptions

ROOT = Path(__file__).resolve().parents[2]
PHRASES = ["The weather is lovely today.", "I cannot believe you did that!", "Please close the door when you leave."]


@pytest.fixture(scope="module")
def phrases():
    """Three espeak-ng phrases separated by 1 s of silence: (waveform, [(start_s, end_s)] of each phrase)."""
    if not espeak_available():
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    import soxr

    parts, spans, pos = [np.zeros(8000, np.float32)], [], 8000
    for text in PHRASES:
        data, rate = speech(text)
        data = soxr.resample(data, rate, 16000).astype(np.float32)
        voiced = np.flatnonzero(np.abs(data) > 0.01)  # espeak pads with silence: measure the voiced part
        spans.append(((pos + voiced[0]) / 16000, (pos + voiced[-1]) / 16000))
        parts += [data, np.zeros(16000, np.float32)]
        pos += len(data) + 16000
    return np.concatenate(parts), spans


def test_segments_match_the_phrases(phrases):
    wave, spans = phrases
    found = speech_segments(wave)
    assert len(found) == len(spans)
    for (s, e), (ps, pe) in zip(found, spans, strict=True):
        assert abs(s - ps) < 0.25 and abs(e - pe) < 0.35, f"found {s:.2f}–{e:.2f}, phrase {ps:.2f}–{pe:.2f}"
    assert all(a[1] <= b[0] for a, b in zip(found, found[1:], strict=False))


def test_silence_has_no_speech():
    assert speech_segments(np.zeros(32000, np.float32)) == []


def test_vad_imports_neither_torch_nor_silero_vad():
    """The VAD runs silero's ONNX graph: no torch (nor ``import silero_vad``, which sets torch to one thread)."""
    code = (
        "import sys, numpy as np\n"
        "from emotion2vec_webui.engine.vad import speech_segments\n"
        "speech_segments(np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32))\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'silero_vad', 'funasr'}))\n"
    )
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("granularity", ["utterance", "frame"])
def test_vad_mode_in_the_pipeline(engine, settings, phrases, tmp_path, granularity):
    wave, spans = phrases
    wav = write_audio(tmp_path / "phrases.wav", wave, 16000, "wav")
    r = Recognition(settings, RecognizeOptions(granularity, False, segmentation="vad")).run(wav, lambda fn: fn(engine)).result
    segs = r["segments"]
    assert len(segs) == len(spans)
    for s in segs:
        assert s["source"] == "vad" and 0 <= s["start_s"] < s["end_s"] <= r["audio"]["duration_s"]
        assert list(s["scores"]) == list(EMOTIONS) and abs(sum(s["scores"].values()) - 1) < 1e-4
        assert s["emotion"] == max(s["scores"], key=s["scores"].get)
    assert (r["frames"] is not None) == (granularity == "frame")


def test_each_segment_is_classified_as_its_own_utterance(engine, phrases):
    wave, _ = phrases
    segs = vad_segments(engine, wave)
    first = segs[0]
    alone = engine.recognize(wave[int(first["start_s"] * 16000) : int(first["end_s"] * 16000)], "utterance", False)
    assert first["scores"] == pytest.approx(alone.scores, abs=1e-5)


def test_unknown_segmentation_is_a_bad_request(engine):
    with pytest.raises(E2VError) as err:
        vad_segments(engine, np.zeros(16000, np.float32), "sentences")
    assert err.value.code == "bad_request"
