"""Emotion over time: per-frame scores from the model's own head, smoothing, and segments.

The classifier head is linear and the utterance score is the head applied to
the mean of the frame features, so the mean of the per-frame logits equals
the utterance logits: frame and utterance results are consistent by
construction. Per-frame softmax is noisy, so logits are smoothed over a short
window before the softmax, and runs of the same top emotion shorter than a
minimum length are merged into their neighbours.
"""

from __future__ import annotations

import numpy as np

from .labels import EMOTIONS

HOP_S = 0.02  # one emotion2vec frame per 20 ms
MIN_SEGMENT_S = 0.3  # shorter runs of one emotion are merged into a neighbour


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    z = logits - logits.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def smooth_logits(frame_logits: np.ndarray, window_frames: int) -> np.ndarray:
    """Centred moving average over time (edges averaged over the frames that exist)."""
    if window_frames <= 1 or len(frame_logits) <= 1:
        return frame_logits.astype(np.float64)
    kernel = np.ones(window_frames)
    pad = window_frames // 2
    x = frame_logits.astype(np.float64)
    num = np.stack([np.convolve(x[:, j], kernel, mode="full")[pad : pad + len(x)] for j in range(x.shape[1])], 1)
    den = np.convolve(np.ones(len(x)), kernel, mode="full")[pad : pad + len(x)][:, None]
    return num / den


def frame_scores(frame_logits: np.ndarray, smoothing_s: float = 0.5, hop_s: float = HOP_S) -> np.ndarray:
    """Per-frame class probabilities ``[T, 9]`` after smoothing the logits over ``smoothing_s``."""
    window = max(1, int(round(smoothing_s / hop_s)))
    return softmax(smooth_logits(frame_logits, window))


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
        min_segment_s: runs shorter than this join the neighbouring run.

    Returns:
        ``[{"start_s", "end_s", "emotion", "confidence"}, …]``; confidence is the
        mean score of the segment's emotion over its frames.
    """
    if len(scores) == 0:
        return []
    top = scores.argmax(axis=1)
    runs: list[list[int]] = []  # [label, start, end) in frames
    for i, lab in enumerate(top):
        if runs and runs[-1][0] == lab:
            runs[-1][2] = i + 1
        else:
            runs.append([int(lab), i, i + 1])
    min_frames = max(1, int(round(min_segment_s / hop_s)))
    changed = True
    while changed and len(runs) > 1:
        changed = False
        # Shortest run first, so short blips are absorbed before longer ones.
        idx = min(range(len(runs)), key=lambda k: runs[k][2] - runs[k][1])
        if runs[idx][2] - runs[idx][1] < min_frames:
            if idx == 0:
                runs[1][1] = runs[0][1]
            elif idx == len(runs) - 1:
                runs[-2][2] = runs[-1][2]
            else:
                prev_len = runs[idx - 1][2] - runs[idx - 1][1]
                next_len = runs[idx + 1][2] - runs[idx + 1][1]
                if prev_len >= next_len:
                    runs[idx - 1][2] = runs[idx][2]
                else:
                    runs[idx + 1][1] = runs[idx][1]
            del runs[idx]
            merged: list[list[int]] = []
            for r in runs:
                if merged and merged[-1][0] == r[0]:
                    merged[-1][2] = r[2]
                else:
                    merged.append(r)
            runs = merged
            changed = True
    out = []
    for k, (lab, start, end) in enumerate(runs):
        out.append(
            {
                "start_s": round(start * hop_s, 3),
                "end_s": round(duration_s if k == len(runs) - 1 else end * hop_s, 3),
                "emotion": EMOTIONS[lab],
                "confidence": round(float(scores[start:end, lab].mean()), 6),
            }
        )
    return out
