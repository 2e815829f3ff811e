"""``calls_report.html``: a conversation batch's calls ranked by escalation, and aggregates per speaker label.

Same rules as a run's ``report.html`` (:mod:`runs.report`, whose page and CSS
it shares): one self-contained file, inline CSS and SVG only, bilingual
headings, every string that came from a user (file names, speaker labels)
escaped with :func:`html.escape`. Each call's arc is a small inline sparkline.
"""

from __future__ import annotations

from html import escape

from emotion2vec_webui.runs.report import emotion_html, page
from emotion2vec_webui.runs.report_svg import clock

SPARK_W, SPARK_H = 160, 28


def sparkline(arc: dict, duration: float) -> str:
    """A call's arc as a small SVG line (−1 bottom, +1 top, a dotted zero line)."""
    values, step = arc.get("values") or [], arc.get("step_s") or 1.0
    if not values or duration <= 0:
        return ""
    pts = " ".join(
        f"{SPARK_W * min(i * step, duration) / duration:.1f},{SPARK_H / 2 * (1 - max(-1.0, min(1.0, v))):.1f}"
        for i, v in enumerate(values)
    )
    return (
        f'<svg viewBox="0 0 {SPARK_W} {SPARK_H}" width="{SPARK_W}" height="{SPARK_H}" role="img" '
        'aria-label="情绪曲线 / arc" style="display:inline-block;width:auto">'
        f'<line x1="0" y1="{SPARK_H / 2}" x2="{SPARK_W}" y2="{SPARK_H / 2}" class="zero"/>'
        f'<polyline points="{pts}" class="curve" style="stroke-width:1.2"/></svg>'
    )


def _n(v, digits: int = 2) -> str:
    return "—" if v is None else f"{float(v):.{digits}f}"


def _calls_table(calls: list[dict]) -> str:
    out = [
        '<section id="calls"><h2>按升级排序的通话 / Calls ranked by escalation</h2><table><tr><th>#</th>'
        "<th>文件 / File</th><th>时长 / Duration</th><th>升级 / Escalations</th><th>首次升级 / First escalation</th>"
        "<th>最低点 / Worst moment</th><th>说话人 / Speakers</th><th>情绪曲线 / Arc</th></tr>"
    ]
    for c in calls:
        speakers = "<br>".join(
            f"{escape(s['label'])}: {_n(s['talk_share'] * 100, 0)}% {emotion_html(s['dominant_emotion'])}"
            for s in c["speakers"]
        )
        first = clock(c["first_escalation_s"]) if c["first_escalation_s"] is not None else "—"
        worst = f"{clock(c['worst_moment_s'])} ({_n(c['worst_arc'])})" if c["worst_moment_s"] is not None else "—"
        out.append(
            f'<tr data-rank="{c["rank"]}"><td class="n">{c["rank"]}</td><td>{escape(c["file"])}</td>'
            f'<td class="n">{clock(c["duration_s"])}</td><td class="n" data-field="escalations">{c["escalations"]}</td>'
            f"<td>{first}</td><td>{worst}</td><td>{speakers}</td><td>{sparkline(c['arc'], c['duration_s'])}</td></tr>"
        )
    return "".join(out) + "</table></section>"


def _labels_table(by_label: list[dict]) -> str:
    out = [
        '<section id="by-label"><h2>按说话人名称汇总 / By speaker label</h2><p class="meta">同名说话人跨通话汇总'
        "（未命名时为 left/right 等编号）/ Speakers with the same label across calls (the ids left/right … when "
        "not named; name them with batch --speaker-names).</p><table><tr><th>说话人 / Label</th><th>通话 / Calls</th>"
        "<th>说话时长 / Talk</th><th>平均占比 / Mean share</th><th>平均消极度 / Mean negativity</th>"
        "<th>平均平衡 / Mean balance</th><th>升级 / Escalations</th><th>有升级的通话 / Calls escalated</th>"
        "<th>主要情感 / Dominant</th></tr>"
    ]
    for a in by_label:
        dominant = max(a["emotion_share"], key=a["emotion_share"].get) if a["talk_s"] else None
        out.append(
            f'<tr data-label="{escape(a["label"])}"><td>{escape(a["label"])}</td><td class="n">{a["calls"]}</td>'
            f'<td class="n">{clock(a["talk_s"])}</td><td class="n">{_n(a["mean_talk_share"], 3)}</td>'
            f'<td class="n" data-field="mean_negativity">{_n(a["mean_negativity"], 3)}</td>'
            f'<td class="n">{_n(a["mean_balance"], 3)}</td><td class="n" data-field="escalations">{a["escalations"]}</td>'
            f'<td class="n">{a["calls_escalated"]}</td><td>{emotion_html(dominant)}</td></tr>'
        )
    return "".join(out) + "</table></section>"


def calls_report_html(table: dict, batch_name: str) -> str:
    """The batch report page from :func:`calls.calls_table`'s ``{"calls", "by_label"}``."""
    calls = table["calls"]
    total = sum(c["escalations"] for c in calls)
    head = (
        f'<header><h1>通话批量报告 / Calls report</h1><p class="meta">{escape(batch_name)} · {len(calls)} 通 / calls'
        f' · {total} 次升级 / escalations</p><p class="meta">升级：某说话人话轮的消极度（生气+厌恶+恐惧+难过）比其前 20 秒'
        "基线高 0.3 以上 / escalation: a speaker's turn whose negativity (angry + disgusted + fearful + sad) is 0.3 "
        "above their baseline (their first 20 s of speech).</p></header>"
    )
    return page(
        f"通话批量报告 / Calls report — {batch_name}", head + _calls_table(calls) + _labels_table(table["by_label"])
    )
