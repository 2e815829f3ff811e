"""Calibrated confidence in the web UI: the Train tab's "Calibrate confidence" section, and the pickers.

The section fits a calibration (``jobs/calibrate.py``, what ``emotion2vec-webui calibrate`` runs) on a labelled
server folder or an uploaded ZIP / CSV, for the nine classes or a trained head, and shows the held-out ECE,
Brier score and NLL before and after with the reliability diagram; saved calibrations are listed below it.
The Recognize tab takes a calibration (:func:`calibration_picker`) and an abstention threshold
(:func:`min_confidence_box`). Feature extraction queues on the inference worker at background priority, as
training does.
"""

from __future__ import annotations

import logging
from html import escape

from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.labels import bilingual
from emotion2vec_webui.options import MIN_CONFIDENCE, check_calibration_name
from emotion2vec_webui.runs.stores.calibration_store import DIAGRAM, calibration_dir, list_calibrations

log = logging.getLogger(__name__)

NONE = ""
TABLE_HEADERS = ["名称 / name", "校准对象 / target", "温度 / temperature", "类别偏置 / bias", "ECE 前 / before",
                 "ECE 后 / after", "样本数 / n", "创建时间 / created"]  # fmt: skip


def calibration_choices(settings) -> list[tuple[str, str]]:
    """Dropdown choices: none, then every saved calibration with what it calibrates."""
    choices = [("不校准 / none (raw softmax)", NONE)]
    for c in list_calibrations(settings.heads_dir):
        target = "九类 / nine classes" if c["target"] == "nine" else f"分类头 / head {c['target']}"
        choices.append((f"{c['name']} — {target}", c["name"]))
    return choices


def calibration_picker(service, elem_id: str):
    """A calibration dropdown (value ``""`` = none); :func:`refresh_calibrations` reloads it."""
    import gradio as gr

    return gr.Dropdown(
        choices=calibration_choices(service.settings),
        value=NONE,
        label=bilingual("Calibration", "置信度校准"),
        info="用“训练”页拟合的校准换算置信度 / calibrated confidence (fitted in the Train tab)",
        elem_id=elem_id,
    )


def refresh_calibrations(service):
    import gradio as gr

    return gr.update(choices=calibration_choices(service.settings))


def min_confidence_box(elem_id: str):
    """The abstention threshold: empty = none; below it the answer is 'uncertain / 不确定'."""
    import gradio as gr

    return gr.Number(
        value=None,
        minimum=MIN_CONFIDENCE[0],
        maximum=MIN_CONFIDENCE[1],
        step=0.05,
        label=bilingual("Abstain below confidence (0-1, optional)", "置信度低于此值时不作答(0-1,可选)"),
        info="低于阈值的结果标为“不确定”,仍显示最可能的情感 / below it the answer is 'uncertain', the top emotion kept",
        elem_id=elem_id,
    )


def calibrations_table(settings) -> list[list]:
    """The saved calibrations as table rows."""
    rows = []
    for c in list_calibrations(settings.heads_dir):
        fmt = lambda v: "—" if v is None else f"{v:.4f}"  # noqa: E731
        rows.append([c["name"], c["target"], f"{c['temperature']:.3f}", "✓" if c["bias"] else "—",
                     fmt(c["ece_before"]), fmt(c["ece_after"]), c["n"] if c["n"] is not None else "—",
                     c["created"] or "—"])  # fmt: skip
    return rows


def report_html(report: dict) -> str:
    """Before and after on held-out folds, the fitted temperature, where it was saved."""
    rows = "".join(
        f"<tr><td>{label}</td>"
        + "".join(f'<td class="e2v-num">{report[when][k]:.4f}</td>' for k in ("ece", "brier", "nll", "accuracy"))
        + "</tr>"
        for when, label in (("before", "校准前 / before"), ("after", "校准后 / after"))
    )
    target = "九类 / nine classes" if report["target"] == "nine" else f"分类头 / head {escape(report['target'])}"
    folds = f"{report['folds']} " + ("按说话人分组的折 / speaker-grouped folds" if report["grouped_by_speaker"]
                                     else "分层折 / stratified folds")  # fmt: skip
    bias = " · 保留类别偏置 / per-class bias kept" if report["with_bias"] else ""
    return (
        f'<div class="e2v-card" id="calibration_result"><div class="e2v-section">{escape(report["name"])} — {target}'
        f" · {report['n']} · {folds}</div>"
        '<table class="e2v-table"><tr><th></th><th>ECE</th><th>Brier</th><th>NLL</th><th>准确率 / accuracy</th></tr>'
        f"{rows}</table><div>温度 / temperature T = {report['temperature']:.4f}{bias}</div></div>"
    )


def run_calibration(service, folder_text, upload, name, head, overwrite, progress=None):
    """Fit and save a calibration from the page (an upload is unpacked for it and removed after).

    Returns:
        (report HTML, the reliability diagram's path, the calibrations table).
    """
    from emotion2vec_webui.jobs.calibrate import CalibrateOptions, calibrate
    from emotion2vec_webui.jobs.head_features import Backbone
    from emotion2vec_webui.ui.labelled_sets import labelled_data

    settings = service.settings
    name = check_calibration_name(name, required=True)
    data, owned = labelled_data(folder_text, upload, settings)
    try:
        backbone = Backbone.of_engine(service.engine)
        options = CalibrateOptions(head=head or None, overwrite=bool(overwrite),
                                   command=f"UI Train tab: calibrate data={data} name={name} head={head or ''}")  # fmt: skip
        report = (lambda f, m: progress(f, desc=m)) if progress is not None else None
        with service.job_engine("background", f"calibrate:{name}") as queued:
            outcome = calibrate(str(data), name, backbone, lambda fn: fn(queued), settings, options, report)
    finally:
        if owned is not None:
            import shutil

            shutil.rmtree(owned, ignore_errors=True)
    diagram = calibration_dir(settings.heads_dir, name) / DIAGRAM
    return report_html(outcome.report), str(diagram), calibrations_table(settings)


def build_calibration_section(service, tab, on_page_load) -> None:
    """The Train tab's "Calibrate confidence" section (call inside ``tab``).

    Args:
        service: the server's service.
        tab: the Train tab (its ``select`` refreshes the list and the head picker).
        on_page_load: registers an event to run whenever a page opens.
    """
    import gradio as gr

    from emotion2vec_webui.ui import text as ui_text

    settings = service.settings
    gr.Markdown(
        "### 校准置信度 / Calibrate confidence\n"
        "在带标签的数据上拟合温度缩放(按说话人分组留出),报告校准前后的 ECE、Brier 分数与 NLL。  \n"
        "Fit temperature scaling on a labelled set (held out by speaker), with ECE, Brier score and NLL before "
        "and after. Command line: `emotion2vec-webui calibrate DATA --name NAME [--head HEAD]`.",
        elem_id="calibrate_title",
    )
    with gr.Row():
        with gr.Column():
            folder = gr.Textbox(label=bilingual("Server folder or CSV (inside E2V_INPUT_DIRS)",
                                                "服务器文件夹或 CSV(须在 E2V_INPUT_DIRS 内)"), elem_id="calibrate_folder")  # fmt: skip
            upload = gr.File(label=bilingual("…or upload a ZIP / CSV", "…或上传 ZIP / CSV"),
                             file_types=[".zip", ".csv", ".tsv"], type="filepath", elem_id="calibrate_upload")  # fmt: skip
        with gr.Column():
            name = gr.Textbox(label=bilingual("Calibration name", "校准名称"), elem_id="calibrate_name")
            head = gr.Dropdown(choices=target_choices(settings), value=NONE, label=bilingual("Calibrate", "校准对象"),
                               elem_id="calibrate_head")  # fmt: skip
            overwrite = gr.Checkbox(value=False, label=bilingual("Replace one of that name", "覆盖同名校准"),
                                    elem_id="calibrate_overwrite")  # fmt: skip
            start = gr.Button(
                bilingual("Calibrate and save", "校准并保存"), variant="primary", elem_id="calibrate_button"
            )
    report = gr.HTML(elem_id="calibrate_report")
    diagram = gr.Image(label=bilingual("Reliability diagram (held out)", "可靠性图(留出)"), type="filepath",
                       interactive=False, elem_id="calibrate_diagram")  # fmt: skip
    table = gr.Dataframe(headers=TABLE_HEADERS, value=calibrations_table(settings), interactive=False, wrap=True,
                         elem_id="calibrations_table")  # fmt: skip

    def on_calibrate(server_folder, upload_file, calibration_name, head_name, replace, progress=gr.Progress()):
        try:
            return run_calibration(service, server_folder, upload_file, calibration_name, head_name, replace,
                                   progress)  # fmt: skip
        except E2VError as exc:
            return ui_text.error_card_html(exc.code, exc.message), None, calibrations_table(settings)
        except Exception:  # the page shows a message, the log keeps the trace
            log.exception("UI calibration failed")
            failed = ui_text.error_card_html("internal_error", "Calibration failed; see the server log. / "
                                                               "校准失败,详情见服务器日志。")  # fmt: skip
            return failed, None, calibrations_table(settings)

    start.click(on_calibrate, [folder, upload, name, head, overwrite], [report, diagram, table],
                api_name="calibrate", concurrency_limit=1,
                api_description="Fit a calibration on a labelled folder, CSV or ZIP: report, diagram, table.")  # fmt: skip
    # Current lists whenever the page opens or the tab is selected (not the server start's).
    refresh = {"fn": lambda: (calibrations_table(settings), gr.update(choices=target_choices(settings))),
               "inputs": None, "outputs": [table, head], "queue": False, "api_visibility": "private"}  # fmt: skip
    tab.select(**refresh)
    on_page_load(refresh)


def target_choices(settings) -> list[tuple[str, str]]:
    """What a calibration can be fitted for: the nine classes, or a trained (classification) head."""
    from emotion2vec_webui.runs.stores.head_store import list_heads

    heads = [(f"分类头 / head {h['name']}", h["name"]) for h in list_heads(settings.heads_dir)
             if h.get("kind", "classification") == "classification"]  # fmt: skip
    return [("九类情感 / the nine classes", NONE), *heads]
