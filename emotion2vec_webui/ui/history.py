"""What the History tab shows, as plain functions over the run catalog (no Gradio: tests call them directly).

A page lists single runs and batches — a batch is one row (📦) that expands to its summary,
metrics, confusion matrix and its runs — newest first, searched and filtered like
``GET /api/v1/runs`` (:mod:`runs.run_query`), and paged by cursor. The table keeps to five
columns that fit a 1280 px page; the others (duration, granularity, head label, speakers,
reference label, run id, batch) are shown on demand. A conversation run reopens with its lanes,
transcript and player (:func:`ui.conversation_tab.conversation_html`) besides the result card.
Every string that came from a user (file names, labels, speaker names) is escaped.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from pathlib import Path

from emotion2vec_webui.labels import EMOJI, EMOTIONS, bilingual
from emotion2vec_webui.runs.catalog import run_query, run_stats
from emotion2vec_webui.runs.catalog.folders import run_path
from emotion2vec_webui.runs.catalog.retention import delete_item, in_use
from emotion2vec_webui.runs.catalog.run_index import catalog_for
from emotion2vec_webui.runs.similarity import RECORD_ID_RE, list_records
from emotion2vec_webui.ui import handlers as ui_handlers
from emotion2vec_webui.ui import text as ui_text

PAGE_SIZE = 20  # rows per page
EXPANDED_RUNS = 50  # runs shown under an expanded batch row (the batch filter pages through all)
MAIN_COLUMNS = ("时间 / time", "文件 / file", "情绪 / emotion", "置信度 / conf.", "类型 / type")
# secondary columns, shown on demand: key → header
SECONDARY_COLUMNS: dict[str, str] = {
    "duration": "时长 / duration",
    "granularity": "粒度 / granularity",
    "head_label": "分类头 / head label",
    "speakers": "说话人 / speakers",
    "label": "参考标签 / reference",
    "run_id": "运行 / run",
    "batch": "批量 / batch",
}
KIND_CHOICES = [
    ("全部 / All", ""), ("单次 / Single runs", "single"), ("批量 / Batches", "batch"),
    ("对话 / Conversations", "conversation"), ("实时 / Live", "live"), ("流式 / Stream", "stream"),
    ("相似度比较 / Similarity comparisons", "similarity"),
]  # fmt: skip
_CSS = (
    ".e2v-facts{border-collapse:collapse;margin:4px 0}.e2v-facts th{text-align:left;font-weight:600;padding:2px 12px 2px 0}"
    ".e2v-facts td{padding:2px 0}.e2v-confusion{border-collapse:collapse;margin:6px 0;font-size:13px}"
    ".e2v-confusion th,.e2v-confusion td{border:1px solid rgba(128,128,128,.35);padding:2px 8px;text-align:center}"
)
EMOTION_CHOICES = [("全部情绪 / All emotions", "")] + [(f"{EMOJI[k]} {ui_text.emotion_name(k)}", k) for k in EMOTIONS]


@dataclass(frozen=True)
class Page:
    """One rendered page of the table."""

    headers: list[str]  # the visible columns
    rows: list[list[str]]  # their cells
    items: list[list[str]]  # per row: [kind, id] — kind "run", "batch" or "similarity"
    total: int  # rows (runs and batches) matching, over all pages
    next_cursor: str | None
    indexing: bool  # the catalog is still being built


def history_filter(q=None, emotion=None, kind=None, since=None, until=None, min_confidence=None, batch=None,
                   speaker=None, head_label=None) -> run_query.RunFilter:  # fmt: skip
    """The tab's search and filter boxes as a :class:`run_query.RunFilter` (``E2VError`` for a bad value)."""
    conf = float(min_confidence) if min_confidence not in (None, "", 0, 0.0) else None
    kind = None if kind in (None, "", "similarity") else kind
    return run_query.make_filter(q, emotion or None, conf, since, until, batch, head_label, speaker, kind)


def page(root: str | Path, flt: run_query.RunFilter, cursor: str | None = None, expanded: str | None = None,
         columns: tuple[str, ...] = (), similarity: bool = False) -> Page:  # fmt: skip
    """The table for one page: batches as one row each (the ``expanded`` one followed by its runs).

    With a batch filter the batch's runs are listed one per row (paged). ``similarity`` lists the
    kept comparisons instead (not in the catalog; at most one page).
    """
    columns = tuple(c for c in SECONDARY_COLUMNS if c in columns)
    headers = [*MAIN_COLUMNS, *(SECONDARY_COLUMNS[c] for c in columns)]
    index = catalog_for(root)
    if similarity:
        rows, items = _similarity_rows(root, columns)
        return Page(headers, rows, items, len(rows), None, False)
    rows, items = [], []
    if flt.batch:
        listed = run_query.list_runs(index, flt, PAGE_SIZE, cursor)
        for run in listed.runs:
            rows.append(run_cells(run, columns))
            items.append(["run", run["run_id"]])
        return Page(headers, rows, items, listed.total, listed.next_cursor, index.syncing)
    listed = run_query.list_items(index, flt, PAGE_SIZE, cursor)
    for item in listed.items:
        if not item["is_batch"]:
            rows.append(run_cells(item, columns))
            items.append(["run", item["run_id"]])
            continue
        rows.append(batch_cells(item, columns, open_=item["item"] == expanded))
        items.append(["batch", item["item"]])
        if item["item"] == expanded:
            inner = run_query.list_runs(index, _with_batch(flt, expanded), EXPANDED_RUNS)
            for run in inner.runs:
                rows.append(run_cells(run, columns, child=True))
                items.append(["run", run["run_id"]])
    return Page(headers, rows, items, listed.total, listed.next_cursor, index.syncing)


def _with_batch(flt: run_query.RunFilter, batch: str) -> run_query.RunFilter:
    from dataclasses import replace

    return replace(flt, batch=batch)


def _emotion(key: str | None) -> str:
    return f"{EMOJI.get(key, '')} {ui_text.emotion_name(key)}".strip() if key else "—"


def _time(timestamp: str | None) -> str:
    return str(timestamp or "")[:16].replace("T", " ")


def run_cells(run: dict, columns: tuple[str, ...], child: bool = False) -> list[str]:
    """A run's row: the main columns, then the secondary ones asked for."""
    kind = {"single": "单次 / single", "batch": "批量 / batch", "live": "实时 / live", "stream": "流式 / stream"}
    what = "🗣 对话 / conversation" if run.get("conversation") else kind.get(run.get("kind") or "", run.get("kind") or "")
    conf = ui_text.percent(run["confidence"]) if run.get("confidence") is not None else "—"
    name = str(run.get("source_name") or "—")
    cells = [_time(run.get("timestamp")), ("↳ " if child else "") + name, _emotion(run.get("emotion")), conf, what]
    extra = {
        "duration": f"{run['duration_s']:.1f} s" if run.get("duration_s") is not None else "",
        "granularity": _granularity(run.get("granularity")),
        "head_label": str(run.get("head_label") or ""),
        "speakers": ", ".join(run.get("speakers") or []),
        "label": str(run.get("label") or ""),
        "run_id": str(run.get("run_id") or ""),
        "batch": str(run.get("batch") or ""),
    }
    return cells + [extra[c] for c in columns]


def _granularity(value: str | None) -> str:
    zh, en = ui_text.GRANULARITY_NAMES.get(value or "", ("", value or ""))
    return f"{zh} / {en}" if zh else en


def batch_cells(item: dict, columns: tuple[str, ...], open_: bool = False) -> list[str]:
    """A batch's one row: ▸/▾, its name and input, its top emotions, accuracy when labelled, its run count."""
    batch = item.get("batch") or {}
    top = sorted(item["emotions"].items(), key=lambda kv: -kv[1])[:2]
    emotions = " · ".join(f"{EMOJI.get(k, '')} {n}" for k, n in top) or "—"
    accuracy = batch.get("accuracy")
    conf = f"acc {accuracy:.0%}" if isinstance(accuracy, (int, float)) else "—"
    name = f"{'▾' if open_ else '▸'} 📦 {item['item']}"
    if batch.get("input"):
        name += f" · {batch['input']}"
    cells = [_time((item.get("newest") or {}).get("timestamp")), name, emotions, conf,
             f"📦 批量 / batch · {item['runs']}"]  # fmt: skip
    extra = {"batch": item["item"], "run_id": item["item"]}
    return cells + [extra.get(c, "") for c in columns]


def _similarity_rows(root: str | Path, columns: tuple[str, ...]) -> tuple[list[list[str]], list[list[str]]]:
    rows, items = [], []
    for rec in list_records(root, limit=PAGE_SIZE * 5):
        a, b = rec.get("a") or {}, rec.get("b") or {}
        cells = [_time(rec.get("timestamp")), f"{a.get('source_name', '')} ↔ {b.get('source_name', '')}",
                 f"{_emotion(a.get('emotion'))} ↔ {_emotion(b.get('emotion'))}",
                 f"cos {rec.get('cosine', 0):.3f}", "相似度 / similarity"]  # fmt: skip
        rows.append(cells + [rec.get("id", "") if c == "run_id" else "" for c in columns])
        items.append(["similarity", rec.get("id", "")])
    return rows, items


def status_html(page_no: int, total: int, indexing: bool, note: str = "") -> str:
    """The line above the table: the page and how many rows (runs and batches) match; "indexing"; a note."""
    text = f"第 {page_no} 页 · 共 {total} 条 / page {page_no} · {total} matching"
    if indexing:
        text += " · ⏳ 正在建立索引，列表可能不完整 / indexing the run folders: the list may be incomplete"
    note_html = f'<div class="e2v-conf-label" id="history_note">{note}</div>' if note else ""
    return f'<div id="history_status_line" data-total="{total}" data-page="{page_no}">{escape(text)}</div>{note_html}'


def batch_panel_html(root: str | Path, batch: str) -> str:
    """A batch's summary, metrics and confusion matrix (what ``GET /api/v1/batches/{id}`` returns), as HTML."""
    detail = run_stats.batch_detail(catalog_for(root), batch)
    if detail is None:
        return ui_text.error_card_html("not_found", f"No batch {batch}. / 没有批量 {batch}。")
    summary = detail["summary"]
    state = {"done": "已完成 / done", "running": "进行中 / running", "stopped": "已中断 / stopped (--resume)"}
    facts = [
        (bilingual("State", "状态"), state.get(detail["state"], detail["state"])),
        (bilingual("Input", "输入"), detail.get("input") or "—"),
        (bilingual("Runs", "运行数"), str(summary["runs"])),
        (bilingual("Inputs ok / failed", "成功 / 失败"), f"{detail.get('ok') or 0} / {detail.get('failed') or 0}"),
        (bilingual("Audio", "音频总长"), f"{(summary.get('audio_s') or 0):.1f} s"),
        (bilingual("Mean confidence", "平均置信度"),
         ui_text.percent(summary["mean_confidence"]) if summary.get("mean_confidence") is not None else "—"),
    ]  # fmt: skip
    metrics = detail.get("metrics") or {}
    if metrics:
        facts += [(bilingual("Accuracy", "准确率"), f"{metrics.get('accuracy', 0):.1%}"),
                  (bilingual("Weighted F1", "加权 F1"), f"{metrics.get('weighted_f1', 0):.3f}"),
                  (bilingual("Labelled inputs", "有标签的输入"), str(detail.get("labelled") or metrics.get("count", 0)))]  # fmt: skip
    facts += _more_metrics(metrics)
    fact_html = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in facts)
    chips = "".join(
        f'<span class="e2v-chip" data-emotion="{escape(k)}" style="--e2v-accent:{ui_text.EMOTION_COLORS.get(k, "#888")}">'
        f"{_emotion(k)} {n}</span>"
        for k, n in summary["emotions"].items()
    )
    matrix = _confusion_html(detail.get("confusion_matrix"))
    head = metrics.get("head") if isinstance(metrics.get("head"), dict) else None
    if head and isinstance(head.get("labels"), list) and isinstance(head.get("confusion"), list):
        title = bilingual(f"Head {head.get('name')}: confusion matrix", f"分类头 {head.get('name')}：混淆矩阵")
        matrix += _confusion_html({"labels": head["labels"], "matrix": head["confusion"]}, title, "history_head_confusion")
    return (
        f'<style>{_CSS}</style><div class="e2v-card e2v-batch-panel" id="history_batch_panel" data-batch="{escape(batch)}">'
        f'<div class="e2v-section">📦 {escape(batch)}</div>'
        f'<table class="e2v-facts" id="history_batch_summary">{fact_html}</table>'
        f'<div class="e2v-section">{bilingual("Top emotions", "主要情绪")}</div><div class="e2v-chips">{chips}</div>'
        f"{matrix}"
        f'<div class="e2v-conf-label">{bilingual("Its runs are listed under its row; filter by batch to page through all.", "其运行列在该行下方；按批量筛选可翻阅全部。")}</div></div>'
    )


def _more_metrics(metrics: dict) -> list[tuple[str, str]]:
    """The batch's other figures from metrics.json, when it has them: the trained head's scores (``"head"``), the
    benchmark label set's (``"label_set"``) and, with ``--min-confidence``, coverage and accuracy on the answered
    part (``"abstention"``)."""

    def pct(value) -> str:
        return f"{value:.1%}" if isinstance(value, int | float) else "—"

    facts = []
    head = metrics.get("head")
    if isinstance(head, dict):
        name = str(head.get("name") or "")
        facts += [(bilingual(f"Head {name}: accuracy / UA", f"分类头 {name}：准确率 / UA"),
                   f"{pct(head.get('accuracy'))} / {pct(head.get('ua'))}"),
                  (bilingual(f"Head {name}: macro / weighted F1", f"分类头 {name}：宏 / 加权 F1"),
                   f"{pct(head.get('macro_f1'))} / {pct(head.get('weighted_f1'))}")]  # fmt: skip
    label_set = metrics.get("label_set")
    if isinstance(label_set, dict) and isinstance(label_set.get("metrics"), dict):
        m, name = label_set["metrics"], str(label_set.get("name") or "")
        facts.append((bilingual(f"Label set {name}: UA / WA / macro F1", f"标签集 {name}：UA / WA / 宏 F1"),
                      f"{pct(m.get('ua'))} / {pct(m.get('accuracy'))} / {pct(m.get('macro_f1'))}"))  # fmt: skip
    abstention = metrics.get("abstention")
    for key, what in (("nine", bilingual("Nine classes", "九类")), ("head", bilingual("Head", "分类头"))):
        part = abstention.get(key) if isinstance(abstention, dict) else None
        if isinstance(part, dict):
            facts.append((f"{what}: {bilingual('coverage / accuracy answered', '覆盖率 / 作答准确率')}",
                          f"{pct(part.get('coverage'))} / {pct(part.get('accuracy_answered'))}"))  # fmt: skip
    return facts


def _confusion_html(confusion: dict | None, title: str = "", elem_id: str = "history_confusion") -> str:
    if not confusion or not confusion.get("labels"):
        return (f'<div class="e2v-conf-label">{bilingual("No reference labels: no accuracy or confusion matrix.", "没有参考标签：无准确率与混淆矩阵。")}</div>')  # fmt: skip
    labels = [str(label) for label in confusion["labels"]]
    head = "".join(f"<th>{escape(label)}</th>" for label in labels)
    body = "".join(
        f"<tr><th>{escape(label)}</th>{''.join(f'<td>{int(n)}</td>' for n in row)}</tr>"
        for label, row in zip(labels, confusion["matrix"], strict=False)
    )
    title = title or bilingual("Confusion matrix (rows: reference, columns: predicted)", "混淆矩阵（行：参考，列：预测）")
    return (f'<div class="e2v-section">{escape(title)}</div>'
            f'<table class="e2v-confusion" id="{elem_id}"><tr><th></th>{head}</tr>{body}</table>')  # fmt: skip


def open_run(root: str | Path, run_id: str) -> tuple[ui_handlers.RunView, str]:
    """A run as the History tab shows it: its :class:`RunView`, and for a conversation its lanes and transcript.

    The folder is marked in use while it is read, so a deletion or retention pass meanwhile leaves it.
    """
    from emotion2vec_webui.ui.conversation_tab import conversation_html
    from emotion2vec_webui.ui.timeline import file_url

    folder = run_path(root, run_id) if not RECORD_ID_RE.match(run_id or "") else None
    with in_use(folder):
        view = ui_handlers.view_run(root, run_id)
    result = view.result or {}
    if folder is None or not result.get("speakers"):
        return view, ""
    names = ("result.json", "transcript.srt", "transcript.vtt", "turns.csv", "report.html")  # report: a link button
    files = {n: file_url(folder / n) for n in names if (folder / n).is_file()}
    audio = file_url(folder / "processed_audio.wav") if (folder / "processed_audio.wav").is_file() else None
    return view, conversation_html(result, audio, None, files)


def delete(root: str | Path, kind: str, item_id: str) -> str:
    """Delete a run or a whole batch; the line that says what happened (an error card on refusal)."""
    from emotion2vec_webui.errors import E2VError

    if kind not in ("run", "batch"):
        return ui_text.error_card_html("bad_request", "Only runs and batches can be deleted here. / 此处只能删除运行或批量。")
    try:
        count = delete_item(root, item_id)
    except E2VError as exc:
        return ui_text.error_card_html(exc.code, exc.message)
    return (f'<div class="e2v-conf-label" id="history_deleted">🗑 {bilingual("Deleted", "已删除")}: '
            f"<code>{escape(item_id)}</code> ({count} {bilingual('runs', '个运行')})</div>")  # fmt: skip


def confirm_html(kind: str, item_id: str, runs: int | None = None) -> str:
    """The question before a deletion."""
    name = escape(item_id)
    zh, en = (f"批量 {name}（{runs} 个运行）", f"batch {name} ({runs} runs)") if kind == "batch" else (f"运行 {name}", f"run {name}")
    return (f'<div class="e2v-card e2v-error" id="history_confirm_text">⚠️ 删除{zh}？其文件夹将被删除，无法恢复。'
            f" / Delete {en}? Its folder is removed for good.</div>")  # fmt: skip
