"""The History tab: search, filters, pages, batches as one expandable row, conversations reopened, delete.

Layout and event wiring only; what is shown comes from :mod:`ui.history` (plain functions over
the run catalog). Clicking a row opens a run (its card, timeline, downloads and log, and for a
conversation its lanes, transcript and player) or expands a batch (its summary, metrics and
confusion matrix above, its runs under its row). Deleting asks first. The tab state (filters,
the cursor of each page seen, which row is which) lives in one ``gr.State`` per browser tab.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.labels import bilingual
from emotion2vec_webui.runs.catalog import run_stats
from emotion2vec_webui.runs.catalog.run_index import catalog_for
from emotion2vec_webui.ui import handlers as ui_handlers
from emotion2vec_webui.ui import history
from emotion2vec_webui.ui import text as ui_text
from emotion2vec_webui.ui.conversation_tab import _CLICK_JS as CONVERSATION_CLICK_JS  # the same seek-on-click

log = logging.getLogger(__name__)

FILTER_KEYS = ("q", "emotion", "kind", "since", "until", "min_confidence", "batch", "speaker", "head_label")
MAIN_WIDTHS = (15, 33, 19, 11, 17)  # relative widths of the five main columns
EXTRA_WIDTH = 12  # each secondary column


def new_state(filters: dict | None = None, columns=()) -> dict:
    """A fresh tab state: first page of ``filters``, nothing expanded or selected."""
    return {"filters": dict(filters or {}), "columns": list(columns or ()), "cursors": [None], "page": 0,
            "next": None, "items": [], "expanded": None, "selected": None}  # fmt: skip


def column_widths(n_columns: int) -> list[str]:
    """Percent widths that add up to 100 for the five main columns and ``n_columns - 5`` secondary ones."""
    weights = list(MAIN_WIDTHS) + [EXTRA_WIDTH] * max(0, n_columns - len(MAIN_WIDTHS))
    total = sum(weights)
    return [f"{100 * w / total:.1f}%" for w in weights[:n_columns]]


def render(root, state: dict, note: str = "") -> tuple[dict, dict, str]:
    """The table's value, the new state and the status line for ``state``'s page (an error card on bad filters)."""
    filters = state["filters"]
    try:
        flt = history.history_filter(**filters)
        shown = history.page(root, flt, state["cursors"][state["page"]], state["expanded"], tuple(state["columns"]),
                             similarity=filters.get("kind") == "similarity")  # fmt: skip
    except E2VError as exc:
        return None, state, ui_text.error_card_html(exc.code, exc.message)
    rows, items = shown.rows, shown.items
    if not rows:
        rows = [["—", "没有匹配的运行 / no matching runs", "", "", ""] + [""] * (len(shown.headers) - 5)]
        items = [["none", ""]]
    state = {**state, "items": items, "next": shown.next_cursor}
    status = history.status_html(state["page"] + 1, shown.total, shown.indexing, note)
    return {"headers": shown.headers, "data": rows}, state, status


def build_history_tab(service, result_view: Callable, view_updates: Callable) -> None:
    """The History tab (call inside ``gr.Blocks``/``gr.Tabs``).

    Args:
        service: the server's service (its settings name the outputs root).
        result_view: ``ui.app``'s builder of the components that show one run (card, timeline, files, log).
        view_updates: ``ui.app``'s conversion of a :class:`handlers.RunView` into those components' values.
    """
    import gradio as gr

    root = service.settings.output_dir
    with gr.Tab(bilingual("History", "历史"), id="history") as tab:
        with gr.Row(equal_height=True):
            q = gr.Textbox(label=bilingual("Search file name", "搜索文件名"), placeholder="例如 / e.g. meeting, call_0042 …",
                           max_lines=1, scale=4, elem_id="history_q")  # fmt: skip
            emotion = gr.Dropdown(history.EMOTION_CHOICES, value="", label=bilingual("Emotion", "情绪"), scale=2,
                                  elem_id="history_emotion")  # fmt: skip
            kind = gr.Dropdown(history.KIND_CHOICES, value="", label=bilingual("Type", "类型"), scale=2,
                               elem_id="history_kind")  # fmt: skip
            search = gr.Button(bilingual("Search", "搜索"), variant="primary", scale=1, elem_id="history_search")
        with gr.Accordion(bilingual("More filters and columns", "更多筛选与列"), open=False, elem_id="history_more"):
            with gr.Row():
                since = gr.Textbox(label=bilingual("From (date)", "起始日期"), placeholder="2026-12-01", max_lines=1,
                                   elem_id="history_from")  # fmt: skip
                until = gr.Textbox(label=bilingual("To (date)", "截止日期"), placeholder="2026-12-31", max_lines=1,
                                   elem_id="history_to")  # fmt: skip
                min_conf = gr.Slider(0, 1, value=0, step=0.05, label=bilingual("Min. confidence", "最低置信度"),
                                     elem_id="history_min_conf")  # fmt: skip
            with gr.Row():
                batch = gr.Textbox(label=bilingual("Batch", "批量"), placeholder="例如 / e.g. batch_20261201_…", max_lines=1,
                                   elem_id="history_batch")  # fmt: skip
                speaker = gr.Textbox(label=bilingual("Speaker (id or name)", "说话人（编号或名称）"), max_lines=1,
                                     elem_id="history_speaker")  # fmt: skip
                head_label = gr.Textbox(label=bilingual("Trained head label", "分类头标签"), max_lines=1,
                                        elem_id="history_head_label")  # fmt: skip
            columns = gr.CheckboxGroup([(label, key) for key, label in history.SECONDARY_COLUMNS.items()], value=[],
                                       label=bilingual("More columns", "更多列"), elem_id="history_columns")  # fmt: skip
        status = gr.HTML(elem_id="history_status")
        table = gr.Dataframe(headers=list(history.MAIN_COLUMNS), interactive=False, wrap=True, max_height=460,
                             column_widths=column_widths(5), elem_id="history_table")  # fmt: skip
        with gr.Row():
            newer = gr.Button("◀ 较新 / Newer", size="sm", interactive=False, elem_id="history_prev")
            older = gr.Button("较旧 / Older ▶", size="sm", interactive=False, elem_id="history_next")
            refresh = gr.Button(bilingual("Refresh", "刷新"), size="sm", elem_id="history_refresh")
            delete = gr.Button(bilingual("Delete…", "删除…"), size="sm", variant="stop", interactive=False,
                               elem_id="history_delete")  # fmt: skip
        with gr.Row(visible=False, elem_id="history_confirm") as confirm_row:
            confirm_text = gr.HTML()
            yes = gr.Button("确认删除 / Delete", size="sm", variant="stop", elem_id="history_delete_yes")
            no = gr.Button("取消 / Cancel", size="sm", elem_id="history_delete_no")
        batch_panel = gr.HTML(visible=False, elem_id="history_batch")
        conversation = gr.HTML(visible=False, elem_id="history_conversation", js_on_load=CONVERSATION_CLICK_JS)
        view = result_view("history_", "history_card", ui_text.history_placeholder_html())
        state = gr.State(new_state())

    listing = [table, status, state, newer, older]

    def shown(new: dict, value, status_html: str) -> list:
        widths = column_widths(len(value["headers"])) if value else None
        table_update = gr.update(value=value, column_widths=widths) if value else gr.skip()
        return [table_update, status_html, new, gr.update(interactive=new["page"] > 0),
                gr.update(interactive=bool(new["next"]))]  # fmt: skip

    def redraw(current: dict, note: str = "") -> list:
        value, new, status_html = render(root, current, note)
        return shown(new, value, status_html)

    def on_search(*values):
        *filter_values, cols, current = values
        filters = dict(zip(FILTER_KEYS, filter_values, strict=True))
        return redraw(new_state(filters, cols or ()))

    def on_columns(cols, current):
        return redraw({**current, "columns": list(cols or ())})

    def on_newer(current):
        return redraw({**current, "page": max(0, current["page"] - 1), "expanded": None})

    def on_older(current):
        if not current["next"]:
            return redraw(current)
        cursors = current["cursors"][: current["page"] + 1] + [current["next"]]
        return redraw({**current, "cursors": cursors, "page": current["page"] + 1, "expanded": None})

    placeholder = ui_handlers.RunView(ui_text.history_placeholder_html(), None, None, (), "")

    def on_select(current, evt: gr.SelectData):
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        items = current.get("items") or []
        if not isinstance(row, int) or not 0 <= row < len(items) or items[row][0] == "none":
            return [*[gr.skip()] * 5, gr.skip(), gr.skip(), gr.skip(), *[gr.skip()] * len(view.outputs())]
        what, item = items[row]
        if what == "batch":  # expand (or fold) it: its runs under its row, its summary above
            opened = None if current["expanded"] == item else item
            new = {**current, "expanded": opened, "selected": ["batch", item]}
            panel = gr.update(value=history.batch_panel_html(root, item), visible=True) if opened else gr.update(visible=False)
            return [*redraw(new), panel, gr.update(visible=False), gr.update(interactive=True),
                    *[gr.skip()] * len(view.outputs())]  # fmt: skip
        run_view, conv_html = history.open_run(root, item)
        new = {**current, "selected": [what, item]}
        return [*[gr.skip()] * 2, new, gr.skip(), gr.skip(), gr.skip(),
                gr.update(value=conv_html, visible=bool(conv_html)), gr.update(interactive=what == "run"),
                *view_updates(run_view)]  # fmt: skip

    on_select.__annotations__["evt"] = gr.SelectData  # a real class: the module's annotations are strings

    def on_delete(current):
        selected = current.get("selected")
        if not selected:
            return gr.update(visible=False), ""
        runs = None
        if selected[0] == "batch":
            detail = run_stats.batch_detail(catalog_for(root), selected[1])
            runs = detail["summary"]["runs"] if detail else 0
        return gr.update(visible=True), history.confirm_html(selected[0], selected[1], runs)

    def on_confirm(current):
        selected = current.get("selected") or ["", ""]
        note = history.delete(root, selected[0], selected[1])
        new = {**current, "selected": None, "expanded": None}
        return [*redraw(new, note), gr.update(visible=False), gr.update(visible=False), gr.update(visible=False),
                gr.update(interactive=False), *view_updates(placeholder)]  # fmt: skip

    filters = [q, emotion, kind, since, until, min_conf, batch, speaker, head_label]
    private = {"queue": False, "api_visibility": "private"}
    for trigger in (search.click, q.submit, emotion.input, kind.input, since.submit, until.submit, min_conf.release,
                    batch.submit, speaker.submit, head_label.submit):  # fmt: skip
        trigger(on_search, [*filters, columns, state], listing, **private)
    columns.input(on_columns, [columns, state], listing, **private)
    newer.click(on_newer, state, listing, **private)
    older.click(on_older, state, listing, **private)
    refresh.click(lambda s: redraw(s), state, listing, **private)
    tab.select(lambda s: redraw(s), state, listing, **private)
    table.select(on_select, state, [*listing, batch_panel, conversation, delete, *view.outputs()],
                 api_visibility="private")  # fmt: skip
    delete.click(on_delete, state, [confirm_row, confirm_text], **private)
    no.click(lambda: gr.update(visible=False), None, confirm_row, **private)
    yes.click(on_confirm, state, [*listing, confirm_row, batch_panel, conversation, delete, *view.outputs()],
              api_visibility="private")  # fmt: skip
