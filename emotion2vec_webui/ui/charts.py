"""Charts drawn from a result.json dict: emotion over time.

Matplotlib's object API (``Figure`` without pyplot: no global state, safe in
Gradio's worker threads), returned as figures for ``gr.Plot``. Labels use
Noto Sans CJK when installed (``fonts-noto-cjk``) so Chinese names render;
matplotlib cannot draw colour emoji, so charts carry names only.
Everything comes from the result.json object, so History redraws a past
run exactly as it was shown.
"""

from __future__ import annotations

import contextlib
import functools

import numpy as np

from emotion2vec_webui.audio.format import FRAME_HOP_S
from emotion2vec_webui.labels import EMOTIONS, EMOTIONS_ZH
from emotion2vec_webui.ui.text import EMOTION_COLORS

_MAX_POINTS = 1500  # the timeline is averaged down to at most this many points


@functools.lru_cache(maxsize=1)
def _font_families() -> tuple[str, ...]:
    """Font families for labels: a CJK font when one is installed, then matplotlib's default."""
    from matplotlib import font_manager

    names = {f.name for f in font_manager.fontManager.ttflist}
    preferred = ("Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC", "WenQuanYi Zen Hei", "Microsoft YaHei")
    return tuple(n for n in preferred if n in names) + ("DejaVu Sans",)


@contextlib.contextmanager
def _style():
    import matplotlib

    rc = {
        "font.family": list(_font_families()),
        "font.size": 10,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.edgecolor": "#9aa0a6",
        "axes.labelcolor": "#444",
        "xtick.color": "#555",
        "ytick.color": "#555",
        "svg.fonttype": "none",
    }
    with matplotlib.rc_context(rc):
        yield


def _label(key: str) -> str:
    return f"{EMOTIONS_ZH.get(key, key)} {key}"


def _downsample(x: np.ndarray, factor: int) -> np.ndarray:
    if factor <= 1:
        return x
    n = (len(x) // factor) * factor
    head = x[:n].reshape(-1, factor, *x.shape[1:]).mean(axis=1)
    return head if n == len(x) else np.concatenate([head, x[n:].mean(axis=0, keepdims=True)])


def timeline_figure(result: dict):
    """Emotion over time: the nine frame scores stacked, with the segments as a strip on top.

    Args:
        result: a result.json object at frame granularity (``frames``, ``segments``).

    Returns:
        A matplotlib ``Figure``, or None when the result has no frames.
    """
    from matplotlib.figure import Figure

    frames = result.get("frames") or {}
    scores = np.asarray(frames.get("scores") or [], dtype=np.float64)
    if scores.ndim != 2 or len(scores) == 0:
        return None
    labels = list(frames.get("labels") or EMOTIONS)
    hop = float(frames.get("hop_s", FRAME_HOP_S))
    factor = max(1, int(np.ceil(len(scores) / _MAX_POINTS)))
    t = _downsample((np.arange(len(scores)) + 0.5) * hop, factor)
    y = _downsample(scores, factor)
    duration = float((result.get("audio") or {}).get("duration_s") or len(scores) * hop)
    segments = result.get("segments") or []
    with _style():
        fig = Figure(figsize=(8.0, 3.9), dpi=110, layout="constrained")
        strip, ax = fig.subplots(2, 1, sharex=True, height_ratios=[1, 6])
        fig.suptitle("情绪随时间变化 / Emotion over time", x=0.01, ha="left", fontsize=11, fontweight="bold")
        ax.stackplot(
            t,
            y.T * 100.0,
            labels=[_label(k) for k in labels],
            colors=[EMOTION_COLORS.get(k, "#888") for k in labels],
            alpha=0.9,
            linewidth=0,
        )
        ax.set_ylim(0, 100)
        ax.set_xlim(0, duration)
        ax.set_ylabel("得分 / score (%)")
        ax.set_xlabel("时间 / time (s)")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=5, fontsize=8, frameon=False)
        for seg in segments:
            start, end = float(seg["start_s"]), float(seg["end_s"])
            key = str(seg.get("emotion", "unknown"))
            strip.axvspan(start, end, color=EMOTION_COLORS.get(key, "#888"), alpha=0.95, linewidth=0)
            if end - start >= 0.12 * duration:
                strip.text(
                    (start + end) / 2,
                    0.5,
                    _label(key),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white",
                    fontweight="bold",
                )
            if start > 0:
                ax.axvline(start, color="white", linewidth=1.2, alpha=0.9)
        strip.set_yticks([])
        strip.set_ylim(0, 1)
        strip.set_ylabel("片段\nsegments", fontsize=8, rotation=0, ha="right", va="center", color="#555")
        for side in ("left", "bottom"):
            strip.spines[side].set_visible(False)
        strip.tick_params(axis="x", length=0)
    return fig
