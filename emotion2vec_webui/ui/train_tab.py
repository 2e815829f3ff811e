"""The Train tab: a classifier head on one's own labels, from a server folder or an uploaded ZIP / CSV.

Training runs as a job (``jobs/train_jobs.py``, shared with ``POST /api/v1/heads``):
the page shows its progress, then the report (cross-validated and held-out
scores, per-class precision/recall) and the confusion matrix. The head is saved
as ``E2V_HEADS_DIR/<name>/`` and appears in the head pickers of the Recognize
and Batch tabs (:func:`head_picker`). Its data (a folder, a CSV, an unpacked upload): ui/labelled_sets.py;
its calibration section: ui/calibration_tab.py.
"""

from __future__ import annotations

import logging
import time
from html import escape
from pathlib import Path

from emotion2vec_webui.engine.heads import check_name
from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.jobs.train_head import TrainOptions, parse_pairs
from emotion2vec_webui.jobs.train_jobs import jobs_for
from emotion2vec_webui.labels import bilingual
from emotion2vec_webui.runs.stores.head_store import delete_head, list_heads
from emotion2vec_webui.ui.calibration_tab import build_calibration_section
from emotion2vec_webui.ui.labelled_sets import labelled_data

log = logging.getLogger(__name__)

NO_HEAD = ""


def head_choices(settings) -> list[tuple[str, str]]:
    """Dropdown choices: none, then every trained head with its labels."""
    choices = [("不使用 / none (nine classes only)", NO_HEAD)]
    for h in list_heads(settings.heads_dir):
        choices.append((f"{h['name']} — {', '.join(h['labels'])}", h["name"]))
    return choices


def head_picker(service, elem_id: str):
    """A head dropdown (value ``""`` = none); call ``refresh_picker`` from a tab's ``select`` to reload it."""
    import gradio as gr

    return gr.Dropdown(
        choices=head_choices(service.settings),
        value=NO_HEAD,
        label=bilingual("Trained head (your labels)", "自训练分类头(自定义标签)"),
        info="另加一个自训练的分类头 / also apply a head trained in the Train tab",
        elem_id=elem_id,
    )


def refresh_picker(service):
    import gradio as gr

    return gr.update(choices=head_choices(service.settings))


def report_html(job) -> str:
    """The job's state, then (when done) the report's figures."""
    if job.error:
        from emotion2vec_webui.ui import text as ui_text

        return ui_text.error_card_html(job.error["code"], job.error["message"])
    r = job.report
    if not r:
        return f'<div class="e2v-card" id="train_progress">{escape(job.message)} ({job.progress:.0%})</div>'
    if r.get("kind") == "regression":
        return regression_report_html(r)
    cv, hold = r["cv"], r.get("holdout")
    rows = "".join(
        f'<tr data-label="{escape(lab)}"><td>{escape(lab)}</td><td>{c["precision"]:.3f}</td>'
        f'<td>{c["recall"]:.3f}</td><td>{c["f1"]:.3f}</td><td>{c["support"]}</td></tr>'
        for lab, c in cv["per_class"].items()
    )
    lines = [
        f"<b>{escape(r['name'])}</b>: {r['n']} 条 / clips · {', '.join(map(escape, r['labels']))} · "
        f"{escape(r['classifier'])} · {r['folds']}-fold CV{' (按说话人分组 / speaker-grouped)' if r['grouped_by_speaker'] else ''}",
        f'交叉验证 / cross-validated: <span id="train_cv_accuracy">{cv["accuracy"]:.3f}</span> accuracy (WA) · '
        f"UA {cv['ua']:.3f} · macro F1 {cv['f1_macro']:.3f} · weighted F1 {cv['f1_weighted']:.3f}",
    ]
    if hold:
        lines.append(f"留出集 / held-out ({hold['n']}): accuracy {hold['accuracy']:.3f} · macro F1 {hold['f1_macro']:.3f}")
    if r.get("baseline"):
        b = r["baseline"]
        lines.append(f"九类基线 / nine-class baseline (mapped): accuracy {b['accuracy']:.3f} · macro F1 {b['f1_macro']:.3f}")
    feats = r["features"]
    lines.append(
        f"特征 / features: {feats['extracted']} extracted, {feats['cached']} cached ({feats['seconds']:.1f} s) · "
        f"已保存 / saved as heads/{escape(r['name'])}"
    )
    return (
        f'<div class="e2v-card" id="train_done" data-head="{escape(r["name"])}">'
        + "<br>".join(lines)
        + '<table class="e2v-train-table"><tr><th>标签 / label</th><th>精确率 / precision</th>'
        "<th>召回率 / recall</th><th>F1 值 / F1</th>"
        f"<th>样本数 / n</th></tr>{rows}</table></div>"
    )


def regression_report_html(r: dict) -> str:
    """A regression head's report: CCC, Pearson's r and MAE per target (jobs/train_regression.py)."""
    cv, hold = r["cv"], r.get("holdout")
    rows = "".join(f'<tr data-label="{escape(t)}"><td>{escape(t)}</td><td>{c["ccc"]:.3f}</td><td>{c["pearson"]:.3f}'
                   f'</td><td>{c["mae"]:.4g}</td></tr>' for t, c in cv["targets"].items())  # fmt: skip
    grouped = " (按说话人分组 / speaker-grouped)" if r["grouped_by_speaker"] else ""
    lines = [
        f"<b>{escape(r['name'])}</b>: 回归 / regression · {r['n']} 条 / clips · {', '.join(map(escape, r['targets']))}"
        f" · {escape(r['classifier'])} · {r['folds']}-fold CV{grouped}",
        f'交叉验证 / cross-validated: mean CCC <span id="train_cv_ccc">{cv["ccc"]:.3f}</span> · '
        f"Pearson {cv['pearson']:.3f} · MAE {cv['mae']:.4g}",
    ]
    if hold:
        lines.append(f"留出集 / held-out ({hold['n']}): mean CCC {hold['ccc']:.3f} · MAE {hold['mae']:.4g}")
    return (
        f'<div class="e2v-card" id="train_done" data-head="{escape(r["name"])}">'
        + "<br>".join(lines)
        + '<table class="e2v-train-table"><tr><th>目标 / target</th><th>CCC</th><th>皮尔逊 / Pearson</th>'
        f"<th>平均绝对误差 / MAE</th></tr>{rows}</table></div>"
    )


HEADS_HEADERS = [
    "名称 / name",
    "标签 / labels",
    "样本数 / n",
    "交叉验证准确率 / CV accuracy",
    "交叉验证宏 F1 / CV macro F1",
    "分类器 / classifier",
    "模型 / model",
    "创建 / created",
]
NO_FIGURE = "—"  # a figure report.json does not give


def percent(value) -> str:
    """A fraction as a percentage with one decimal (``0.369048`` → ``36.9%``); ``—`` when there is none."""
    return NO_FIGURE if value is None else f"{100 * float(value):.1f}%"


def heads_table(settings) -> list[list]:
    """Every saved head (``E2V_HEADS_DIR``) as a row of :data:`HEADS_HEADERS`, figures as percentages."""
    return [
        [
            h["name"],
            ("回归 / regression: " if h.get("kind") == "regression" else "") + ", ".join(h["labels"]),
            NO_FIGURE if h.get("n") is None else h["n"],
            percent(h.get("cv_accuracy")),
            percent(h.get("cv_f1_macro")),
            h.get("classifier") or NO_FIGURE,
            h.get("model") or NO_FIGURE,
            h.get("created") or NO_FIGURE,
        ]
        for h in list_heads(settings.heads_dir)
    ]


def heads_value(settings):
    """The heads table as the Dataframe's value (headers kept when there is no head yet)."""
    import pandas as pd

    return pd.DataFrame(heads_table(settings), columns=HEADS_HEADERS)


def delete_choices(settings) -> list[str]:
    """The names Delete can act on: the listed heads."""
    return [h["name"] for h in list_heads(settings.heads_dir)]


def heads_update(settings) -> tuple:
    """The heads table and the Delete picker, both read from the heads folder now."""
    import gradio as gr

    return heads_value(settings), gr.update(choices=delete_choices(settings), value=None)


def confusion_image(settings, name: str):
    from PIL import Image

    path = Path(settings.heads_dir) / name / "confusion_matrix.png"
    with Image.open(path) as im:
        return im.copy()


def run_training(service, folder_text, upload, name, classifier, labels_zh, baseline_map, overwrite, progress=None):
    """Start a training job from the page and wait for it, reporting progress.

    Returns:
        (report HTML, confusion-matrix image or None, the heads table: :func:`heads_value`).
    """
    settings = service.settings
    name = check_name(name)
    zh_pairs, baseline_pairs = parse_pairs(labels_zh, "labels (中文)"), parse_pairs(baseline_map, "baseline map")
    # an unpacked upload is owned: the job removes it when it ends (jobs.start: also when it cannot start)
    data, owned = labelled_data(folder_text, upload, settings)
    options = TrainOptions(
        classifier=classifier or "auto",
        labels_zh=zh_pairs,
        baseline_map=baseline_pairs,
        overwrite=bool(overwrite),
        command=f"UI Train tab: data={data} name={name} classifier={classifier}",
    )
    jobs = jobs_for(service)
    job = jobs.start(str(data), name, options, cleanup=str(owned) if owned else None)
    deadline = time.monotonic() + 6 * 3600
    while job.state in ("queued", "running") and time.monotonic() < deadline:
        if progress is not None:
            progress(job.progress, desc=job.message or "…")
        time.sleep(0.25)
    image = confusion_image(settings, name) if job.state == "done" else None
    return report_html(job), image, heads_value(settings)


def build_train_tab(service) -> None:
    """The Train tab (call inside ``gr.Blocks`` / ``gr.Tabs``)."""
    import gradio as gr

    from emotion2vec_webui.ui import text as ui_text

    settings = service.settings
    with gr.Tab(bilingual("Train", "训练"), elem_id="train_tab") as tab:
        gr.Markdown(  # a short paragraph per point, each 中文 then English
            "用自己的标签训练分类头：每个标签一个文件夹(或 CSV `path,label`、RAVDESS / CREMA-D 文件名)。  \n"
            "Train a head on your own labels: a folder per label (or a CSV `path,label`, or RAVDESS / CREMA-D "
            "names).\n\n"
            "特征按文件内容与模型缓存；训练后可在“识别”和“批量”中选用。命令行："
            "`emotion2vec-webui train-head DATA --name NAME`。  \n"
            "Features are cached per file and model; the head then appears in the Recognize and Batch tabs. "
            "Command line: `emotion2vec-webui train-head DATA --name NAME`."
        )
        with gr.Row():
            with gr.Column():
                folder = gr.Textbox(
                    label=bilingual("Server folder or CSV (inside E2V_INPUT_DIRS)", "服务器文件夹或 CSV(须在 E2V_INPUT_DIRS 内)"),
                    placeholder="/data/calls_labelled" if settings.input_dirs else ui_text.INPUT_DIRS_UNSET,
                    elem_id="train_folder",
                )
                upload = gr.File(
                    label=bilingual("…or upload a ZIP (a folder per label) / CSV", "…或上传 ZIP(每个标签一个文件夹)/ CSV"),
                    file_types=[".zip", ".csv", ".tsv"],
                    type="filepath",
                    elem_id="train_upload",
                )
            with gr.Column():
                name = gr.Textbox(label=bilingual("Head name", "分类头名称"), placeholder="例如 / e.g. call_centre",
                                  elem_id="train_name")  # fmt: skip
                classifier = gr.Radio(
                    [("自动 / auto (best CV)", "auto"), ("逻辑回归 / logistic regression", "logreg"), ("MLP", "mlp")],
                    value="auto",
                    label=bilingual("Classifier", "分类器"),
                    elem_id="train_classifier",
                )
                labels_zh = gr.Textbox(
                    label=bilingual("Chinese names (optional)", "中文名称(可选)"),
                    placeholder="例如 / e.g. satisfied=满意,frustrated=沮丧",
                    elem_id="train_labels_zh",
                )
                baseline = gr.Textbox(
                    label=bilingual("Nine-class baseline mapping (optional)", "九类基线映射(可选)"),
                    placeholder="例如 / e.g. angry=frustrated,happy=satisfied",
                    elem_id="train_baseline",
                )
                overwrite = gr.Checkbox(value=False, label=bilingual("Replace a head of that name", "覆盖同名分类头"),
                                        elem_id="train_overwrite")  # fmt: skip
                start = gr.Button(bilingual("Train and save", "训练并保存"), variant="primary", elem_id="train_button")
        report = gr.HTML(elem_id="train_report")
        matrix = gr.Image(
            label=bilingual("Confusion matrix (cross-validated)", "混淆矩阵(交叉验证)"),
            type="pil",
            interactive=False,
            elem_id="train_confusion",
        )
        gr.Markdown("已保存的分类头 / Saved heads", elem_id="train_heads_title")
        # Filled when the page opens and when the tab is selected (a value read at build time would be the
        # server start's: empty on a fresh page until something was trained in it).
        table = gr.Dataframe(headers=HEADS_HEADERS, interactive=False, wrap=True, elem_id="train_heads")
        with gr.Row():
            to_delete = gr.Dropdown(
                choices=[],
                value=None,
                label=bilingual("Delete a listed head", "删除列出的分类头"),
                scale=4,
                elem_id="train_delete_name",
            )
            delete = gr.Button(bilingual("Delete", "删除"), variant="stop", scale=1, elem_id="train_delete")

        # The parameter names are the /train_head endpoint's (gradio_client's view_api shows them).
        def on_train(server_folder, upload, head_name, classifier, labels_zh, baseline_map, overwrite,
                     progress=gr.Progress()):  # fmt: skip
            try:
                return run_training(service, server_folder, upload, head_name, classifier, labels_zh, baseline_map,
                                    overwrite, progress)  # fmt: skip
            except E2VError as exc:
                return ui_text.error_card_html(exc.code, exc.message), None, heads_value(settings)
            except Exception:  # the page shows a message, the log keeps the trace
                log.exception("UI training failed")
                failed = ui_text.error_card_html("internal_error", "Training failed; see the server log. / 训练失败，详情见服务器日志。")
                return failed, None, heads_value(settings)

        trained = start.click(
            on_train,
            [folder, upload, name, classifier, labels_zh, baseline, overwrite],
            [report, matrix, table],
            api_name="train_head",
            api_description="Train a head on a labelled folder, CSV or ZIP: report, confusion matrix, heads table.",
            concurrency_limit=1,
        )

        def on_delete(name_v):
            if not name_v:
                error = E2VError("bad_request", "Pick a listed head to delete. / 请先选择要删除的分类头。")
                return ui_text.error_card_html(error.code, error.message), *heads_update(settings)
            try:
                delete_head(settings.heads_dir, name_v)
                return "", *heads_update(settings)
            except E2VError as exc:
                return ui_text.error_card_html(exc.code, exc.message), *heads_update(settings)

        delete.click(on_delete, to_delete, [report, table, to_delete], api_visibility="private")
        refresh = {"fn": lambda: heads_update(settings), "inputs": None, "outputs": [table, to_delete],
                   "queue": False, "api_visibility": "private"}  # fmt: skip
        trained.then(**refresh)  # the new head joins the Delete picker too
        tab.select(**refresh)
        _on_page_load(refresh)
        build_calibration_section(service, tab, _on_page_load)  # calibrated confidence


def _on_page_load(event: dict) -> None:
    """Run ``event`` whenever a page opens (the enclosing ``gr.Blocks``' load event), so lists are current."""
    from gradio.context import Context

    root = Context.root_block
    if root is not None:
        root.load(**event)
