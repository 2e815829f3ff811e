"""The Batch tab: many uploads or a server-side folder → run folders, a summary table, CSV and ZIP downloads.

It runs the same batch as the ``batch`` command — one orchestration,
:func:`batch_job.prepare_batch` then :meth:`~batch_job.PreparedBatch.run`:
the same checks before any work (head, labels, the output folder, stale
temporary folders swept), decoding ahead in guarded workers, one summary row
per input — but every model call goes through the service's bounded queue,
so a batch takes turns with other users instead of holding the model. A
server-side folder must lie inside ``E2V_INPUT_DIRS`` (resolved, so a symlink
cannot lead out); with the variable unset, only uploads are accepted. Large jobs belong to the CLI
(``batch``) or Ray (``--engine ray``): the tab caps a job at
:data:`UI_MAX_FILES` inputs.
"""

from __future__ import annotations

import logging
import os
import time
import zipfile
from html import escape
from pathlib import Path

from emotion2vec_webui.errors import E2VError, OverloadedError
from emotion2vec_webui.jobs.batch import BatchOptions, format_report
from emotion2vec_webui.jobs.batch_job import prepare_batch
from emotion2vec_webui.jobs.batch_scoring import HEAD_MATRIX, head_label_of, nine_class_of
from emotion2vec_webui.jobs.inputs import BatchItem, discover_inputs, is_audio_path, label_from_filename
from emotion2vec_webui.labels import EMOJI, EMOTIONS_ZH, bilingual
from emotion2vec_webui.runs.inputs.input_files import resolve_input_folder
from emotion2vec_webui.runs.recognize import RecognizeOptions
from emotion2vec_webui.ui.option_controls import speaker_count
from emotion2vec_webui.ui.text import INPUT_DIRS_UNSET

log = logging.getLogger(__name__)

UI_MAX_FILES = 5000  # beyond this, use the CLI or Ray
TABLE_HEADERS = [
    "文件 / file",
    "状态 / status",
    "情绪 / emotion",
    "置信度 / confidence",
    "时长 / duration (s)",
    "错误 / error",
    "运行文件夹 / run folder",
]
LABEL_HEADERS = ["真实标签 / true label", "正确 / correct"]  # added when any input carries a label
HEAD_HEADER = "分类头 / head"  # added when a head answered: its label and confidence
HEAD_CORRECT_HEADER = "分类头正确 / head correct"  # added when inputs carry the head's labels
_RETRY_S = 0.5  # wait before retrying a model call the full queue refused


def server_folder(text: str, input_dirs) -> Path:
    """A server-side folder the batch may read, by the one input-folder policy of ``runs/inputs/input_files.py``.

    Raises:
        E2VError: ``forbidden`` when outside (or none configured), ``bad_request`` when not a folder.
    """
    return resolve_input_folder(text, input_dirs)


def collect_items(files: list | None, folder_text: str, input_dirs) -> list[BatchItem]:
    """Batch items from uploaded files, or from a permitted server folder (recursive).

    Raises:
        E2VError: ``bad_request`` when there is nothing to do or too much, ``forbidden`` for other folders.
    """
    if folder_text and folder_text.strip():
        folder = server_folder(folder_text, input_dirs)
        roots = [Path(d).expanduser().resolve() for d in input_dirs]
        items = [
            it
            for it in discover_inputs(folder)
            if any(Path(it.file).resolve().is_relative_to(r) for r in roots)  # no symlinks out of the roots
        ]
    else:
        paths = [str(getattr(f, "name", f)) for f in files or []]
        # Gradio keeps an upload's original name as the temp file's name: the summary shows that, not the path.
        items = [BatchItem(p, label_from_filename(p), Path(p).name) for p in paths if is_audio_path(p)]
    if not items:
        raise E2VError("bad_request", "No audio files: upload some, or give a server folder inside E2V_INPUT_DIRS. "
                       "/ 没有音频文件：请上传，或填写 E2V_INPUT_DIRS 内的服务器文件夹。")  # fmt: skip
    if len(items) > UI_MAX_FILES:
        raise E2VError(
            "bad_request",
            f"{len(items)} files is more than the page handles ({UI_MAX_FILES}); use `emotion2vec-webui batch`. "
            f"/ {len(items)} 个文件超过页面上限（{UI_MAX_FILES}）；请使用 `emotion2vec-webui batch`。",
        )
    return items


def _queued(service):
    """``execute(fn)`` through the service's queue: a full queue (other users' requests) means wait a turn."""

    def execute(fn):  # behind interactive work (background priority), this batch its own share
        while True:
            try:
                return service.call(fn, priority="background", client=f"batch:{id(execute):x}")
            except OverloadedError:  # the queue is full of other users' requests: take a turn later
                time.sleep(_RETRY_S)

    return execute


def zip_batch(folder: Path) -> Path:
    """Zip the whole batch folder (summaries, evaluation, run folders) into ``<folder>/batch.zip``."""
    target = folder / f"{folder.name}.zip"
    tmp = folder / f".{target.name}.tmp"
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            rel = path.relative_to(folder)
            if path.is_file() and not any(part.startswith(".") for part in rel.parts) and path != target:
                zf.write(path, Path(folder.name) / rel)
    os.replace(tmp, target)
    return target


def table_value(rows: list[dict], label_map: dict[str, str] | None = None, head_labels=()):
    """Summary rows as the page's table (a DataFrame): file name, status, emotion with emoji and Chinese name …

    When any input carries a reference label, each row also gets the true label (as our class, with the
    dataset's spelling when it differs) and whether the nine-class answer is correct (:data:`LABEL_HEADERS`);
    when a head answered, its label and confidence (:data:`HEAD_HEADER`), and when inputs carry the head's
    labels, whether the head is correct (:data:`HEAD_CORRECT_HEADER`).
    """
    import pandas as pd

    labelled = any(r.get("label") for r in rows)
    with_head = any(r.get("head_label") for r in rows)
    head_scored = with_head and any(head_label_of(r.get("label"), head_labels, label_map) for r in rows)
    headers = TABLE_HEADERS + (LABEL_HEADERS if labelled else [])
    headers += ([HEAD_HEADER] if with_head else []) + ([HEAD_CORRECT_HEADER] if head_scored else [])
    out = []
    for r in rows:
        emotion = f"{EMOJI[r['emotion']]} {EMOTIONS_ZH[r['emotion']]} / {r['emotion']}" if r.get("emotion") else ""
        if r.get("uncertain"):  # --min-confidence: abstained, the top emotion kept beside
            emotion = f"不确定 / uncertain ({emotion})"
        error = f"{r['error_message']} [{r['error_code']}]" if r.get("error_code") else ""
        conf = f"{r['confidence']:.3f}" if r.get("confidence") is not None else ""
        dur = f"{r['duration_s']:.2f}" if r.get("duration_s") is not None else ""
        row = [Path(r["file"]).name, r["status"], emotion, conf, dur, error, r.get("run_folder") or ""]
        ok = r["status"] == "ok"
        if labelled:
            raw = r.get("label") or ""
            truth = nine_class_of(raw, label_map)
            shown = raw if not truth else truth if truth == raw.strip().lower() else f"{truth} ({raw})"
            row += [shown, "" if not truth or not ok else ("✓" if truth == r.get("emotion") else "✗")]
        if with_head:
            answer = r.get("head_label")
            row.append(f"{answer} ({r['head_confidence']:.3f})" if answer else "")
        if head_scored:
            theirs = head_label_of(r.get("label"), head_labels, label_map)
            answer = r.get("head_label")
            row.append("" if not theirs or not ok or not answer else ("✓" if theirs == answer else "✗"))
        out.append(row)
    return pd.DataFrame(out, columns=headers)


def run_ui_batch(service, files, folder_text, granularity, embedding, progress=None, head=None, *,
                 segmentation=None, channels=None, audio_stream=None, speakers=None, num_speakers=None,
                 transcribe=False, asr_model=None, calibration=None, min_confidence=None,
                 label_set=None) -> tuple:  # fmt: skip
    """Run a batch from the page.

    Args:
        service: the server's :class:`service.Service`.
        files: uploaded file paths (Gradio ``File`` values).
        folder_text: a server folder (used instead of the uploads when given).
        granularity: ``utterance`` or ``frame``.
        embedding: write embedding.npy files.
        progress: a ``gr.Progress`` (or any ``callable((done, total), desc=…)``).
        head: a trained head's name (E2V_HEADS_DIR) applied to every input too; empty: none.
        segmentation, channels, audio_stream, speakers, num_speakers, transcribe, asr_model, calibration,
            min_confidence: as REST takes them (options.py; empty: the default), checked by RecognizeOptions before
            any input is read.
        label_set: ``batch --label-set``: also score on that benchmark label set (label_sets.py; empty: none),
            checked (bad_request) before any work; its lines are in the report, its matrix in the ZIP.

    Returns:
        (report HTML, the table (:func:`table_value`), summary.csv path, ZIP path, the nine-class
        confusion-matrix PNG path or None, the head's confusion-matrix PNG path or None).

    Raises:
        E2VError: nothing to do, a refused folder, or the model not ready.
    """
    settings = service.settings
    _ = service.engine  # model_unavailable before any work
    options = BatchOptions(  # the options checked (bad_request) before any input is read
        RecognizeOptions(granularity=granularity, extract_embedding=bool(embedding), head=head or None,
                         segmentation=segmentation, channels=channels, audio_stream=audio_stream, speakers=speakers,
                         num_speakers=speaker_count(num_speakers), transcribe=bool(transcribe),
                         asr_model=asr_model or None, calibration=calibration or None, min_confidence=min_confidence),
        batch_size=4, workers=2, label_set=label_set or None,
    )  # fmt: skip
    items = collect_items(files, folder_text, settings.input_dirs)
    from_folder = bool(folder_text and folder_text.strip())
    source = str(server_folder(folder_text, settings.input_dirs)) if from_folder else "(uploads)"
    # The same checks and steps as the `batch` command (jobs/batch_job.py); model calls take turns in the queue.
    batch = prepare_batch(
        items, settings, options, source, execute=_queued(service), manifest_extra={"ui": True}
    )  # not_found / head_invalid / head_mismatch, the output folder: before any work
    summary, total = batch.summary, len(batch.items)
    done = 0

    def on_row(_row: dict) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress((done, total), desc=f"批量 / batch {done}/{total}", unit="文件 / files")

    if progress is not None:
        progress((0, total), desc=f"批量 / batch 0/{total}", unit="文件 / files")
    report = batch.run(on_row)
    archive = zip_batch(summary.folder)
    text = format_report(report).replace(str(summary.folder), summary.folder.name)
    html = f'<pre class="e2v-card" id="batch_summary_text">{escape(text)}</pre>'
    matrix = summary.folder / "confusion_matrix.png"
    head_matrix = summary.folder / f"{HEAD_MATRIX}.png"
    return (
        html,
        table_value(report.rows, options.label_map, batch.head_labels),
        str(summary.csv),
        str(archive),
        str(matrix) if report.metrics else None,
        str(head_matrix) if report.head_metrics else None,
    )


def build_batch_tab(service) -> None:
    """The Batch tab (call inside ``gr.Blocks`` / ``gr.Tabs``)."""
    import gradio as gr

    from emotion2vec_webui.ui import option_controls as controls
    from emotion2vec_webui.ui import text as ui_text
    from emotion2vec_webui.ui.calibration_tab import calibration_picker, min_confidence_box
    from emotion2vec_webui.ui.train_tab import head_picker, refresh_picker

    with gr.Tab(bilingual("Batch", "批量"), elem_id="batch_tab") as tab:
        gr.Markdown(  # a short paragraph per point, each 中文 then English
            "一次分析多个文件：上传，或填写服务器上 `E2V_INPUT_DIRS` 之内的文件夹；每个文件一个运行文件夹，"
            "外加汇总表（CSV / ZIP）。  \n"
            "Analyse many files: upload them, or name a server folder inside `E2V_INPUT_DIRS`; one run folder "
            "per file plus a summary (CSV / ZIP).\n\n"
            "文件名符合 RAVDESS / CREMA-D 规则时给出准确率与混淆矩阵；上千个文件请用 `emotion2vec-webui batch`"
            "（或 `--engine ray`）。  \n"
            "RAVDESS / CREMA-D file names also give accuracy and a confusion matrix; for thousands of files use "
            "`emotion2vec-webui batch` (or `--engine ray`).\n\n"
            "选了分类头、且文件夹按其标签命名时，也给出分类头的准确率、UA、F1 与混淆矩阵。  \n"
            "With a head picked and folders named after its labels: the head's accuracy, UA, F1 and confusion matrix."
        )
        with gr.Row():
            files = gr.File(
                file_count="multiple",
                type="filepath",
                label=bilingual("Audio files", "音频文件"),
                elem_id="batch_files",
            )
            with gr.Column():
                folder = gr.Textbox(
                    label=bilingual("Server folder (inside E2V_INPUT_DIRS)", "服务器文件夹（须在 E2V_INPUT_DIRS 内）"),
                    placeholder="/data/calls" if service.settings.input_dirs else INPUT_DIRS_UNSET,
                    elem_id="batch_folder",
                )
                granularity = controls.granularity_radio("batch_granularity")
                embedding = gr.Checkbox(
                    value=False, label=bilingual("Save embeddings", "保存嵌入向量"), elem_id="batch_embedding"
                )
                head = head_picker(service, "batch_head_pick")
                label_set = controls.label_set_dropdown("batch_label_set")  # batch --label-set (docs/batch.md)
                with gr.Accordion(bilingual("More options (as the REST API)", "更多选项（与 REST API 相同）"),
                                  open=False, elem_id="batch_more"):  # fmt: skip
                    segmentation = controls.segmentation_radio("batch_segmentation")
                    channels = controls.channels_dropdown("batch_channels")
                    audio_stream = controls.audio_stream_number("batch_audio_stream")
                    speakers = controls.speakers_radio("batch_speakers")
                    num_speakers = controls.num_speakers_number("batch_num_speakers")
                    transcribe = gr.Checkbox(value=False, label=bilingual("Transcript (ASR)", "转写（语音识别）"),
                                             elem_id="batch_transcribe")  # fmt: skip
                    asr_model = controls.asr_model_dropdown("batch_asr_model", service.settings.asr_model)
                    calibration = calibration_picker(service, "batch_calibration_pick")  # docs/calibration.md
                    min_confidence = min_confidence_box("batch_min_confidence")
                more = [segmentation, channels, audio_stream, speakers, num_speakers, transcribe, asr_model, calibration,
                        min_confidence]  # fmt: skip
                start = gr.Button(bilingual("Run batch", "开始批量"), variant="primary", elem_id="batch_button")
        report = gr.HTML(elem_id="batch_report")
        table = gr.Dataframe(headers=TABLE_HEADERS, interactive=False, wrap=True, elem_id="batch_table", max_height=420)
        with gr.Row():
            csv_file = gr.File(label=bilingual("summary.csv", "汇总 CSV"), elem_id="batch_csv")
            zip_file = gr.File(label=bilingual("Everything (ZIP)", "全部（ZIP）"), elem_id="batch_zip")
        matrix = gr.Image(
            label=bilingual("Confusion matrix (labelled inputs)", "混淆矩阵（有标签的输入）"),
            type="filepath",
            interactive=False,
            elem_id="batch_confusion",
        )
        head_matrix = gr.Image(
            label=bilingual("Head's confusion matrix (inputs with its labels)", "分类头的混淆矩阵（带其标签的输入）"),
            type="filepath",
            interactive=False,
            elem_id="batch_head_confusion",
        )

        # The parameter names are the /batch endpoint's (gradio_client's view_api shows them).
        def run(audio_files, server_folder, granularity, save_embeddings, head, segmentation, channels, audio_stream,
                speakers, num_speakers, transcribe, asr_model, calibration=None, min_confidence=None,
                label_set=None, progress=gr.Progress()):  # fmt: skip
            try:
                return run_ui_batch(service, audio_files, server_folder, granularity, save_embeddings, progress, head,
                                    segmentation=segmentation, channels=channels, audio_stream=audio_stream,
                                    speakers=speakers, num_speakers=num_speakers, transcribe=transcribe,
                                    asr_model=asr_model, calibration=calibration, min_confidence=min_confidence,
                                    label_set=label_set)  # fmt: skip
            except E2VError as exc:
                return ui_text.error_card_html(exc.code, exc.message), [], None, None, None, None
            except Exception:  # the page shows a message, the log keeps the trace
                log.exception("UI batch failed")
                failed = ui_text.error_card_html("internal_error", "The batch failed; see the server log. / 批量处理失败，详情见服务器日志。")
                return failed, [], None, None, None, None

        start.click(
            run,
            inputs=[files, folder, granularity, embedding, head, *more, label_set],  # label_set last: positions kept
            outputs=[report, table, csv_file, zip_file, matrix, head_matrix],
            api_name="batch",
            api_description="Run a batch over uploaded files or a server folder: report, table, summary.csv, ZIP, "
            "confusion matrices (nine classes, head).",
            concurrency_limit=1,
        )
        tab.select(lambda: refresh_picker(service), None, head, queue=False, api_visibility="private")
