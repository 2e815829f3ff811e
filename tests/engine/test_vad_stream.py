"""Speech detection while the audio arrives (engine/vad_stream.py): the offline spans, told chunk by chunk."""

from __future__ import annotations

import numpy as np
import pytest

from emotion2vec_webui.engine import vad
from emotion2vec_webui.engine.vad_stream import SpeechTracker
from emotion2vec_webui.model import silero_onnx


@pytest.fixture(scope="module")
def talk(speech_wav) -> np.ndarray:
    """The speech fixture three times with pauses and a burst of noise between: 16 kHz float32."""
    import soundfile as sf
    import soxr

    data, rate = sf.read(speech_wav, dtype="float32")
    sentence = soxr.resample(data, rate, 16000).astype(np.float32)
    rng = np.random.default_rng(1)
    pause = np.zeros(12000, np.float32)
    burst = (rng.standard_normal(1200) * 0.3).astype(np.float32)  # 75 ms: too short to be speech
    return np.concatenate([pause, sentence, pause, burst, pause, sentence * 0.5, pause, sentence, pause[:3000]])


def _offline(wave: np.ndarray, max_segment_s=None) -> list[tuple[int, int]]:
    probs = silero_onnx.speech_probabilities(wave)
    ms = lambda s: int(s * 1000) * 16  # noqa: E731 - samples as vad.speech_segments computes them
    return vad.speech_spans(probs, len(wave), silero_onnx.FRAME, threshold=vad.THRESHOLD, min_speech=ms(vad.MIN_SPEECH_S),
                            min_silence=ms(vad.MIN_SILENCE_S), pad=ms(vad.PAD_S))  # fmt: skip


def _streamed(wave: np.ndarray, sizes, tracker: SpeechTracker | None = None):
    tracker = tracker or SpeechTracker()
    events, at, told_at = [], 0, []
    for n in sizes:
        if at >= len(wave):
            break
        for event in tracker.push(wave[at : at + n]):
            events.append(event)
            told_at.append(at + n)  # how much audio had arrived when it was told
        at += n
    events += tracker.flush()
    told_at += [len(wave)] * (len(events) - len(told_at))
    return events, told_at


@pytest.mark.parametrize("seed", [0, 1])
def test_chunk_by_chunk_spans_equal_the_offline_spans(talk, seed):
    rng = np.random.default_rng(seed)
    events, _ = _streamed(talk, rng.integers(1, 4000, size=len(talk)))
    offline = _offline(talk)
    assert len(offline) >= 3
    assert [(e.start, e.end) for e in events if e.kind == "end"] == offline
    assert [e.start for e in events if e.kind == "start"] == [s for s, _ in offline]
    kinds = [e.kind for e in events]
    assert kinds == ["start", "end"] * len(offline), kinds  # every span told as a start, then its end


def test_a_start_is_told_soon_after_speech_begins_and_an_end_after_the_pause(talk):
    events, told_at = _streamed(talk, [512] * (len(talk) // 512 + 1))
    for event, at in zip(events, told_at, strict=True):
        if event.kind == "start":  # min_speech (0.25 s) of speech, a frame or two, and the padding
            assert 0 < at - event.start <= int(0.45 * 16000), (event, at)
        else:  # min_silence (0.3 s) of pause after the speech (end includes 50 ms of padding)
            assert at - event.end <= int(0.4 * 16000) or at == len(talk), (event, at)


def test_a_long_span_is_cut_at_the_cap_and_goes_on(talk):
    uncapped, _ = _streamed(talk, [1600] * 400)
    assert any(e.end - e.start > 2 * 16000 for e in uncapped if e.kind == "end")  # without the cap: longer spans
    events, _ = _streamed(talk, [1600] * 400, SpeechTracker(max_segment_s=2.0))
    spans = [(e.start, e.end) for e in events if e.kind == "end"]
    assert all(e - s <= 2 * 16000 + 512 for s, e in spans), spans
    assert len(spans) > len([e for e in uncapped if e.kind == "end"])
    assert [e.kind for e in events] == ["start", "end"] * len(spans)
