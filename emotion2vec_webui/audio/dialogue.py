"""Test conversations made with espeak-ng: two voices taking turns, with where each one speaks.

For tests, the benchmark and trials of the conversation view: a stereo
call (one voice per channel, silence on a channel while the other speaks)
and a mono mix of the same dialogue. The true spans come back with the
signal, so tests can check turn times without trusting any model.
"""

from __future__ import annotations

import numpy as np

from emotion2vec_webui.audio.signals import speech

VOICES = (("en-us", 40, 150), ("en+f3", 75, 175))  # (espeak-ng voice, pitch, speed): clearly different voices
LINES = (
    "Hello, thank you for calling. How can I help you today?",
    "My order arrived broken and nobody answered my emails.",
    "I am sorry to hear that. Let me check your account.",
    "This is the third time this has happened to me.",
    "I can send a replacement tomorrow morning.",
    "Fine. Please make sure it is packed properly this time.",
)


def _trim(samples: np.ndarray, floor: float = 0.01) -> np.ndarray:
    """Cut espeak-ng's leading and trailing silence, so the spans are where the voice is."""
    loud = np.flatnonzero(np.abs(samples) > floor)
    return samples[loud[0] : loud[-1] + 1] if loud.size else samples


def dialogue(lines=LINES, gap_s: float = 0.8, lead_s: float = 0.5, rate: int = 16000):
    """Two voices alternating over ``lines``.

    Returns:
        ``(stereo [n, 2] float32, rate, spans)``; ``spans`` is ``[(channel, start_s, end_s), …]``
        in time order, channel 0 for even lines and 1 for odd ones.
    """
    import soxr

    parts, spans, t = [], [], lead_s
    for i, text in enumerate(lines):
        voice, pitch, speed = VOICES[i % 2]
        samples, sr = speech(text, voice=voice, pitch=pitch, speed=speed)
        samples = _trim(soxr.resample(samples, sr, rate).astype(np.float32) if sr != rate else samples)
        parts.append((i % 2, int(round(t * rate)), samples * 0.8))
        spans.append((i % 2, t, t + len(samples) / rate))
        t += len(samples) / rate + gap_s
    out = np.zeros((int(round((t + lead_s) * rate)), 2), np.float32)
    for ch, start, samples in parts:
        out[start : start + len(samples), ch] = samples
    return out, rate, spans


def long_dialogue(seconds: float, rate: int = 16000):
    """A mono two-voice dialogue of ``seconds`` (the :func:`dialogue` lines repeated), and its spans."""
    stereo, _, spans = dialogue(rate=rate)
    period = len(stereo) / rate
    reps = int(np.ceil(seconds / period))
    mono = np.tile(stereo.sum(axis=1), reps)[: int(seconds * rate)]
    all_spans = [(ch, s + k * period, e + k * period) for k in range(reps) for ch, s, e in spans]
    return mono.astype(np.float32), rate, [sp for sp in all_spans if sp[2] <= seconds]
