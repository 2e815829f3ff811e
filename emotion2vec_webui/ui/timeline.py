"""The interactive timeline: waveform envelope, the nine emotion scores and the player on one time axis.

One component for every place a run is shown — the Recognize tab, History
(reopened runs) and Live (growing while recording): :func:`timeline_component`
makes the ``gr.HTML`` slot, :func:`run_timeline_html` / :func:`timeline_html`
fill it. The browser side is ``static/timeline/timeline.js`` (with
``timeline.css``), served by the app at :data:`STATIC_URL` and loaded once
per page through :func:`head_html`.

Why uPlot (``static/timeline/vendor/uplot``, npm ``uplot`` 1.6.32, MIT,
51 KB) rather than Plotly through ``gr.Plot``: Gradio 6.31 does bundle
plotly.js (offline-safe), but ``gr.Plot`` renders the figure inside Gradio's
own component, with no handle on the Plotly instance for the things this
timeline is about — a playhead moved 60 times a second from an ``<audio>``
element, click-to-seek, restacking on a toggle — and it would need the
``plotly`` Python package as a new dependency. wavesurfer.js draws the audio
and its regions well but not nine score series. uPlot is a small canvas
time-series library built for this load: its line paths decimate per pixel
column by themselves (a 10-minute file's 30,000 frames draw in milliseconds),
zoom is a scale change, and cursor/hover lookups are a binary search; the
JavaScript here only adds the playhead, the segment band, the tooltip and the
toggles.

Payload: the page gets the scores at full frame resolution (decimation is for
drawing only, and uPlot does it), in steps of 0.01 % (the tooltip shows
0.1 %), delta-coded per series and zlib-compressed, plus a min/max envelope
of the audio at 100 buckets per second (8 bits), base64 in one data
attribute: under 1.3 MB for 10 minutes even for frame scores as noisy as
random weights give, which do not compress (the issue's bound is 2 MB;
``benchmarks/timeline_browser.py`` measures it). The audio itself is the
run's ``processed_audio.wav``, streamed by Gradio's file route (ranged
requests, so seeking does not download the file first).

A dimensional (regression) head's curves (result.json ``dimensions.frames``:
arousal, valence …) travel in the same block after the envelope, each target
quantised to 16 bits over the range of its values, and are drawn as lines in
a panel of their own under the nine scores, on the same time axis.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from emotion2vec_webui.audio.format import FRAME_HOP_S, SAMPLE_RATE
from emotion2vec_webui.labels import EMOJI, EMOTIONS, EMOTIONS_ZH, bilingual
from emotion2vec_webui.ui.text import EMOTION_COLORS

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static" / "timeline"
STATIC_URL = "/e2v-static/timeline"  # app.py mounts STATIC_DIR here
ENVELOPE_RATE = 100  # envelope buckets per second of audio
PAYLOAD_VERSION = 1
SCORE_SCALE = 10000  # scores travel as integers of 1/10000 (0.01 %; the tooltip shows 0.1 %)
DIMENSION_COLORS = ("#111827", "#2563eb", "#db2777", "#059669", "#d97706", "#7c3aed")  # a regression head's lines


def head_html() -> str:
    """The ``<head>`` tags that load the timeline's script and styles (relative URLs: the UI is served at ``/``)."""
    base = STATIC_URL.lstrip("/")
    return (
        f'<link rel="stylesheet" href="{base}/vendor/uplot/uPlot.min.css">\n'
        f'<link rel="stylesheet" href="{base}/timeline.css">\n'
        f'<script src="{base}/vendor/uplot/uPlot.iife.min.js"></script>\n'
        f'<script src="{base}/timeline.js"></script>\n'
    )


def timeline_component(elem_id: str, visible: bool = False):
    """The ``gr.HTML`` slot a timeline is drawn in (call inside ``gr.Blocks``)."""
    import gradio as gr

    return gr.HTML(
        visible=visible,
        elem_id=elem_id,
        elem_classes="e2v-timeline-slot",
        js_on_load=None,  # timeline.js finds the component by its class (one observer for every tab)
        apply_default_css=False,
    )


def _quantise(scores: np.ndarray) -> np.ndarray:
    """``[T, 9]`` scores → ``[9, T]`` uint16 deltas (wrapping), series by series, in units of 1/SCORE_SCALE."""
    q = np.clip(np.rint(np.asarray(scores, dtype=np.float64) * SCORE_SCALE), 0, SCORE_SCALE).astype(np.uint16).T
    out = q.copy()
    out[:, 1:] = q[:, 1:] - q[:, :-1]  # uint16 arithmetic wraps; the browser adds back modulo 2^16
    return out


def envelope(waveform: np.ndarray, sample_rate: int, rate: int = ENVELOPE_RATE) -> tuple[np.ndarray, np.ndarray]:
    """Min and max of the signal over buckets of ``1/rate`` s, as int8 (full scale = 127).

    Args:
        waveform: mono samples, float in [-1, 1] or int16.
        sample_rate: the samples' rate.
        rate: buckets per second.

    Returns:
        ``(lo, hi)``: two int8 arrays of ``ceil(len / bucket)`` values.
    """
    x = np.asarray(waveform)
    if x.ndim > 1:
        x = x.mean(axis=1)
    scale = 1.0 / 32768.0 if np.issubdtype(x.dtype, np.integer) else 1.0
    bucket = max(1, int(round(sample_rate / rate)))
    n = len(x)
    if n == 0:
        return np.zeros(0, np.int8), np.zeros(0, np.int8)
    pad = (-n) % bucket
    if pad:
        x = np.concatenate([x, np.repeat(x[-1:], pad)])
    blocks = x.reshape(-1, bucket)
    lo = np.clip(np.rint(blocks.min(axis=1) * scale * 127), -127, 127).astype(np.int8)
    hi = np.clip(np.rint(blocks.max(axis=1) * scale * 127), -127, 127).astype(np.int8)
    return lo, hi


def timeline_payload(
    result: dict,
    *,
    audio_url: str | None = None,
    waveform: np.ndarray | None = None,
    sample_rate: int = SAMPLE_RATE,
    run_id: str | None = None,
    live: bool = False,
) -> dict | None:
    """What timeline.js draws: the series in one compressed binary block, plus their shape and labels.

    Args:
        result: a result.json object at frame granularity (``frames``, ``segments``, ``audio.duration_s``).
        audio_url: the URL of the audio to play (None: no player, e.g. while recording).
        waveform: the signal for the envelope (None: no waveform strip).
        sample_rate: the waveform's rate.
        run_id: names the PNG download.
        live: a recording in progress (the view follows its end).

    Returns:
        A JSON-able dict, or None when ``result`` has no frames.
    """
    frames = result.get("frames") or {}
    smooth = np.asarray(frames.get("scores") or [], dtype=np.float64)
    if smooth.ndim != 2 or len(smooth) == 0 or smooth.shape[1] != len(EMOTIONS):
        return None
    raw_rows = frames.get("raw_scores")
    raw = np.asarray(raw_rows, dtype=np.float64) if raw_rows else smooth
    hop = float(frames.get("hop_s", FRAME_HOP_S))
    duration = float((result.get("audio") or {}).get("duration_s") or len(smooth) * hop)
    parts = [_quantise(smooth).tobytes(), _quantise(raw).tobytes()]
    env_n = 0
    if waveform is not None and len(waveform):
        lo, hi = envelope(waveform, sample_rate)
        env_n = len(lo)
        parts += [lo.tobytes(), hi.tobytes()]
    dims = _dimension_series(result, len(smooth))
    if dims is not None:
        parts.append(dims.pop("bytes"))
    blob = base64.b64encode(zlib.compress(b"".join(parts), 6)).decode("ascii")
    segments = [
        {"s": float(s["start_s"]), "e": float(s["end_s"]), "k": str(s.get("emotion", "unknown"))}
        for s in (result.get("segments") or [])
    ]
    return {
        "v": PAYLOAD_VERSION,
        "n": len(smooth),
        "hop": hop,
        "duration": duration,
        "has_raw": raw_rows is not None and len(raw) == len(smooth),
        "smoothing_s": frames.get("smoothing_s"),
        "env_n": env_n,
        "env_rate": ENVELOPE_RATE,
        "data": blob,
        "segments": segments,
        "audio": audio_url,
        "run_id": run_id,
        "live": live,
        "labels": [
            {"key": k, "zh": EMOTIONS_ZH[k], "emoji": EMOJI.get(k, ""), "color": EMOTION_COLORS.get(k, "#888")}
            for k in EMOTIONS
        ],
        "dims": dims,
    }


def _dimension_series(result: dict, count: int) -> dict | None:
    """A regression head's curves for the payload: ``{"name", "targets", "lo", "hi", "bytes"}``, or None.

    ``bytes`` holds the smoothed then the raw values, ``[2, K, T]`` uint16 deltas over ``[lo, hi]`` (one
    range for all targets, so they share the panel's y axis).
    """
    dims = result.get("dimensions") or {}
    frames = dims.get("frames") or {}
    smooth = np.asarray(frames.get("values") or [], dtype=np.float64)
    raw = np.asarray(frames.get("raw_values") or smooth, dtype=np.float64)
    names = frames.get("targets") or []
    if smooth.ndim != 2 or len(smooth) != count or raw.shape != smooth.shape or len(names) != smooth.shape[1]:
        return None
    if not (np.isfinite(raw).all() and np.isfinite(smooth).all()):
        return None
    lo, hi = float(min(smooth.min(), raw.min())), float(max(smooth.max(), raw.max()))
    hi = hi if hi > lo else lo + 1.0
    q = np.rint((np.stack([smooth.T, raw.T]) - lo) / (hi - lo) * 65535).astype(np.uint16)
    q[..., 1:] = q[..., 1:] - q[..., :-1]  # deltas, wrapping like the scores'
    zh = dict(zip(dims.get("targets") or [], dims.get("targets_zh") or [], strict=False))
    targets = [
        {"key": str(t), "zh": str(zh.get(t, t)), "color": DIMENSION_COLORS[i % len(DIMENSION_COLORS)]}
        for i, t in enumerate(names)
    ]
    return {"name": str(dims.get("name", "")), "targets": targets, "lo": lo, "hi": hi, "bytes": q.tobytes()}


TEXT = {  # the component's strings, bilingual (timeline.js reads them from the payload)
    "title": bilingual("Emotion over time", "情绪随时间变化"),
    "play": bilingual("Play", "播放"),
    "pause": bilingual("Pause", "暂停"),
    "smoothed": bilingual("Smoothed", "平滑"),
    "raw": bilingual("Raw", "原始"),
    "all": bilingual("All nine", "全部九种"),
    "zoom_in": bilingual("Zoom in", "放大"),
    "zoom_out": bilingual("Zoom out", "缩小"),
    "reset": bilingual("Whole recording", "显示全部"),
    "png": bilingual("Download PNG", "下载 PNG"),
    "segments": bilingual("Segments", "片段"),
    "time": bilingual("time", "时间"),
    "waveform": bilingual("Waveform", "波形"),
    "hint": "点击跳转 · 在波形上拖动定位 · 在情绪图上拖选放大 · Ctrl+滚轮缩放、Shift+滚轮平移 · 空格 播放/暂停 / "
    "Click to seek · drag on the waveform to scrub · drag on the scores to zoom · Ctrl+wheel zoom, "
    "Shift+wheel pan · Space play/pause",
    "recording": bilingual("recording…", "录音中…"),
    "no_audio": bilingual("no audio for this run", "此记录没有音频"),
    "dims": bilingual("Regression head", "回归头"),
}


def timeline_html(result: dict, **kwargs) -> str:
    """The component's HTML for a frame-granularity result (see :func:`timeline_payload` for ``kwargs``).

    Returns:
        An element timeline.js turns into the interactive chart; an empty string when there are no frames.
    """
    payload = timeline_payload(result, **kwargs)
    if payload is None:
        return ""
    payload["text"] = TEXT
    data = html.escape(json.dumps(payload, ensure_ascii=False, separators=(",", ":")), quote=True)
    fallback = html.escape(TEXT["title"])
    return f'<div class="e2v-timeline" data-timeline="{data}"><div class="e2v-tl-loading">{fallback} …</div></div>'


def _read_waveform(path: Path) -> tuple[np.ndarray, int] | None:
    import soundfile as sf

    try:
        data, rate = sf.read(str(path), dtype="int16", always_2d=False)
    except (OSError, RuntimeError, ValueError) as exc:  # unreadable: the timeline just has no waveform strip
        log.warning("timeline: cannot read %s: %s", path, exc)
        return None
    return data, int(rate)


def file_url(path: str | Path) -> str:
    """Gradio's URL for a file it may serve (the outputs root is in ``allowed_paths``), relative to the page."""
    from urllib.parse import quote

    return "gradio_api/file=" + quote(str(Path(path).resolve()), safe="/")


def run_timeline_html(result: dict | None, files: Sequence[str] = (), run_id: str | None = None) -> str:
    """The timeline of a written run: its result.json plus ``processed_audio.wav`` among ``files``.

    Args:
        result: the run's result.json object (None or utterance granularity: empty).
        files: the run's artifact paths (``RunView.files``).
        run_id: the run folder's name (names the PNG download).
    """
    if not result or not result.get("frames"):
        return ""
    wav = next((Path(f) for f in files if Path(f).name == "processed_audio.wav"), None)
    wave = _read_waveform(wav) if wav is not None else None
    return timeline_html(
        result,
        audio_url=file_url(wav) if wav is not None else None,
        waveform=wave[0] if wave else None,
        sample_rate=wave[1] if wave else SAMPLE_RATE,
        run_id=run_id,
    )
