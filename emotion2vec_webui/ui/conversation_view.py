"""The Conversation view's insight layer: emotion tracks inside turns, the arc, markers, the summary table, a filter.

:func:`ui.conversation_tab.conversation_html` lays the view out; this module
draws the parts that read the run's frame tracks (``turns[].frames``,
granularity ``frame``) and its ``summary`` block (``engine/call_summary.py``;
docs/conversations.md says how each figure is computed). Everything is plain
HTML and inline SVG, built here on the server:

- **track inside a turn** — the same drawing as the interactive timeline
  (``static/timeline/timeline.js``): the nine scores stacked bottom-up in
  ``labels.EMOTIONS`` order, in the same colours, so a lane reads like a small
  timeline. It is static SVG rather than uPlot canvases because a call has
  hundreds of turns: one chart object per turn would cost more than the
  drawing, and SVG needs no script, scales with the lane and prints. Frames
  are averaged into bins (a lane gets at most :data:`TRACK_BINS` across the
  whole call, about one per pixel), so the page stays small for long calls.
- **the arc** — ``summary.arc``: the call's balance (positive − negative) over
  time on the lanes' time axis, above zero green, below red.
- **markers** — turning points (``summary.turning_points``) and escalation /
  de-escalation events (``summary.events``) on the arc, and the same moments as
  a list; each carries ``data-start``, so the view's one click listener seeks
  the player there.
- **the summary table** — one row per speaker (``summary.speakers``).
- **the speaker filter** — a ``<select>``; the click script shows only that
  speaker's lanes, turns, rows and moments.

Every string is bilingual (中文 / English), tooltips and aria-labels included.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from html import escape

import numpy as np

from emotion2vec_webui.labels import EMOJI, EMOTIONS, bilingual
from emotion2vec_webui.ui import text as ui_text

TRACK_BINS = 1000  # most drawn bins per lane over the whole call (a lane is ~1,000-1,200 px wide)
TRACK_HEIGHT = 1000  # SVG units of a track's height (integers keep the paths short)
ARC_WIDTH = 1000  # SVG units of the arc's width

CSS = """
.e2v-conv-block.e2v-conv-has-track{background-clip:padding-box;border-top:5px solid;top:1px;bottom:1px;
  background:rgba(128,128,128,.15)!important;overflow:hidden;opacity:1}
.e2v-conv-lanes.e2v-conv-tracks .e2v-conv-track{height:48px}
.e2v-conv-frames{position:absolute;left:0;top:0;width:100%;height:100%;display:block;pointer-events:none}
.e2v-conv-filter{display:flex;align-items:center;gap:8px;margin:6px 0;font-size:.9rem}
.e2v-conv-filter select{padding:2px 6px;border-radius:4px}
.e2v-conv-arc{display:flex;align-items:center;gap:8px;margin:4px 0}  /* laid out as a lane, on the same axis */
.e2v-conv-lanes .e2v-conv-arc .e2v-conv-track{height:64px;background:rgba(128,128,128,.06)}
.e2v-conv-arc svg{position:absolute;left:0;top:0;width:100%;height:100%;display:block}
.e2v-conv-arc .e2v-conv-lane-name{font-weight:400;font-size:.8rem;line-height:1.2;white-space:normal}
.e2v-conv-marker{position:absolute;top:0;transform:translateX(-50%);border:0;background:none;cursor:pointer;
  padding:0 2px;font-size:15px;line-height:18px;z-index:2}
.e2v-conv-marker:focus-visible,.e2v-conv-moment:focus-visible{outline:2px solid #228be6}
.e2v-conv-marker.e2v-conv-turning{top:auto;bottom:0}
.e2v-conv .e2v-kind-up,.e2v-conv .e2v-kind-down{color:#5f3dc4!important}
.e2v-conv .e2v-kind-escalation{color:#e03131!important}
.e2v-conv .e2v-kind-de-escalation{color:#2b8a3e!important}
.e2v-conv-moments{display:flex;flex-wrap:wrap;gap:6px;margin:6px 0 2px 98px;font-size:.85rem}
.e2v-conv-moment{border:1px solid rgba(128,128,128,.4);border-radius:12px;padding:1px 9px;cursor:pointer;
  background:none;color:inherit;font:inherit}
.e2v-conv button.e2v-conv-marker,.e2v-conv button.e2v-conv-moment,.e2v-conv button.e2v-conv-seek{box-shadow:none!important;
  min-width:0!important;width:auto!important;height:auto!important;background:none!important;font-weight:400!important}
.e2v-conv button.e2v-conv-marker,.e2v-conv button.e2v-conv-seek{border:0!important;padding:0 2px!important}
.e2v-conv button.e2v-conv-moment{border:1px solid rgba(128,128,128,.45)!important;padding:1px 9px!important;
  border-radius:12px!important;font-size:.85rem!important}
.e2v-conv-table-wrap{overflow-x:auto}
.e2v-conv-table{border-collapse:collapse;width:100%;font-size:.88rem;margin:4px 0}
.e2v-conv-table th,.e2v-conv-table td{padding:4px 8px;border-bottom:1px solid rgba(128,128,128,.25);text-align:right;
  white-space:nowrap}
.e2v-conv-table thead th{font-weight:600;cursor:help;white-space:normal;vertical-align:bottom}
.e2v-conv-table tbody th,.e2v-conv-table tbody td{vertical-align:middle}
.e2v-conv-table th:first-child,.e2v-conv-table td:first-child{text-align:left}
.e2v-conv-table .e2v-conv-bar{min-width:100px;height:12px}
.e2v-conv-table td.e2v-conv-intense{white-space:normal;text-align:left;min-width:230px}
.e2v-conv-intense .e2v-conv-seek{white-space:nowrap;margin-right:6px}
.e2v-conv-seek{cursor:pointer;text-decoration:underline dotted;border:0;background:none;color:inherit;font:inherit;padding:0}
.e2v-conv [hidden]{display:none!important}
.e2v-conv-report{display:inline-block;margin:4px 0;padding:4px 12px;border-radius:6px;background:#228be6;
  color:#fff!important;text-decoration:none;font-weight:600}
"""

# The filter's script: shows one speaker's lanes, turns, summary rows and moments (``data-speaker``);
# moments of the whole call (turning points) stay. Run from the view's own click/change listener.
FILTER_JS = """
element.addEventListener('change', (ev) => {
  if (!ev.target.matches('.e2v-conv-filter select')) return;
  const who = ev.target.value;
  const view = ev.target.closest('.e2v-conv');
  view.dataset.filter = who;
  view.querySelectorAll('[data-speaker]').forEach((n) => {
    if (n.closest('.e2v-conv-filter')) return;
    n.hidden = !!who && n.dataset.speaker !== who;
  });
});
"""


def clock(seconds: float) -> str:
    """``mm:ss.s``."""
    m, s = divmod(max(0.0, float(seconds)), 60)
    return f"{int(m):02d}:{s:04.1f}"


def _bins(scores: np.ndarray, n: int) -> np.ndarray:
    """``[T, 9]`` frame scores averaged into ``n`` equal bins (``n`` ≤ T), so each bin still sums to 1."""
    edges = np.linspace(0, len(scores), n + 1).round().astype(int)
    sums = np.add.reduceat(scores, edges[:-1], axis=0)
    return sums / np.diff(edges)[:, None]


def track_svg(frames: Mapping, share: float) -> str:
    """One turn's frame track: the nine scores stacked bottom-up in ``EMOTIONS`` order (the timeline's drawing).

    Args:
        frames: the turn's ``frames`` (``scores``: ``[T, 9]``).
        share: the turn's share of the call's duration (how much of the lane it spans; sets the bins).

    Returns:
        An ``<svg>`` filling its turn block, or "" without frames.
    """
    scores = np.asarray(frames.get("scores") or [], dtype=np.float64)
    if scores.ndim != 2 or len(scores) == 0 or scores.shape[1] != len(EMOTIONS):
        return ""
    n = int(min(len(scores), max(2, np.ceil(share * TRACK_BINS))))
    if len(scores) == 1:
        scores, n = np.repeat(scores, 2, axis=0), 2
    top = np.cumsum(_bins(scores, n), axis=1)  # [n, 9]: the top edge of each class's band
    y = np.rint(TRACK_HEIGHT * (1 - np.clip(top, 0, 1))).astype(int)
    xs = np.arange(n)
    paths = []
    # painter's order: the band of class c is the area under its top edge, drawn from the top class down
    for c in range(len(EMOTIONS) - 1, -1, -1):
        line = " ".join(f"{x} {v}" for x, v in zip(xs, y[:, c], strict=True))
        color = ui_text.EMOTION_COLORS.get(EMOTIONS[c], "#888")
        paths.append(f'<path fill="{color}" d="M0 {TRACK_HEIGHT}L{line}L{n - 1} {TRACK_HEIGHT}Z"/>')
    return (f'<svg class="e2v-conv-frames" viewBox="0 0 {n - 1} {TRACK_HEIGHT}" preserveAspectRatio="none" '
            f'aria-hidden="true" focusable="false">{"".join(paths)}</svg>')  # fmt: skip


def filter_html(speakers: Sequence[Mapping], label: Callable[[str], str]) -> str:
    """The "show one speaker" select (``label``: id → the escaped name shown)."""
    if len(speakers) < 2:
        return ""
    name = bilingual("Show speaker", "显示说话人")
    options = "".join(f'<option value="{escape(s["id"])}">{label(s["id"])}</option>' for s in speakers)
    return (f'<label class="e2v-conv-filter" id="conversation_filter">{name}'
            f'<select aria-label="{escape(name)}" title="{escape(bilingual("Show only this speaker", "只显示该说话人"))}">'
            f'<option value="">{bilingual("All speakers", "全部说话人")}</option>{options}</select></label>')  # fmt: skip


def _kind_text(kind: str) -> tuple[str, str]:
    """(symbol, bilingual name) of a moment."""
    return {
        "escalation": ("▲", bilingual("escalation", "情绪升级")),
        "de-escalation": ("▼", bilingual("de-escalation", "情绪缓和")),
        "up": ("◆", bilingual("turning point: better", "转折点：好转")),
        "down": ("◆", bilingual("turning point: worse", "转折点：变差")),
    }.get(kind, ("●", escape(kind)))


def moments(summary: Mapping) -> list[dict]:
    """The summary's turning points and events as one time-ordered list of ``{time_s, kind, speaker, index, detail}``."""
    out = []
    for p in summary.get("turning_points") or []:
        detail = f"{p['before']:+.2f} → {p['after']:+.2f}"
        out.append(
            {"time_s": float(p["time_s"]), "kind": p["direction"], "speaker": None, "index": None, "detail": detail}
        )
    for e in summary.get("events") or []:
        detail = (
            bilingual("negativity", "负面度")
            + f" {e['negativity']:.2f} ({bilingual('baseline', '基线')} {e['baseline']:.2f})"
        )
        out.append({"time_s": float(e["time_s"]), "kind": e["type"], "speaker": e["speaker"], "index": e.get("index"),
                    "detail": detail})  # fmt: skip
    return sorted(out, key=lambda m: m["time_s"])


def _moment_attrs(m: Mapping, label: Callable[[str], str]) -> tuple[str, str]:
    """(attributes, the tooltip text) shared by a marker on the arc and its chip in the list."""
    _, name = _kind_text(m["kind"])
    who = f" · {label(m['speaker'])}" if m["speaker"] else ""
    tip = (
        f"{clock(m['time_s'])} · {name}{who} · {m['detail']} — {bilingual('click to play from here', '点击从此处播放')}"
    )
    attrs = f'data-start="{m["time_s"]}" data-kind="{escape(m["kind"])}"'
    if m["speaker"]:
        attrs += f' data-speaker="{escape(m["speaker"])}"'
    if m["index"] is not None:
        attrs += f' data-index="{int(m["index"])}"'
    return attrs, tip


def arc_html(summary: Mapping | None, duration: float, label: Callable[[str], str]) -> tuple[str, str]:
    """The arc under the lanes with its markers, and the moments as a clickable list (both "" without an arc)."""
    arc = (summary or {}).get("arc") or {}
    values = np.asarray(arc.get("values") or [], dtype=np.float64)
    if len(values) == 0:
        return "", ""
    step = float(arc["step_s"])
    scale = max(0.25, float(np.abs(values).max()))  # the strip's ± range: the curve's own, at least ±0.25
    xs = np.minimum(np.arange(len(values)) * step, duration) * ARC_WIDTH / duration

    def points(v: np.ndarray) -> str:
        return " ".join(f"{x:.1f} {50 - 45 * y / scale:.1f}" for x, y in zip(xs, v, strict=True))

    def area(v: np.ndarray) -> str:
        return f"M{xs[0]:.1f} 50L{points(v)}L{xs[-1]:.1f} 50Z"

    svg = (f'<svg viewBox="0 0 {ARC_WIDTH} 100" preserveAspectRatio="none" aria-hidden="true" focusable="false">'
           f'<path d="{area(np.maximum(values, 0))}" fill="#2b8a3e" fill-opacity=".35"/>'
           f'<path d="{area(np.minimum(values, 0))}" fill="#e03131" fill-opacity=".35"/>'
           f'<line x1="0" y1="50" x2="{ARC_WIDTH}" y2="50" stroke="#888" stroke-dasharray="4 4" '
           'vector-effect="non-scaling-stroke"/>'
           f'<path d="M{points(values)}" fill="none" stroke="#495057" stroke-width="1.5" '
           'vector-effect="non-scaling-stroke"/></svg>')  # fmt: skip
    found = moments(summary)
    markers, chips = [], []
    for m in found:
        attrs, tip = _moment_attrs(m, label)
        symbol, name = _kind_text(m["kind"])
        turning = " e2v-conv-turning" if m["kind"] in ("up", "down") else ""
        left = 100 * min(m["time_s"], duration) / duration
        markers.append(f'<button type="button" class="e2v-conv-marker e2v-kind-{escape(m["kind"])}{turning}" {attrs} '
                       f'style="left:{left:.3f}%" title="{escape(tip)}" aria-label="{escape(tip)}">{symbol}</button>')  # fmt: skip
        who = f" {label(m['speaker'])}" if m["speaker"] else ""
        chips.append(f'<button type="button" class="e2v-conv-moment e2v-kind-{escape(m["kind"])}" {attrs} '
                     f'title="{escape(tip)}">{symbol} {clock(m["time_s"])}{who} {name}</button>')  # fmt: skip
    tip = bilingual(
        f"The call's balance (positive − negative scores), smoothed over {arc.get('window_s', 15):g} s; "
        "above the dashed line more positive, below more negative",
        f"通话的情绪平衡（积极减消极得分），按 {arc.get('window_s', 15):g} 秒平滑；虚线以上偏积极，以下偏消极",
    )  # fmt: skip
    name = (f'<div class="e2v-conv-lane-name" title="{escape(tip)}">{bilingual("Arc", "情绪走向")}'
            f'<br><span style="opacity:.7">±{scale:.2f}</span></div>')  # fmt: skip
    row = (f'<div class="e2v-conv-arc" id="conversation_arc" role="group" aria-label="{escape(tip)}">'
           f'{name}<div class="e2v-conv-track">{svg}{"".join(markers)}'
           '<div class="e2v-conv-playhead" style="left:0%"></div></div></div>')  # fmt: skip
    if not chips:
        chips = [
            f'<span style="opacity:.7">{bilingual("no turning points or escalations", "没有转折点或情绪升级")}</span>'
        ]
    listing = (f'<div class="e2v-conv-moments" id="conversation_moments">'
               f'<b>{bilingual("Moments", "关键时刻")}:</b>{"".join(chips)}</div>')  # fmt: skip
    return row, listing


_COLUMNS = (  # (key, English, 中文, what it is: English, 中文)
    ("speaker", "Speaker", "说话人", "", ""),
    ("talk", "Talk time", "说话时长", "seconds of speech and share of all speech", "说话秒数及占全部语音的比例"),
    ("turns", "Turns", "轮数", "number of turns", "话轮数"),
    ("share", "Emotions", "情绪构成", "share of the speaker's time per turn emotion", "各情绪占该说话人时长的比例"),
    ("confidence", "Confidence", "置信度", "mean turn confidence, weighted by time", "按时长加权的平均置信度"),
    ("balance", "Balance", "情绪平衡", "mean positive − negative score (−1 … +1)", "平均积极减消极得分（−1 … +1）"),
    ("baseline", "Baseline neg.", "基线负面度",
     "negativity over the speaker's first seconds of speech", "该说话人最初若干秒语音的负面度"),
    ("closing", "Closing balance", "结尾平衡", "balance over the speaker's last seconds of speech", "该说话人最后若干秒语音的平衡"),
    ("escalations", "Escalations", "升级次数", "rises of negativity above the baseline", "负面度超过基线的升级次数"),
    ("intense", "Most intense turns", "最强烈的几轮", "the turns with the strongest emotion; click one to play it",
     "情绪最强烈的几轮；点击播放"),
)  # fmt: skip


def summary_table_html(summary: Mapping | None, label: Callable[[str], str], color: Mapping[str, str]) -> str:
    """One row per speaker of ``summary.speakers`` ("" without a summary)."""
    rows = (summary or {}).get("speakers") or []
    if not rows:
        return ""
    head = "".join(
        f'<th scope="col" title="{escape(bilingual(tip, tip_zh))}">{bilingual(en, zh)}</th>' if tip else
        f'<th scope="col">{bilingual(en, zh)}</th>'
        for _, en, zh, tip, tip_zh in _COLUMNS
    )  # fmt: skip
    body = []
    for s in rows:
        bars = "".join(
            f'<div title="{escape(ui_text.emotion_name(k))} {v:.0%}" style="width:{100 * v:.2f}%;'
            f'background:{ui_text.EMOTION_COLORS.get(k, "#888")}"></div>'
            for k in EMOTIONS
            if (v := float(s["emotion_share"].get(k, 0.0))) > 0
        )  # fmt: skip
        intense = " ".join(  # the most intense turns (up to three), each a link that plays it
            f'<button type="button" class="e2v-conv-seek" data-start="{t["start_s"]}" data-index="{int(t["index"])}" '
            f'title="{escape(ui_text.emotion_name(t["emotion"]))} — {escape(bilingual("play this turn", "播放这一轮"))}">'
            f'{clock(t["start_s"])} {EMOJI.get(t["emotion"], "")}</button>'
            for t in s.get("intense_turns") or []
        )  # fmt: skip
        cells = (
            f'<th scope="row" style="color:{color.get(s["id"], "#888")}">{label(s["id"])}</th>',
            f"<td>{s['talk_s']:.1f} s · {s['talk_share']:.0%}</td>",
            f"<td>{s['turns']}</td>",
            f'<td><div class="e2v-conv-bar">{bars}</div></td>',
            f"<td>{s['mean_confidence']:.2f}</td>",
            f"<td>{s['mean_balance']:+.2f}</td>",
            f"<td>{s['baseline']['negativity']:.2f}</td>",
            f"<td>{s['closing_balance']:+.2f}</td>",
            f"<td>{s['escalations']}</td>",
            f'<td class="e2v-conv-intense">{intense}</td>',
        )
        body.append(f'<tr data-speaker="{escape(s["id"])}">{"".join(cells)}</tr>')
    compare = (summary or {}).get("comparison")
    note = ""
    if compare:  # speakers named as agent and customer (engine/call_summary.py's comparison)
        change = bilingual("Customer mood change (closing − baseline balance)", "客户情绪变化（结尾平衡 − 基线平衡）")
        note = (f'<div class="e2v-conf-label" id="conversation_comparison">{label(compare["agent"])} ↔ '
                f'{label(compare["customer"])} · {change}: <b>{compare["customer_mood_change"]:+.2f}</b></div>')  # fmt: skip
    return (f'<div class="e2v-conv-table-wrap"><table class="e2v-conv-table" id="conversation_summary_table">'
            f'<thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>{note}')  # fmt: skip


def report_link_html(url: str | None) -> str:
    """The "Download report" link ("" when the run has no report.html)."""
    if not url:
        return ""
    tip = bilingual("One self-contained HTML file: summary, arc, lanes, transcript; opens offline, prints to PDF",
                    "单个独立 HTML 文件：摘要、情绪走向、轨道、转写；可离线打开、可打印为 PDF")  # fmt: skip
    return (
        f'<a class="e2v-conv-report" id="conversation_report" href="{escape(url)}" download="report.html" '
        f'title="{escape(tip)}">⬇ {bilingual("Download report (report.html)", "下载报告（report.html）")}</a>'
    )
