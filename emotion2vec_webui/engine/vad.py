"""Speech-segment mode: split the audio where people pause, and classify each phrase as an utterance.

This is the per-sentence emotion users ask for (emotion2vec issues #88, #79,
#30). The voice activity detector is silero-vad: its pip wheel ships the
model, so it works offline (FunASR's fsmn-vad needs a hub download).

silero-vad quirks handled here:

* ``import silero_vad`` calls ``torch.set_num_threads(1)`` for the whole
  process (``silero_vad/model.py``); we restore the thread count, or the
  emotion model would run at half speed.
* Its ``read_audio`` needs torchaudio; we pass our own decoded 16 kHz float32
  waveform instead.
* The model is stateful (it resets its state per call), so calls are serialised.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable

import numpy as np

from emotion2vec_webui.audio.format import MIN_MODEL_SAMPLES, SAMPLE_RATE
from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.labels import EMOTIONS

log = logging.getLogger(__name__)

SEGMENTATIONS = ("frames", "vad")  # result.json "segments" from runs of frame emotions, or from speech segments
THRESHOLD = 0.5  # silero speech probability threshold
MIN_SPEECH_S = 0.25  # shorter speech bursts are ignored
MIN_SILENCE_S = 0.3  # pauses shorter than this do not split a phrase
PAD_S = 0.05  # speech padding on each side of a segment

_vad_lock = threading.Lock()


@functools.lru_cache(maxsize=1)
def _silero():
    """Load silero-vad once: ``(model, get_speech_timestamps)``, keeping torch's thread count."""
    import torch

    threads = torch.get_num_threads()
    try:
        from silero_vad import get_speech_timestamps, load_silero_vad

        model = load_silero_vad()
    except ImportError as exc:
        raise E2VError(
            "internal_error", "speech-segment mode needs the silero-vad package: pip install 'silero-vad>=6'"
        ) from exc
    finally:
        torch.set_num_threads(threads)  # silero_vad/model.py sets 1 for the whole process at import
    return model, get_speech_timestamps


def speech_segments(
    waveform: np.ndarray,
    threshold: float = THRESHOLD,
    min_speech_s: float = MIN_SPEECH_S,
    min_silence_s: float = MIN_SILENCE_S,
    pad_s: float = PAD_S,
) -> list[tuple[float, float]]:
    """Where the speech is: ``[(start_s, end_s), …]`` in order, for a 16 kHz mono float32 waveform.

    Args:
        waveform: the decoded signal.
        threshold: speech probability above which a 32 ms chunk is speech.
        min_speech_s: shorter speech bursts are dropped.
        min_silence_s: shorter pauses do not end a segment.
        pad_s: padding added on each side of a segment.

    Returns:
        Non-overlapping speech segments in seconds (empty when there is no speech).
    """
    import torch

    model, get_speech_timestamps = _silero()
    audio = torch.from_numpy(np.ascontiguousarray(waveform, dtype=np.float32))
    with _vad_lock, torch.inference_mode():
        stamps = get_speech_timestamps(
            audio,
            model,
            threshold=threshold,
            sampling_rate=SAMPLE_RATE,
            min_speech_duration_ms=int(min_speech_s * 1000),
            min_silence_duration_ms=int(min_silence_s * 1000),
            speech_pad_ms=int(pad_s * 1000),
        )
    return [(s["start"] / SAMPLE_RATE, s["end"] / SAMPLE_RATE) for s in stamps]


def vad_segments(
    engine,
    waveform: np.ndarray,
    segmentation: str = "vad",
    runlog: Callable[[str], None] | None = None,
    window_s: float = 30.0,
) -> list[dict]:
    """Classify each speech segment of ``waveform`` as an utterance.

    Args:
        engine: a loaded :class:`engine.EmotionEngine`.
        waveform: 16 kHz mono float32.
        segmentation: must be ``vad`` (callers pass the user's choice through, so a typo is a ``bad_request``).
        runlog: the run's processing log, if any.
        window_s: speech segments longer than this are classified in windows.

    Returns:
        result.json ``segments`` items: ``{"start_s", "end_s", "emotion",
        "confidence", "scores", "source": "vad"}``, ordered; silences are not listed.

    Raises:
        E2VError: ``bad_request`` for an unknown segmentation mode.
    """
    if segmentation != "vad":
        raise E2VError("bad_request", f"segmentation must be one of {', '.join(SEGMENTATIONS)}, not {segmentation!r}")
    spans = speech_segments(waveform)
    out = []
    for start_s, end_s in spans:
        chunk = waveform[int(start_s * SAMPLE_RATE) : int(end_s * SAMPLE_RATE)]
        if len(chunk) < MIN_MODEL_SAMPLES:
            continue
        r = engine.recognize(chunk, "utterance", False, window_s=window_s)
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
        runlog(f"speech segments (silero-vad): {len(out)} segments, {speech:.1f} s of speech")
    return out
