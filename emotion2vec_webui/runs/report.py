"""``report.html``: one self-contained page per run that people can send, open offline and print to PDF.

:func:`report_html` turns a result.json object into the page: the summary
(``summary`` block, ``engine/call_summary.py``; recomputed for a run written
before it), the arc and the speaker lanes as inline SVG (:mod:`report_svg`),
the transcript with each turn's emotion, and the settings used. Inline CSS
only, with print rules (A4, sections kept whole where they fit); no script, no
font, image or style sheet fetched from anywhere. Headings are bilingual.

Every string that can come from a user — speaker names, transcripts, the file
name, the request id, warnings — passes through :func:`html.escape` (the
standard library's, quotes included) before it reaches the page; nothing a
user gave is put inside ``<style>`` or an attribute without it. Written by
``recognize --report`` and served by ``GET /api/v1/runs/{id}/report.html``
(made from result.json when the folder has none); the UI offers it too.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from pathlib import Path

from emotion2vec_webui.engine.call_summary import summary_for_result
from emotion2vec_webui.files import write_atomic
from emotion2vec_webui.labels import EMOJI, EMOTION_COLORS, EMOTIONS, EMOTIONS_ZH
from emotion2vec_webui.runs.report_svg import arc_svg, clock, lanes_svg

REPORT_HTML = "report.html"
SECTIONS = ("summary", "arc", "lanes", "transcript", "settings")  # the page's section ids, in order

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI","PingFang SC","Microsoft YaHei",sans-serif;color:#1c2024;
  margin:0 auto;max-width:960px;padding:24px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
.meta{color:#555}.warn{background:#fff4d6;border:1px solid #f0c36d;padding:6px 10px;border-radius:4px}
table{border-collapse:collapse;width:100%;font-size:13px}th,td{border-bottom:1px solid #e4e4e7;padding:4px 6px;
  text-align:left;vertical-align:top}th{background:#f4f4f5}td.n{text-align:right;font-variant-numeric:tabular-nums}
.chip{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:4px}
svg{width:100%;height:auto;display:block}svg .axis{stroke:#999}svg .zero{stroke:#bbb;stroke-dasharray:3 3}
svg .tick,svg .lab{font-size:11px;fill:#555}svg .tick{text-anchor:middle}svg .curve{fill:none;stroke:#1c2024;stroke-width:2}
svg .turn{stroke:#8e4ec6;stroke-dasharray:5 3;stroke-width:1.5}svg .esc{fill:#e5484d}svg .deesc{fill:#30a46c}
svg .lane{fill:#f4f4f5}ul{margin:4px 0;padding-left:20px}
@page{size:A4;margin:14mm}
@media print{*{-webkit-print-color-adjust:exact;print-color-adjust:exact}body{padding:0;font-size:11px;max-width:none}section{break-inside:avoid-page}
  section#transcript{break-inside:auto}tr{break-inside:avoid}a{color:inherit;text-decoration:none}}
"""


def _e(value) -> str:
    """Escaped text of anything (None → empty)."""
    return "" if value is None else escape(str(value), quote=True)


def _n(value, digits: int = 2) -> str:
    return "—" if value is None else f"{float(value):.{digits}f}"


def emotion_html(key: str | None) -> str:
    """A colour chip, the emoji and the bilingual name of an emotion key."""
    if key is None:
        return "—"
    return (f'<span class="chip" style="background:{EMOTION_COLORS.get(key, "#888")}"></span>'
            f"{EMOJI.get(key, '')} {_e(EMOTIONS_ZH.get(key, key))} / {_e(key)}")  # fmt: skip


def _cell(field: str, value, digits: int = 2, speaker: str | None = None) -> str:
    who = f' data-speaker="{_e(speaker)}"' if speaker is not None else ""
    return f'<td class="n" data-field="{field}"{who}>{_n(value, digits)}</td>'


def _turn_link(t: Mapping) -> str:
    return f'<a href="#turn-{int(t["index"])}">{clock(t["start_s"])}–{clock(t["end_s"])}</a>'


def _spans(result: Mapping) -> list[Mapping]:
    if result.get("turns") is not None:
        return result["turns"]
    return [{**s, "index": i, "speaker": "all"} for i, s in enumerate(result.get("segments") or [])]


def _summary_section(result: Mapping, summary: Mapping | None) -> str:
    out = [f'<section id="summary"><h2>摘要 / Summary</h2><p>整体情感 / Overall: {emotion_html(result.get("emotion"))} '
           f'<span data-field="confidence">{_n(result.get("confidence"))}</span></p>']  # fmt: skip
    if not summary:
        return out[0] + "<p>无时间信息（整句结果）/ No timeline (one utterance result).</p></section>"
    out.append(
        "<table><tr><th>说话人 / Speaker</th><th>说话时长 / Talk (s)</th><th>占比 / Share</th><th>话轮 / Turns</th>"
        "<th>主要情感 / Dominant</th><th>平均置信度 / Mean confidence</th><th>基线消极度 / Baseline negativity</th>"
        "<th>平均平衡 / Mean balance</th><th>结尾平衡 / Closing balance</th><th>升级 / Escalations</th></tr>"
    )
    for s in summary["speakers"]:
        dominant = max(s["emotion_share"], key=s["emotion_share"].get) if s["talk_s"] else None
        sid = s["id"]
        out.append(
            f"<tr><td>{_e(s['label'])}</td>{_cell('talk_s', s['talk_s'], 1, sid)}"
            f'{_cell("talk_share", s["talk_share"], 3, sid)}<td class="n" data-field="turns" '
            f'data-speaker="{_e(sid)}">{s["turns"]}</td><td>{emotion_html(dominant)}</td>'
            f"{_cell('mean_confidence', s['mean_confidence'], 3, sid)}"
            f"{_cell('baseline_negativity', s['baseline']['negativity'], 3, sid)}"
            f"{_cell('mean_balance', s['mean_balance'], 3, sid)}{_cell('closing_balance', s['closing_balance'], 3, sid)}"
            f'<td class="n" data-field="escalations" data-speaker="{_e(sid)}">{s["escalations"]}</td></tr>'
        )
    out.append("</table><ul>")
    for s in summary["speakers"]:
        intense = ", ".join(f"{_turn_link(t)} {emotion_html(t['emotion'])}" for t in s["intense_turns"]) or "—"
        rises = ", ".join(f"{_turn_link(t)} +{_n(t['rise'])}" for t in s["largest_rises"]) or "—"
        out.append(f"<li><b>{_e(s['label'])}</b> — 最强烈 / most intense: {intense}; "
                   f"高于基线 / largest rises above baseline: {rises}</li>")  # fmt: skip
    out.append("</ul>")
    worst = summary["worst_moment"]
    worst_text = f"{clock(worst['time_s'])} ({_n(worst['arc'])})" if worst else "—"
    out.append(f'<p>升级次数 / Escalations: <b data-field="call_escalations">{summary["escalations"]}</b>; '
               f'最低点 / Worst moment: <span data-field="worst_moment">{worst_text}</span></p>')  # fmt: skip
    if summary["events"]:
        labels = {s["id"]: s["label"] for s in summary["speakers"]}
        out.append("<p>事件 / Events:</p><ul>")
        for e in summary["events"]:
            what = "升级 / escalation" if e["type"] == "escalation" else "缓和 / de-escalation"
            out.append(f'<li><a href="#turn-{int(e["index"])}">{clock(e["time_s"])}</a> {what} — '
                       f"{_e(labels.get(e['speaker'], e['speaker']))} (消极度 / negativity {_n(e['negativity'])}, "
                       f"基线 / baseline {_n(e['baseline'])})</li>")  # fmt: skip
        out.append("</ul>")
    c = summary.get("comparison")
    if c:
        out.append("<p>坐席与客户 / Agent vs customer:</p><table><tr><th></th><th>坐席 / Agent</th>"
                   "<th>客户 / Customer</th></tr>")  # fmt: skip
        for key in (
            "talk_share",
            "mean_negativity",
            "mean_balance",
            "mean_confidence",
            "escalations",
            "closing_balance",
        ):
            out.append(f"<tr><td>{key}</td><td class=\"n\">{c[key]['agent']}</td><td class=\"n\">{c[key]['customer']}"
                       "</td></tr>")  # fmt: skip
        out.append(f'</table><p>客户情绪变化 / Customer mood change: <span data-field="customer_mood_change">'
                   f"{_n(c['customer_mood_change'], 3)}</span></p>")  # fmt: skip
    return "".join(out) + "</section>"


def _arc_section(summary: Mapping | None, duration: float) -> str:
    head = '<section id="arc"><h2>情绪曲线 / Emotional arc</h2>'
    if not summary or not summary["arc"]["values"]:
        return head + "<p>无 / None.</p></section>"
    points = "".join(f"<li>{clock(p['time_s'])}: {_n(p['before'])} → {_n(p['after'])}</li>"
                     for p in summary["turning_points"])  # fmt: skip
    return (head + "<p class=\"meta\">平衡 = 开心 − (生气 + 厌恶 + 恐惧 + 难过)，15 秒窗口平滑 / balance = happy − "
            "(angry + disgusted + fearful + sad), smoothed over 15 s. 虚线：转折点 / dashed: turning points; "
            "▲ 升级 / escalation, ▼ 缓和 / de-escalation.</p>" + arc_svg(summary, duration)
            + (f"<p>转折点 / Turning points:</p><ul>{points}</ul>" if points else "")
            + _dimension_line(summary.get("dimension_arc")) + "</section>")  # fmt: skip


def _dimension_line(dim: Mapping | None) -> str:
    """A dimensional head's valence over the call in one line: start, lowest (when), end — in its own units."""
    if not dim or not dim["values"]:
        return ""
    v = dim["values"]
    low = min(range(len(v)), key=v.__getitem__)
    return (f'<p data-field="dimension_arc">效价（回归头 {_e(dim.get("head"))}，其自身单位）/ {_e(dim["target"])} '
            f"(head {_e(dim.get('head'))}, its own units): 开始 / start {_n(v[0])}, 最低 / lowest {_n(v[low])} "
            f"({clock(low * dim['step_s'])}), 结束 / end {_n(v[-1])}</p>")  # fmt: skip


def _lanes_section(result: Mapping, summary: Mapping | None, duration: float) -> str:
    head = '<section id="lanes"><h2>说话人泳道 / Speaker lanes</h2>'
    spans = _spans(result)
    if not spans or not summary:
        return head + "<p>无 / None.</p></section>"
    speakers = [(s["id"], s["label"]) for s in summary["speakers"]]
    legend = " ".join(emotion_html(k) for k in EMOTIONS)
    return head + lanes_svg(spans, speakers, duration) + f'<p class="meta">{legend}</p></section>'


def _transcript_section(result: Mapping, summary: Mapping | None) -> str:
    head = '<section id="transcript"><h2>转写与情感 / Transcript with emotions</h2>'
    spans = _spans(result)
    if not spans:
        return head + "<p>无 / None.</p></section>"
    labels = {s["id"]: s["label"] for s in (summary or {}).get("speakers", [])}
    rows = ["<table><tr><th>时间 / Time</th><th>说话人 / Speaker</th><th>情感 / Emotion</th>"
            "<th>置信度 / Confidence</th><th>文本 / Text</th></tr>"]  # fmt: skip
    for t in spans:
        rows.append(
            f'<tr id="turn-{int(t["index"])}"><td>{clock(t["start_s"])}–{clock(t["end_s"])}</td>'
            f"<td>{_e(labels.get(t['speaker'], t['speaker']))}</td><td>{emotion_html(t['emotion'])}</td>"
            f"{_cell('turn_confidence', t['confidence'], 3)}<td>{_e(t.get('text'))}</td></tr>"
        )
    return head + "".join(rows) + "</table></section>"


def _settings_section(result: Mapping, summary: Mapping | None) -> str:
    audio, model = result.get("audio") or {}, result.get("model") or {}
    speakers = result.get("speakers")
    mode = None if speakers is None else ("channels" if speakers and speakers[0].get("channel") is not None else "auto")
    rows = [
        ("文件 / File", audio.get("source_name")), ("时长 / Duration (s)", audio.get("duration_s")),
        ("声道 / Channels", f"{audio.get('original_channels')} ({audio.get('channels')})"),
        ("模型 / Model", f"{model.get('name')} ({model.get('hub')}: {model.get('hub_id')})"),
        ("设备 / Device", f"{model.get('device')} {model.get('dtype')}"),
        ("粒度 / Granularity", result.get("granularity")),
        ("平滑 / Frame smoothing (s)", (result.get("frames") or {}).get("smoothing_s")),
        ("说话人 / Speakers", None if mode is None else f"{mode}: {len(speakers)}"),
        ("分类头 / Head", (result.get("head") or {}).get("name")),
        ("定义 / Definitions", ", ".join(f"{k}={v}" for k, v in ((summary or {}).get("definitions") or {}).items())),
        ("时间 / Time", result.get("timestamp")), ("请求 / Request id", result.get("request_id")),
        ("版本 / Version", result.get("app_version")),
    ]  # fmt: skip
    body = "".join(f"<tr><th>{k}</th><td>{_e(v)}</td></tr>" for k, v in rows if v not in (None, ""))
    return f'<section id="settings"><h2>所用设置 / Settings used</h2><table>{body}</table></section>'


def report_html(result: dict) -> str:
    """The self-contained ``report.html`` of one run (a result.json object; never modified).

    Args:
        result: the run's result.json content (a conversation, a file with segments, or one utterance).

    Returns:
        The whole HTML document (UTF-8 text): summary, arc, lanes, transcript, settings.
    """
    summary = result.get("summary") or summary_for_result(result)
    duration = float((result.get("audio") or {}).get("duration_s") or 0.0)
    warnings = list(result.get("warnings") or [])
    if (result.get("model") or {}).get("random_weights"):
        warnings.insert(0, "随机权重模型：结果没有意义 / Random-weight model: the results are meaningless.")
    name = (result.get("audio") or {}).get("source_name") or ""
    return page(f"情感分析报告 / Emotion report — {name}", "".join([
        f"<header><h1>情感分析报告 / Emotion report</h1><p class=\"meta\">{_e(name)} · {clock(duration)} · "
        f"{_e(result.get('timestamp'))}</p>",
        "".join(f'<p class="warn">{_e(w)}</p>' for w in warnings), "</header>",
        _summary_section(result, summary), _arc_section(summary, duration), _lanes_section(result, summary, duration),
        _transcript_section(result, summary), _settings_section(result, summary),
    ]))  # fmt: skip


def page(title: str, body: str) -> str:
    """A whole HTML document: ``title`` (escaped here), the report's inline CSS, ``body`` (HTML, escaped by the caller)."""
    return (
        '<!DOCTYPE html><html lang="zh-CN"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body>{body}"
        '<footer class="meta"><p>emotion2vec-webui</p></footer></body></html>\n'
    )


def write_report(folder: str | Path, result: dict) -> Path:
    """Write ``report.html`` into a run ``folder`` atomically and return its path."""
    path = Path(folder) / REPORT_HTML
    write_atomic(path, report_html(result))
    return path
