"""The report's two drawings as inline SVG: the arc over the call and one lane of turns per speaker.

Plain SVG strings (no script, no external reference), so ``report.html`` opens
offline and prints as vectors. Every text that came from a user (speaker names)
is escaped (:func:`html.escape`); the numbers are ours.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

from emotion2vec_webui.labels import EMOJI, EMOTION_COLORS

WIDTH = 900  # the drawings' user units; the page scales them to its width
LEFT = 120  # room for the lane names
ARC_HEIGHT = 170
LANE_HEIGHT = 26
AXIS_HEIGHT = 22
TICKS_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200)  # a tick every … seconds


def clock(seconds: float) -> str:
    """``m:ss`` (``h:mm:ss`` from an hour)."""
    s = int(round(max(0.0, float(seconds))))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def _x(t: float, duration: float) -> float:
    return LEFT + (WIDTH - LEFT - 10) * (max(0.0, min(float(t), duration)) / duration if duration > 0 else 0.0)


def _axis(duration: float, top: float) -> str:
    step = next((s for s in TICKS_S if duration / s <= 10), TICKS_S[-1])
    parts = [f'<line x1="{LEFT}" y1="{top}" x2="{WIDTH - 10}" y2="{top}" class="axis"/>']
    t = 0.0
    while t <= duration + 1e-9:
        x = _x(t, duration)
        parts.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + 4}" class="axis"/>'
                     f'<text x="{x:.1f}" y="{top + 15}" class="tick">{clock(t)}</text>')  # fmt: skip
        t += step
    return "".join(parts)


def arc_svg(summary: Mapping, duration: float) -> str:
    """The arc (−1 … 1) with its zero line, turning points (dashed) and escalation events (▲ / ▼)."""
    values = summary["arc"]["values"]
    step = summary["arc"]["step_s"]
    h = ARC_HEIGHT
    mid, half = 10 + (h - 20) / 2, (h - 20) / 2

    def y(v: float) -> float:
        return mid - half * max(-1.0, min(1.0, float(v)))

    points = " ".join(f"{_x(i * step, duration):.1f},{y(v):.1f}" for i, v in enumerate(values))
    parts = [
        f'<svg class="arc" viewBox="0 0 {WIDTH} {h + AXIS_HEIGHT}" role="img" aria-label="情绪曲线 / emotional arc">',
        f'<text x="{LEFT - 6}" y="{y(1) + 4:.1f}" class="lab" text-anchor="end">+1 积极 / positive</text>',
        f'<text x="{LEFT - 6}" y="{mid + 4:.1f}" class="lab" text-anchor="end">0</text>',
        f'<text x="{LEFT - 6}" y="{y(-1) + 4:.1f}" class="lab" text-anchor="end">−1 消极 / negative</text>',
        f'<line x1="{LEFT}" y1="{mid:.1f}" x2="{WIDTH - 10}" y2="{mid:.1f}" class="zero"/>',
    ]
    for p in summary["turning_points"]:
        x = _x(p["time_s"], duration)
        parts.append(f'<line x1="{x:.1f}" y1="10" x2="{x:.1f}" y2="{h - 10}" class="turn" data-time="{p["time_s"]}">'
                     f'<title>{clock(p["time_s"])} 转折 / turning point {p["before"]:+.2f} → {p["after"]:+.2f}</title>'
                     "</line>")  # fmt: skip
    if points:
        parts.append(f'<polyline points="{points}" class="curve"/>')
    for e in summary["events"]:
        x = _x(e["time_s"], duration)
        up = e["type"] == "escalation"
        tri = f"{x - 6:.1f},{h - 2} {x + 6:.1f},{h - 2} {x:.1f},{h - 12}" if up else \
            f"{x - 6:.1f},{h - 12} {x + 6:.1f},{h - 12} {x:.1f},{h - 2}"  # fmt: skip
        what = "升级 / escalation" if up else "缓和 / de-escalation"
        parts.append(f'<polygon points="{tri}" class="{"esc" if up else "deesc"}" data-time="{e["time_s"]}">'
                     f'<title>{clock(e["time_s"])} {what}: {escape(str(e["speaker"]))}</title></polygon>')  # fmt: skip
    parts.append(_axis(duration, h))
    parts.append("</svg>")
    return "".join(parts)


def lanes_svg(spans: Sequence[Mapping], speakers: Sequence[tuple[str, str]], duration: float) -> str:
    """One lane per speaker (``speakers``: ``(id, label)``), a rectangle per turn in its emotion's colour."""
    row = {sid: i for i, (sid, _) in enumerate(speakers)}
    h = LANE_HEIGHT * len(speakers) + 6
    parts = [f'<svg class="lanes" viewBox="0 0 {WIDTH} {h + AXIS_HEIGHT}" role="img" '
             f'aria-label="说话人泳道 / speaker lanes">']  # fmt: skip
    for sid, label in speakers:
        top = 3 + row[sid] * LANE_HEIGHT
        parts.append(f'<text x="{LEFT - 6}" y="{top + LANE_HEIGHT / 2 + 4:.1f}" class="lab" text-anchor="end">'
                     f"{escape(label[:18])}</text>"
                     f'<rect x="{LEFT}" y="{top + 2}" width="{WIDTH - LEFT - 10}" height="{LANE_HEIGHT - 4}" '
                     'class="lane"/>')  # fmt: skip
    for s in spans:
        if s["speaker"] not in row:
            continue
        top = 3 + row[s["speaker"]] * LANE_HEIGHT
        x0, x1 = _x(s["start_s"], duration), _x(s["end_s"], duration)
        emo = s["emotion"]
        parts.append(
            f'<rect x="{x0:.1f}" y="{top + 2}" width="{max(0.8, x1 - x0):.1f}" height="{LANE_HEIGHT - 4}" '
            f'fill="{EMOTION_COLORS.get(emo, "#888")}" data-emotion="{escape(emo)}">'
            f"<title>{clock(s['start_s'])}–{clock(s['end_s'])} {escape(dict(speakers)[s['speaker']])} · "
            f"{EMOJI.get(emo, '')} {escape(emo)} {float(s['confidence']):.2f}</title></rect>"
        )
    parts.append(_axis(duration, h))
    parts.append("</svg>")
    return "".join(parts)
