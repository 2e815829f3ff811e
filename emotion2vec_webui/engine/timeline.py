"""Emotion over time: per-frame scores from the model's own head, smoothing, and segments.

The classifier head is linear and the utterance score is the head applied to
the mean of the frame features, so the mean of the per-frame logits equals
the utterance logits: frame and utterance results are consistent by
construction (the engine drops the ``unuse`` classes from both, which gives
the same softmax as FunASR's masking them with ``-inf``). Per-frame softmax
is noisy, so logits are smoothed with a centred moving average before the
softmax, and runs of the same top emotion shorter than a minimum length are
merged into a neighbour: shortest run first, into the neighbour whose emotion
scores higher over the short run's frames.
"""

from __future__ import annotations

import heapq

import numpy as np

from emotion2vec_webui.audio.format import FRAME_HOP_S as HOP_S
from emotion2vec_webui.labels import EMOTIONS

MIN_SEGMENT_S = 0.3  # shorter runs of one emotion are merged into a neighbour


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax along ``axis``."""
    z = logits - logits.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def smoothing_frames(smoothing_s: float, hop_s: float = HOP_S) -> int:
    """The moving-average window in frames for ``smoothing_s`` seconds (odd, so it is centred; 1 = none)."""
    window = max(1, int(round(smoothing_s / hop_s)))
    return window if window % 2 else window + 1


def smooth_logits(frame_logits: np.ndarray, window_frames: int) -> np.ndarray:
    """Centred moving average over time; at the edges, the mean of the frames that exist.

    Args:
        frame_logits: ``[T, C]``.
        window_frames: frames averaged (made odd if even, so the window is centred).

    Returns:
        ``[T, C]`` float64.
    """
    x = np.asarray(frame_logits, dtype=np.float64)
    if window_frames <= 1 or len(x) <= 1:
        return x.copy()
    half = window_frames // 2
    csum = np.concatenate([np.zeros((1, x.shape[1])), np.cumsum(x, axis=0)])
    idx = np.arange(len(x))
    lo = np.clip(idx - half, 0, len(x))
    hi = np.clip(idx + half + 1, 0, len(x))
    return (csum[hi] - csum[lo]) / (hi - lo)[:, None]


def frame_scores(frame_logits: np.ndarray, smoothing_s: float = 0.5, hop_s: float = HOP_S) -> np.ndarray:
    """Per-frame class probabilities ``[T, 9]`` after smoothing the logits over ``smoothing_s`` seconds."""
    return softmax(smooth_logits(frame_logits, smoothing_frames(smoothing_s, hop_s)))


def _runs(top: np.ndarray) -> list[list[int]]:
    """``[label, start, end)`` for each run of equal values in ``top``."""
    change = np.flatnonzero(np.diff(top)) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [len(top)]])
    return [[int(top[s]), int(s), int(e)] for s, e in zip(starts, ends, strict=True)]


def merge_short_runs(scores: np.ndarray, min_frames: int) -> list[list[int]]:
    """Runs of the per-frame top class, with every run shorter than ``min_frames`` merged away.

    The shortest run goes first, into the neighbour whose class has the higher
    total score over the run's frames; equal neighbours then join. A heap and
    a linked list keep this ``O(T log T)`` even for a flickering 10-minute file.

    Returns:
        ``[label, start, end)`` frame runs in order, tiling ``[0, T)``.
    """
    runs = _runs(scores.argmax(axis=1))
    n = len(runs)
    prev = list(range(-1, n - 1))
    nxt = list(range(1, n + 1))
    nxt[-1] = -1
    alive = [True] * n
    heap = [(r[2] - r[1], r[1], i) for i, r in enumerate(runs)]
    heapq.heapify(heap)
    count = n
    while heap and count > 1:
        length, start, i = heapq.heappop(heap)
        if not alive[i] or runs[i][2] - runs[i][1] != length or runs[i][1] != start:
            continue  # stale entry
        if length >= min_frames:
            break
        p, q = prev[i], nxt[i]
        lab, s, e = runs[i]
        if p >= 0 and q >= 0:
            into = p if scores[s:e, runs[p][0]].sum() >= scores[s:e, runs[q][0]].sum() else q
        else:
            into = p if p >= 0 else q
        runs[into][1] = min(runs[into][1], s)
        runs[into][2] = max(runs[into][2], e)
        alive[i] = False
        count -= 1
        if p >= 0:
            nxt[p] = q
        if q >= 0:
            prev[q] = p
        for a, b in ((prev[into], into), (into, nxt[into])):  # join equal neighbours
            if a >= 0 and b >= 0 and alive[a] and alive[b] and runs[a][0] == runs[b][0]:
                runs[a][2] = runs[b][2]
                alive[b] = False
                count -= 1
                nxt[a] = nxt[b]
                if nxt[b] >= 0:
                    prev[nxt[b]] = a
                into = a
        heapq.heappush(heap, (runs[into][2] - runs[into][1], runs[into][1], into))
    out, i = [], 0
    while i >= 0:
        if alive[i]:
            out.append(runs[i])
        i = nxt[i]
    return out


def segments(
    scores: np.ndarray,
    duration_s: float,
    hop_s: float = HOP_S,
    min_segment_s: float = MIN_SEGMENT_S,
) -> list[dict]:
    """Merge runs of the same top emotion into ordered, gap-free segments covering ``[0, duration_s]``.

    Args:
        scores: per-frame probabilities ``[T, 9]``.
        duration_s: the audio's duration (the last segment ends there).
        hop_s: seconds per frame.
        min_segment_s: runs shorter than this join a neighbouring run.

    Returns:
        ``[{"start_s", "end_s", "emotion", "confidence", "scores", "source": "frames"}, …]``:
        confidence is the mean score of the segment's emotion over its frames,
        scores the mean of all nine.
    """
    if len(scores) == 0:
        return []
    runs = merge_short_runs(scores, max(1, int(round(min_segment_s / hop_s))))
    out = []
    for k, (lab, start, end) in enumerate(runs):
        mean = scores[start:end].mean(axis=0)
        out.append(
            {
                "start_s": round(start * hop_s, 3),
                "end_s": round(duration_s if k == len(runs) - 1 else end * hop_s, 3),
                "emotion": EMOTIONS[lab],
                "confidence": round(float(mean[lab]), 6),
                "scores": {e: round(float(v), 6) for e, v in zip(EMOTIONS, mean, strict=True)},
                "source": "frames",
            }
        )
    return out
