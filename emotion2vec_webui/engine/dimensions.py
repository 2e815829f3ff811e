"""Dimensional (regression) heads applied to one clip: arousal, valence, dominance … as numbers and curves.

A regression head (:class:`engine.heads.Head` with ``kind == "regression"``)
is the same standardise-then-dense-layers network as a classifier head, with
no softmax: its outputs are the values of its targets, in the units of the
training CSV's columns. The utterance values come from the head on the
mean-pooled features (as a classifier head's scores do); the per-frame
curves from the head on each frame's features, then the same centred moving
average over ``smoothing_s`` that smooths the nine-class logits (a linear
head commutes with it: smoothing the features or the values is the same).
"""

from __future__ import annotations

import numpy as np

from emotion2vec_webui.engine.heads import Head, check_width
from emotion2vec_webui.engine.timeline import HOP_S, smooth_logits, smoothing_frames

DIGITS = 5  # rounding of values in result.json


def apply_dimensions(head: Head, features: np.ndarray, smoothing_s: float) -> dict:
    """The ``dimensions`` block of result.json for one clip.

    Args:
        head: a loaded regression head.
        features: the clip's features, ``[D]`` (utterance) or ``[T, D]`` (frames; also gives the curves).
        smoothing_s: frame smoothing (E2V_FRAME_SMOOTHING_S), as for the nine classes.

    Returns:
        ``{"name", "kind", "targets", "targets_zh", "values", "checkpoint_sha256", "frames"}``; ``frames`` is
        ``{"hop_s", "smoothing_s", "targets", "values": [[...] per frame], "raw_values"}`` or None.
    """
    features = np.asarray(features)
    check_width(head, int(features.shape[-1]))
    frames = features if features.ndim == 2 else None
    pooled = features.mean(axis=0) if frames is not None else features
    values = head.logits(pooled)
    block = {
        "name": head.name,
        "kind": "regression",
        "targets": list(head.labels),
        "targets_zh": [head.label_zh(t) for t in head.labels],
        "values": {t: round(float(v), DIGITS) for t, v in zip(head.labels, values, strict=True)},
        "checkpoint_sha256": head.spec.get("checkpoint_sha256"),
        "frames": None,
    }
    if frames is not None and len(frames):
        raw = head.logits(frames)
        smooth = smooth_logits(raw, smoothing_frames(smoothing_s, HOP_S))
        block["frames"] = {
            "hop_s": HOP_S,
            "smoothing_s": smoothing_s,
            "targets": list(head.labels),
            "values": np.round(smooth, DIGITS).tolist(),
            "raw_values": np.round(raw, DIGITS).tolist(),  # frames.csv's columns
        }
    return block


def describe(block: dict) -> str:
    """The run log's line for a ``dimensions`` block (bilingual)."""
    values = ", ".join(f"{k} {v:.3f}" for k, v in block["values"].items())
    return f"regression head {block['name']}: {values} / 回归头 {block['name']}：{values}"
