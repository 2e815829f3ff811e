"""VAD segments are phrases (issue 17): long speech is split at its longest pauses, no segment over 10 s."""

from __future__ import annotations

import numpy as np
import pytest

from emotion2vec_webui.audio.signals import espeak_available, speech, tone
from emotion2vec_webui.engine.vad import MAX_SEGMENT_S, split_long_segments, vad_segments

TEXT = (
    "the quick brown fox jumps over the lazy dog while the band plays on and the people in the square keep "
    "talking about the weather and the market and the news from the city"
)


@pytest.fixture(scope="module")
def continuous_speech():
    """60 s of espeak-ng speech with no pause silero would split at: one sentence, repeated back to back."""
    if not espeak_available():
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    import soxr

    data, rate = speech(TEXT, speed=175)
    data = soxr.resample(data, rate, 16000).astype(np.float32)
    voiced = np.flatnonzero(np.abs(data) > 0.01)
    data = data[voiced[0] : voiced[-1] + 1]  # no leading or trailing silence: the copies run into each other
    return np.concatenate([data] * int(np.ceil(60 * 16000 / len(data))))[: 60 * 16000]


def test_sixty_seconds_of_speech_give_phrases(engine, continuous_speech):
    wave = continuous_speech
    segs = vad_segments(engine, wave)
    spans = [(s["start_s"], s["end_s"]) for s in segs]
    assert len(spans) >= 6
    assert all(e - s <= MAX_SEGMENT_S + 1e-6 for s, e in spans), spans  # no segment over 10 s
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False)), spans  # ordered, not overlapping
    voiced = np.flatnonzero(np.abs(wave) > 0.01) / 16000
    inside = np.zeros(len(voiced), bool)
    for s, e in spans:
        inside |= (voiced >= s - 1e-3) & (voiced <= e + 1e-3)
    assert inside.mean() > 0.99  # the segments cover the speech
    # the cuts fall in quiet places: each cut's 50 ms neighbourhood is far quieter than the speech around it
    rms = float(np.sqrt(np.mean(wave**2)))
    for (_, cut), _next in zip(spans, spans[1:], strict=False):
        around = wave[int((cut - 0.025) * 16000) : int((cut + 0.025) * 16000)]
        assert np.sqrt(np.mean(around**2)) < 0.5 * rms, cut


def test_split_at_the_longest_pause_not_the_middle():
    """20 s of tone with a short dip at 6 s and a long pause at 13 s: the cut goes into the long pause."""
    wave = tone(20.0, 16000)[:, 0].copy()
    wave[int(5.95 * 16000) : int(6.05 * 16000)] = 0  # 0.1 s
    wave[int(12.8 * 16000) : int(13.2 * 16000)] *= 0.01  # 0.4 s, quieter on average over the pause window
    parts = split_long_segments(wave, [(0.0, 20.0)], 14.0)
    assert len(parts) == 2 and parts[0][0] == 0.0 and parts[1][1] == 20.0 and parts[0][1] == parts[1][0]
    assert 12.8 <= parts[0][1] <= 13.2, parts


def test_every_part_fits_and_short_spans_are_kept():
    wave = tone(40.0, 16000)[:, 0]  # no pause at all: still split, every part within the cap
    parts = split_long_segments(wave, [(0.5, 3.0), (4.0, 39.5)], 10.0)
    assert parts[0] == (0.5, 3.0)
    assert all(e - s <= 10.0 for s, e in parts) and parts[1][0] == 4.0 and parts[-1][1] == 39.5
    assert all(a[1] == b[0] for a, b in zip(parts[1:], parts[2:], strict=False))
    with pytest.raises(ValueError):
        split_long_segments(wave, [(0.0, 1.0)], 0)
