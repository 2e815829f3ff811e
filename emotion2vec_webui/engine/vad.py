"""Speech-segment mode: split the audio where people pause, and classify each phrase as an utterance.

This is the per-sentence emotion users ask for (emotion2vec issues #88, #79,
#30). The voice activity detector is silero-vad: its pip wheel ships the
model, so it works offline (FunASR's fsmn-vad needs a hub download).

It runs silero's own ONNX graph through ONNX Runtime (:mod:`model.silero_onnx`),
always, torch or not: the same segments as silero's torch path, faster, and
on an ONNX-only install too. Measured on 22.5 s of espeak-ng speech (this
loaded 2-core VM, min of 5): silero's TorchScript model 0.76 s, its ONNX graph
frame by frame 0.20 s, its sequence graph 0.12 s (6.4x); probabilities
within 7e-5 of TorchScript, segments equal to the sample on the test
fixtures (tests/engine/test_vad_onnx.py checks 40 ms). Importing
``silero_vad`` is no longer needed, so its ``torch.set_num_threads(1)`` for
the whole process is gone too. Probabilities become segments by
:func:`speech_spans`, silero's ``get_speech_timestamps_from_probs`` state
machine for the parameters used here (no maximum duration: long segments are
split at pauses below).

Speech without pauses of ``MIN_SILENCE_S`` comes back from silero as one long
segment (a 60 s recording gave 0.11–29.17 s). A phrase is shorter: segments
longer than ``max_segment_s`` (``E2V_VAD_MAX_SEGMENT_S``, 10 s) are split at
their longest internal pause — the minimum of the short-time energy averaged
over :data:`PAUSE_WINDOW_S`, so a long dip wins over a brief one — and the
halves again until each fits (:func:`split_long_segments`), never at fixed
points.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from emotion2vec_webui.audio.format import MIN_MODEL_SAMPLES, SAMPLE_RATE
from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.labels import EMOTIONS
from emotion2vec_webui.options import SEGMENTATION

log = logging.getLogger(__name__)

SEGMENTATIONS = SEGMENTATION.values  # options.py; result.json "segments" from runs of frame emotions, or from speech segments
THRESHOLD = 0.5  # silero speech probability threshold
MIN_SPEECH_S = 0.25  # shorter speech bursts are ignored
MIN_SILENCE_S = 0.3  # pauses shorter than this do not split a phrase
PAD_S = 0.05  # speech padding on each side of a segment
MAX_SEGMENT_S = 10.0  # longer speech segments are split at their longest pauses (E2V_VAD_MAX_SEGMENT_S)
PAUSE_WINDOW_S = 0.25  # energy is averaged over this much audio when looking for the pause to split at
_HOP = 160  # 10 ms energy frames


def speech_segments(
    waveform: np.ndarray,
    threshold: float = THRESHOLD,
    min_speech_s: float = MIN_SPEECH_S,
    min_silence_s: float = MIN_SILENCE_S,
    pad_s: float = PAD_S,
    max_segment_s: float | None = MAX_SEGMENT_S,
) -> list[tuple[float, float]]:
    """Where the speech is: ``[(start_s, end_s), …]`` in order, for a 16 kHz mono float32 waveform.

    Args:
        waveform: the decoded signal.
        threshold: speech probability above which a 32 ms chunk is speech.
        min_speech_s: shorter speech bursts are dropped.
        min_silence_s: shorter pauses do not end a segment.
        pad_s: padding added on each side of a segment.
        max_segment_s: longer segments are split at their longest pauses (None or 0: no cap).

    Returns:
        Non-overlapping speech segments in seconds (empty when there is no speech).
    """
    from emotion2vec_webui.model.silero_onnx import FRAME, speech_probabilities

    probs = speech_probabilities(waveform)
    stamps = speech_spans(
        probs,
        len(waveform),
        FRAME,
        threshold=threshold,
        min_speech=int(min_speech_s * 1000) * SAMPLE_RATE / 1000,
        min_silence=int(min_silence_s * 1000) * SAMPLE_RATE / 1000,
        pad=int(pad_s * 1000) * SAMPLE_RATE / 1000,
    )
    spans = [(s / SAMPLE_RATE, e / SAMPLE_RATE) for s, e in stamps]
    return split_long_segments(waveform, spans, max_segment_s) if max_segment_s else spans


def speech_spans(
    probs: np.ndarray, total: int, frame: int, threshold: float, min_speech: float, min_silence: float, pad: float
) -> list[tuple[int, int]]:
    """Speech spans ``[(start, end)]`` in samples from per-frame speech probabilities.

    silero-vad's ``get_speech_timestamps_from_probs`` (``silero_vad/utils_vad.py``)
    without a maximum duration: speech starts at a frame at or above
    ``threshold`` and ends where the probability stays below ``threshold - 0.15``
    for ``min_silence`` samples; spans of ``min_speech`` samples or less are
    dropped; each side gets ``pad`` samples, or half the gap where two spans
    are closer than ``2 * pad``.

    Args:
        probs: one probability per ``frame`` samples.
        total: the waveform's length in samples.
        frame: samples per probability.
        threshold: speech probability threshold.
        min_speech, min_silence, pad: in samples.
    """
    negative = max(threshold - 0.15, 0.01)
    spans: list[list[int]] = []
    start = silent_from = 0
    speaking = False
    for i, p in enumerate(probs.tolist()):
        at = i * frame
        if p >= threshold:
            silent_from = 0
            if not speaking:
                speaking, start = True, at
            continue
        if speaking and p < negative:
            silent_from = silent_from or at
            if at - silent_from < min_silence:
                continue
            if silent_from - start > min_speech:
                spans.append([start, silent_from])
            speaking, silent_from = False, 0
    if speaking and total - start > min_speech:
        spans.append([start, total])
    for i, span in enumerate(spans):
        if i == 0:
            span[0] = int(max(0, span[0] - pad))
        if i == len(spans) - 1:
            span[1] = int(min(total, span[1] + pad))
            continue
        after = spans[i + 1]
        gap = after[0] - span[1]
        if gap < 2 * pad:
            span[1] += int(gap // 2)
            after[0] = int(max(0, after[0] - gap // 2))
        else:
            span[1] = int(min(total, span[1] + pad))
            after[0] = int(max(0, after[0] - pad))
    return [(s, e) for s, e in spans]


def split_long_segments(
    waveform: np.ndarray, spans: list[tuple[float, float]], max_segment_s: float = MAX_SEGMENT_S
) -> list[tuple[float, float]]:
    """Split every span longer than ``max_segment_s`` at its longest internal pauses.

    A long span is cut at the minimum of its short-time energy averaged over
    :data:`PAUSE_WINDOW_S` (the middle of its longest, quietest stretch), at
    least a quarter of ``max_segment_s`` (at most 1 s) from either end; each
    part is split again until it fits. The parts touch, so together they
    cover the span exactly.

    Args:
        waveform: 16 kHz mono float32, the signal the spans index.
        spans: ``[(start_s, end_s)]`` in order, not overlapping.
        max_segment_s: the longest span kept whole (> 0).

    Returns:
        The spans, long ones replaced by their parts, in order.
    """
    if max_segment_s <= 0:
        raise ValueError("max_segment_s must be positive")
    out: list[tuple[float, float]] = []
    for start_s, end_s in spans:
        if end_s - start_s <= max_segment_s:
            out.append((start_s, end_s))
            continue
        a = int(start_s * SAMPLE_RATE) // _HOP
        b = max(a + 1, -(-int(end_s * SAMPLE_RATE) // _HOP))
        energy = _smoothed_energy(waveform[a * _HOP : b * _HOP])
        cuts = _cuts(energy, 0, len(energy), max_segment_s * SAMPLE_RATE / _HOP, min(1.0, max_segment_s / 4))
        edges = [start_s, *((a + c) * _HOP / SAMPLE_RATE for c in cuts), end_s]
        out += list(zip(edges, edges[1:], strict=False))
    return out


def _smoothed_energy(chunk: np.ndarray) -> np.ndarray:
    """Mean power per 10 ms frame, averaged over PAUSE_WINDOW_S (centred)."""
    frames = len(chunk) // _HOP
    power = np.square(chunk[: frames * _HOP].astype(np.float64)).reshape(frames, _HOP).mean(axis=1)
    width = max(1, int(PAUSE_WINDOW_S * SAMPLE_RATE / _HOP))
    return np.convolve(power, np.ones(width) / width, mode="same")


def _cuts(energy: np.ndarray, lo: int, hi: int, max_frames: float, min_piece_s: float) -> list[int]:
    """Frame indices in ``(lo, hi)`` that split ``energy[lo:hi]`` into parts of at most ``max_frames``."""
    if hi - lo <= max_frames:
        return []
    margin = max(1, min(int(min_piece_s * SAMPLE_RATE / _HOP), (hi - lo) // 4))
    window = energy[lo + margin : hi - margin]
    # the quietest frame; among equals (digital silence), the middle of the run
    quiet = np.flatnonzero(window <= window.min() * (1 + 1e-9))
    cut = lo + margin + int(quiet[len(quiet) // 2])
    return [*_cuts(energy, lo, cut, max_frames, min_piece_s), cut, *_cuts(energy, cut, hi, max_frames, min_piece_s)]


def vad_segments(
    engine,
    waveform: np.ndarray,
    segmentation: str = "vad",
    runlog: Callable[[str], None] | None = None,
    window_s: float = 30.0,
    max_segment_s: float | None = MAX_SEGMENT_S,
) -> list[dict]:
    """Classify each speech segment of ``waveform`` as an utterance.

    Args:
        engine: a loaded :class:`engine.EmotionEngine`.
        waveform: 16 kHz mono float32.
        segmentation: must be ``vad`` (callers pass the user's choice through, so a typo is a ``bad_request``).
        runlog: the run's processing log, if any.
        window_s: speech segments longer than this are classified in windows.
        max_segment_s: speech longer than this is split at its longest pauses (None or 0: no cap).

    Returns:
        result.json ``segments`` items: ``{"start_s", "end_s", "emotion",
        "confidence", "scores", "source": "vad"}``, ordered; silences are not listed.

    Raises:
        E2VError: ``bad_request`` for an unknown segmentation mode.
    """
    if segmentation != "vad":
        raise E2VError("bad_request", f"segmentation must be one of {', '.join(SEGMENTATIONS)}, not {segmentation!r}")
    from emotion2vec_webui.engine.batching import recognize_each

    spans = speech_segments(waveform, max_segment_s=max_segment_s)
    cut = [((s, e), waveform[int(s * SAMPLE_RATE) : int(e * SAMPLE_RATE)]) for s, e in spans]
    kept = [span for span, chunk in cut if len(chunk) >= MIN_MODEL_SAMPLES]
    chunks = [chunk for _, chunk in cut if len(chunk) >= MIN_MODEL_SAMPLES]
    out = []
    # every segment at once: a server job's engine queues them together and the scheduler batches them by length
    for (start_s, end_s), r in zip(kept, recognize_each(engine, chunks, window_s=window_s), strict=True):
        out.append(
            {
                "start_s": round(start_s, 3),
                "end_s": round(end_s, 3),
                "emotion": r.emotion,
                "confidence": round(r.confidence, 6),
                "scores": {k: round(r.scores[k], 6) for k in EMOTIONS},
                "source": "vad",
            }
        )
    if runlog is not None:
        speech = sum(e - s for s, e in spans)
        cap, cap_zh = (
            (f", at most {max_segment_s:g} s each", f"，每段至多 {max_segment_s:g} 秒") if max_segment_s else ("", "")
        )
        runlog(f"speech segments (silero-vad): {len(out)} segments, {speech:.1f} s of speech{cap} / "
               f"语音分段（silero-vad）：{len(out)} 段，语音 {speech:.1f} 秒{cap_zh}")  # fmt: skip
    return out
