"""Long recordings: classify audio in overlapping windows cut at pauses, then stitch.

Self-attention makes one pass over a whole 10-minute file cost memory that
grows with the square of its length (30,000 frames), so audio longer than
``E2V_WINDOW_S`` (30 s by default) is processed in windows:

* Each window keeps a stretch of frames and sees ``OVERLAP_S`` of context on
  each side; the context frames are dropped when stitching, so every frame of
  the file comes from exactly one window and none sits at a window's edge.
* Cuts fall in the quietest 0.2 s (lowest RMS, an energy voice-activity
  detector) of the last quarter of each window, so words are rarely split.
* Cuts are whole frames (320 samples), so the stitched frames line up with
  the frames of a single pass: ``(samples - 400) // 320 + 1`` of them.
* The utterance result is the classifier head applied to the mean of all
  stitched frame features, kept as a running sum: at utterance granularity
  memory does not grow with duration. At frame granularity the per-frame
  logits (``[T, 9]``) and, when asked, the ``[T, D]`` embedding are kept.

Time grows linearly with duration (a fixed cost per window).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from emotion2vec_webui.audio.format import FRAME_HOP as HOP
from emotion2vec_webui.audio.format import MIN_MODEL_SAMPLES as RECEPTIVE
from emotion2vec_webui.audio.format import SAMPLE_RATE, num_frames
from emotion2vec_webui.engine.result import EmotionResult, softmax

log = logging.getLogger(__name__)

OVERLAP_S = 1.0  # context on each side of a window's kept frames
PAUSE_SEARCH = 0.25  # fraction of a window's kept span searched (backwards from its end) for a pause
PAUSE_SMOOTH_FRAMES = 10  # RMS smoothed over 0.2 s before looking for its minimum


@dataclass(frozen=True)
class Window:
    start: int  # first sample given to the model
    end: int  # one past the last sample given to the model
    keep_from: int  # first frame (file frame index) taken from this window
    keep_to: int  # one past the last frame taken from this window


def pause_profile(waveform: np.ndarray) -> np.ndarray:
    """Per-frame loudness (RMS over 20 ms, smoothed over 0.2 s); low values are pauses."""
    frames = len(waveform) // HOP
    if frames == 0:
        return np.zeros(0)
    blocks = np.ascontiguousarray(waveform[: frames * HOP], dtype=np.float32).reshape(frames, HOP)  # a view
    rms = np.sqrt(np.einsum("ij,ij->i", blocks, blocks) / HOP)  # no [samples]-sized temporaries
    kernel = np.ones(PAUSE_SMOOTH_FRAMES) / PAUSE_SMOOTH_FRAMES
    return np.convolve(rms, kernel, mode="same")


def plan_windows(
    num_samples: int,
    window_s: float,
    overlap_s: float = OVERLAP_S,
    quietness: np.ndarray | None = None,
) -> list[Window]:
    """Cut ``num_samples`` samples into overlapping windows of at most ``window_s`` seconds.

    Args:
        num_samples: length of the 16 kHz waveform.
        window_s: longest window given to the model, context included.
        overlap_s: context on each side of a window's kept frames (shrunk
            for very short windows).
        quietness: per-frame loudness (see :func:`pause_profile`); cuts go to
            its minimum within the search zone. None: cut at the window's end.

    Returns:
        Windows in order whose kept frames tile ``[0, num_frames(num_samples))``.
    """
    total = num_frames(num_samples)
    width = max(4, int(round(window_s * SAMPLE_RATE / HOP)))  # frames per window, context included
    overlap = min(int(round(overlap_s * SAMPLE_RATE / HOP)), width // 4)
    span = width - 2 * overlap  # kept frames per middle window
    windows: list[Window] = []
    keep_from = 0
    while True:
        start = max(0, keep_from - overlap)
        if total - start <= width:
            windows.append(Window(start * HOP, num_samples, keep_from, total))
            return windows
        ideal = start + width - overlap  # the cut that makes this window exactly `width` frames
        cut = ideal
        if quietness is not None and len(quietness) > ideal:
            lo = max(keep_from + 1, ideal - int(PAUSE_SEARCH * span))
            cut = lo + int(np.argmin(quietness[lo : ideal + 1]))
        end = min(num_samples, (cut + overlap) * HOP + RECEPTIVE - HOP)  # exactly cut + overlap frames
        windows.append(Window(start * HOP, end, keep_from, cut))
        keep_from = cut


def _numpy(x) -> np.ndarray:
    """A torch tensor's values as numpy (numpy arrays pass through)."""
    return x if isinstance(x, np.ndarray) else x.cpu().numpy()


def recognize_windowed(
    engine,
    waveform: np.ndarray,
    granularity: str,
    extract_embedding: bool,
    window_s: float,
    on_window: Callable[[int, int], None] | None = None,
):
    """Classify a long waveform window by window with ``engine`` (the caller holds the engine's lock).

    Args:
        engine: a loaded :class:`engine.EmotionEngine`.
        waveform: 16 kHz mono float32.
        granularity: ``utterance`` or ``frame``.
        extract_embedding: also return the embedding (``[D]`` or ``[T, D]``).
        window_s: longest window in seconds (``E2V_WINDOW_S``).
        on_window: ``on_window(k, n)`` as window ``k`` of ``n`` (from 1) starts, e.g. for a progress bar.

    Returns:
        An :class:`engine.EmotionResult`, as one pass would give, with frames stitched.
    """
    t0 = time.perf_counter()
    windows = plan_windows(len(waveform), window_s, quietness=pause_profile(waveform))
    total = None
    count = 0
    logits_parts: list[np.ndarray] = []
    embedding = None  # [T, D] filled in place at frame granularity: no second copy when stitching
    for k, w in enumerate(windows, 1):
        if on_window is not None:
            on_window(k, len(windows))
        feats = engine.frame_features(waveform[w.start : w.end])  # [t, D]
        first = w.start // HOP
        kept = feats[w.keep_from - first : w.keep_to - first]
        if len(kept) != w.keep_to - w.keep_from:
            raise RuntimeError(f"window {w} gave {len(feats)} frames, expected {w.keep_to - first}")
        part = kept.astype(np.float64).sum(axis=0) if isinstance(kept, np.ndarray) else kept.double().sum(dim=0)
        total = part if total is None else total + part
        count += len(kept)
        if granularity == "frame":
            logits_parts.append(_numpy(engine.head_logits(kept)))
            if extract_embedding:
                if embedding is None:
                    embedding = np.empty((windows[-1].keep_to, kept.shape[1]), dtype=np.float32)
                embedding[w.keep_from : w.keep_to] = _numpy(kept)
        del feats, kept
    if isinstance(total, np.ndarray):  # an ONNX export's engine: numpy, no torch
        pooled = (total / count).astype(np.float32)
        probs = softmax(engine.head_logits(pooled).astype(np.float64))
    else:
        import torch

        pooled = (total / count).float()
        probs = torch.softmax(engine.head_logits(pooled), dim=-1).cpu().numpy().astype(np.float64)
    if extract_embedding and granularity != "frame":
        embedding = _numpy(pooled)
    elapsed = time.perf_counter() - t0
    log.debug("%d windows, %d frames in %.2f s", len(windows), count, elapsed)
    return EmotionResult.from_probs(
        probs,
        granularity,
        embedding.astype(np.float32, copy=False) if embedding is not None else None,
        np.concatenate(logits_parts) if granularity == "frame" else None,
        count,
        elapsed,
    )
