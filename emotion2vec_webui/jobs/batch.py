"""Batch recognition: many inputs → one batch folder of run folders plus a summary.

``emotion2vec-webui batch INPUT`` expands INPUT (:mod:`inputs`), runs
every input through the same pipeline as ``recognize`` with the run folders
written inside the batch folder (:mod:`batch_folder`), and records one summary
row per input (:mod:`summary`). With the local engine, decoding runs ahead of the
model in a thread pool with a bounded prefetch, so the model (in the main
thread) never waits on disk or codecs; ``--engine ray`` runs the same job on
Ray Data (:mod:`ray_batch`). When inputs carry reference labels, the batch
ends with accuracy, UA, weighted and macro F1 and a confusion matrix
(:mod:`batch_scoring`): for the nine classes when the labels map to them, and
for a trained head (``--head``) when they are among the head's labels.
"""

from __future__ import annotations

import contextlib
import logging
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from emotion2vec_webui.config import Settings
from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.files import write_atomic
from emotion2vec_webui.jobs.batch_folder import open_batch
from emotion2vec_webui.jobs.batch_scoring import score_batch
from emotion2vec_webui.jobs.evaluation import Metrics
from emotion2vec_webui.jobs.inputs import BatchItem, item_source
from emotion2vec_webui.jobs.label_set_scoring import report_lines, score_batch_label_set
from emotion2vec_webui.jobs.summary import BatchSummary, error_row, item_request_id, ok_row
from emotion2vec_webui.runs.catalog.run_index import record_batch_folder
from emotion2vec_webui.runs.recognize import RecognizeOptions

log = logging.getLogger(__name__)

__all__ = ["BatchOptions", "BatchReport", "classify_group", "finish_batch", "format_report", "open_batch", "run_local"]
RowCallback = Callable[[dict], None]
# Classifies decoded inputs: [(item, DecodedAudio)] → one RunOutcome or E2VError per input.
GroupRunner = Callable[[list], list]


@dataclass(frozen=True)
class BatchOptions:
    """A batch: what each input gets (the one recognise flow's options, checked when built) and how the batch runs."""

    # granularity, embedding, segmentation, channels, audio_stream, head; speakers/num_speakers/transcribe/asr_model
    # (conversations: each run gets speakers/turns and turns.csv; the batch gets turns_summary.csv, calls.csv)
    recognize: RecognizeOptions = RecognizeOptions(extract_embedding=False)
    batch_size: int = 8  # inputs per model call (when the engine batches)
    workers: int = 2  # decoding threads (local) or model actors (ray)
    label_map: dict[str, str] = field(default_factory=dict)  # dataset label → our class, before the defaults
    label_set: str | None = None  # --label-set: also scored on a benchmark label set (label_sets.py)
    speaker_names: dict[str, str] = field(default_factory=dict)  # speaker id → name for every call (jobs/calls.py)

    # what the batch itself reads of them
    granularity = property(lambda self: self.recognize.granularity)
    extract_embedding = property(lambda self: self.recognize.extract_embedding)
    head = property(lambda self: self.recognize.head)  # a trained head (heads/<name>): each result.json's "head"
    speakers = property(lambda self: self.recognize.speakers)


@dataclass(frozen=True)
class BatchReport:
    folder: Path  # the batch folder
    rows: list[dict]  # the final summary rows, one per input
    skipped: int  # inputs already done before this session (resume)
    processed: int  # inputs handled in this session (ok or failed)
    audio_s: float  # seconds of audio classified in this session
    elapsed_s: float  # wall time of this session's processing
    metrics: Metrics | None  # when inputs carry labels
    labelled: int = 0  # inputs with a reference label
    label_mapping: dict[str, str] = field(default_factory=dict)  # dataset label → our class, where they differ
    label_counts: dict[str, int] = field(default_factory=dict)  # inputs per dataset label that was mapped
    head: str | None = None  # the trained head the batch applied (--head)
    head_labels: tuple[str, ...] = ()  # that head's label set
    head_metrics: Metrics | None = None  # the head scored, when inputs carry its labels
    head_labelled: int = 0  # inputs whose reference label is one of the head's labels
    abstention: dict = field(default_factory=dict)  # --min-confidence: "nine"/"head" coverage and accuracy answered
    label_set: dict | None = None  # --label-set: the batch on a benchmark label set (jobs/label_set_scoring.py)

    @property
    def failed(self) -> int:
        return sum(r["status"] != "ok" for r in self.rows)


def recognize_options(options: BatchOptions) -> RecognizeOptions:
    """What each input of the batch gets, as the one recognise flow's :class:`recognize.RecognizeOptions`."""
    return options.recognize


def classify_group(engine, pairs: list, settings: Settings, options: BatchOptions) -> list:
    """Classify decoded inputs and write their run folders into ``settings.output_dir``.

    Uses ``engine.recognize_batch`` when the engine has it and there is more
    than one input; if that call fails, falls back to one input at a time so
    a bad input fails alone.

    Args:
        engine: a loaded :class:`engine.EmotionEngine`.
        pairs: ``[(BatchItem, DecodedAudio)]``, or ``[(BatchItem, DecodedAudio, Recognition)]`` when each
            input's flow began with its decode (:func:`run_local`: its run.log and processing time then
            cover the decode).
        settings: settings whose ``output_dir`` is the batch folder.
        options: granularity and embedding.

    Returns:
        One :class:`pipeline.RunOutcome` or :class:`E2VError` per input, in order.
    """
    from emotion2vec_webui.runs.recognize import Recognition

    answers = None
    batched = getattr(engine, "recognize_batch", None)
    if batched is not None and len(pairs) > 1:
        try:
            # On CPU padded batches do not pay, and the engine then goes one by one (batching.py).
            max_batch = options.batch_size if str(engine.info.device).startswith("cuda") else None
            waves = [pair[1].waveform for pair in pairs]
            answers = batched(
                waves,
                options.granularity,
                options.extract_embedding or bool(options.head),  # a head reads the features
                max_batch=max_batch,
                window_s=settings.window_s,
            )
        except Exception as exc:  # one bad input must not fail its neighbours: retry one by one
            log.warning("batched call failed (%s: %s); classifying one by one", type(exc).__name__, exc)
    out = []
    for i, (item, decoded, *began) in enumerate(pairs):
        rid = item_request_id(Path(settings.output_dir).name, item.file)
        if began:
            flow = began[0]
        else:  # decoded elsewhere (Ray, tests): its own processing time is the decode it reports
            flow = Recognition(settings, recognize_options(options), request_id=rid, count_wait=False)
            flow.decode_wall_s = decoded.decode_s + decoded.resample_s
        try:
            out.append(flow.finish(decoded, engine, None if answers is None else answers[i]))
        except E2VError as exc:
            out.append(exc)
        except Exception as exc:  # recorded in the summary; the batch goes on
            log.exception("%s failed", item.file)
            out.append(E2VError("internal_error", f"{type(exc).__name__}: {exc}"))
    return out


def run_local(
    todo: list[BatchItem],
    summary: BatchSummary,
    settings: Settings,
    options: BatchOptions,
    run_group: GroupRunner,
    on_row: RowCallback | None = None,
) -> float:
    """Decode ahead in threads, classify in groups in this thread, append a row per input.

    Returns:
        Seconds of audio classified.
    """
    from emotion2vec_webui.audio.decoder_pool import DecoderPool, PoolConfig
    from emotion2vec_webui.runs.recognize import Recognition

    config = PoolConfig.from_env()
    # One decode process per --workers thread (E2V_DECODE_WORKERS=0 still means in-process, unguarded).
    decoders = DecoderPool(replace(config, workers=max(1, options.workers)) if config.workers else config)
    each = recognize_options(options)
    batch_name = Path(settings.output_dir).name

    def decode(item: BatchItem):  # in a decode worker: a file that crashes the decoder is one error row
        # The input's flow starts with its decode, so its run.log times and processing_time_s cover it;
        # the wait in the prefetch queue is not this run's work (count_wait=False).
        rid = item_request_id(batch_name, item.file)
        flow = Recognition(settings, each, request_id=rid, count_wait=False)
        return flow.decode(*item_source(item), pool=decoders), flow

    def record(row: dict) -> None:
        summary.append(row)
        if on_row:
            on_row(row)

    audio_s = 0.0

    def flush(group: list) -> None:
        nonlocal audio_s
        for (item, decoded, *_), answer in zip(group, run_group(group), strict=True):
            if isinstance(answer, E2VError):
                record(error_row(item, answer.code, answer.message))
            else:
                audio_s += decoded.duration_s
                record(ok_row(item, answer.result, answer.run.run_id))
        group.clear()

    ahead = max(2 * options.workers, 2 * options.batch_size)  # bounded: memory stays flat on huge batches
    queue_items = iter(todo)
    pending: deque = deque()
    with (
        contextlib.closing(decoders),  # closed last: after the threads that use it
        ThreadPoolExecutor(max_workers=max(1, options.workers), thread_name_prefix="e2v-decode") as pool,
    ):

        def fill() -> None:
            while len(pending) < ahead:
                item = next(queue_items, None)
                if item is None:
                    return
                pending.append((item, pool.submit(decode, item)))

        fill()
        group: list = []
        while pending:
            item, future = pending.popleft()
            fill()
            try:
                decoded, flow = future.result()
                group.append((item, decoded, flow))
            except E2VError as exc:
                record(error_row(item, exc.code, exc.message))
            except Exception as exc:  # a decoder crash is one input's problem
                record(error_row(item, "audio_undecodable", f"{Path(item.file).name}: {type(exc).__name__}: {exc}"))
            if len(group) >= max(1, options.batch_size) or (group and not pending):
                flush(group)
    return audio_s


def finish_batch(
    summary: BatchSummary,
    items: list[BatchItem],
    options: BatchOptions,
    skipped: int,
    audio_s: float,
    elapsed_s: float,
    head_labels: Sequence[str] = (),
) -> BatchReport:
    """Write the final summaries and, when inputs carry labels, the evaluation.

    ``metrics.json`` holds the nine-class scores at its top level (inputs whose label maps to a class) and the
    head's under ``"head"`` (inputs whose label is one of ``head_labels``, scored on the head's answer), each
    with its confusion matrix as CSV and PNG (``confusion_matrix.*``, ``head_confusion_matrix.*``).

    Args:
        head_labels: the label set of ``options.head`` (needed to score the head).
    """
    rows = summary.finalize(items)
    head_labels = tuple(head_labels) if options.head else ()
    scores = score_batch(summary.folder, rows, options.label_map, options.head, head_labels)
    processed = len(rows) - skipped
    label_set = score_batch_label_set(summary.folder, rows, options.label_set, options.label_map)
    report = BatchReport(
        summary.folder, rows, skipped, processed, audio_s, elapsed_s, scores.metrics, scores.labelled,
        scores.label_mapping, scores.label_counts,
        head=options.head, head_labels=head_labels, head_metrics=scores.head_metrics, head_labelled=scores.head_labelled,
        abstention=scores.abstention, label_set=label_set,
    )  # fmt: skip
    write_atomic(summary.folder / "report.txt", format_report(report) + "\n")  # what the CLI printed, kept
    if options.speakers != "none":  # conversations: names, one row per turn of every input, one row per call
        from emotion2vec_webui.jobs.calls import name_speakers, write_calls
        from emotion2vec_webui.jobs.turns_summary import write_turns_summary

        if options.speaker_names:
            name_speakers(summary.folder, rows, options.speaker_names)
        write_turns_summary(summary.folder, rows)
        write_calls(summary.folder, rows)  # calls.csv, calls.json, calls_report.html
    record_batch_folder(summary.folder)  # the catalog's batch row: summary, metrics, reference labels
    return report


def format_report(report: BatchReport) -> str:
    """The closing lines printed by the CLI and shown by the Batch tab (English / 中文)."""
    from emotion2vec_webui.jobs.inputs import LABEL_SOURCES

    ok = len(report.rows) - report.failed
    lines = [
        f"batch folder / 批量文件夹: {report.folder}",
        f"{ok} ok, {report.failed} failed, {report.skipped} done before / "
        f"成功 {ok}，失败 {report.failed}，此前已完成 {report.skipped}",
    ]
    if report.processed and report.elapsed_s > 0:
        rate = report.processed / report.elapsed_s
        rt = report.audio_s / report.elapsed_s
        lines.append(
            f"this session: {report.processed} inputs in {report.elapsed_s:.1f} s — {rate:.2f} clips/s, "
            f"{rt:.1f}× real time / 本次：{report.processed} 个输入，用时 {report.elapsed_s:.1f} 秒"
            f"（每秒 {rate:.2f} 个，{rt:.1f} 倍实时）"
        )
    if not report.labelled:
        lines.append(
            f"no labels found (looked for: {LABEL_SOURCES[0]}) — no accuracy, F1 or confusion matrix / "
            f"未找到标签（查找了：{LABEL_SOURCES[1]}），因此没有准确率、F1 与混淆矩阵"
        )
    for raw, target in report.label_mapping.items():
        n = report.label_counts.get(raw, 0)
        note = " (RAVDESS calm has no class of its own)" if raw == "calm" else ""
        note_zh = "（RAVDESS 的 calm 没有对应类别）" if raw == "calm" else ""
        lines.append(
            f"label {raw!r} counted as {target!r}{note}: {n} inputs; change with --label-map '{raw}=<class>' / "
            f"标签 {raw!r} 按 {target!r} 计分{note_zh}：{n} 个输入；可用 --label-map '{raw}=<类别>' 修改"
        )
    if report.metrics:
        m = report.metrics
        lines.append(
            f"nine classes: accuracy {m.accuracy:.4f}, UA {m.ua:.4f}, weighted F1 {m.weighted_f1:.4f}, "
            f"macro F1 {m.macro_f1:.4f} over {m.count} labelled inputs / 九类：准确率 {m.accuracy:.4f}，"
            f"UA {m.ua:.4f}，加权 F1 {m.weighted_f1:.4f}，宏 F1 {m.macro_f1:.4f}（{m.count} 个有标签的输入）"
        )
    if report.head and report.head_metrics:
        m = report.head_metrics
        lines.append(
            f"head {report.head!r}: accuracy {m.accuracy:.4f}, UA {m.ua:.4f}, weighted F1 {m.weighted_f1:.4f}, "
            f"macro F1 {m.macro_f1:.4f} over {m.count} inputs labelled with its labels / 分类头 {report.head!r}："
            f"准确率 {m.accuracy:.4f}，UA {m.ua:.4f}，加权 F1 {m.weighted_f1:.4f}，宏 F1 {m.macro_f1:.4f}"
            f"（{m.count} 个带其标签的输入）"
        )
    for key, a in report.abstention.items():  # --min-confidence
        who, who_zh = ("nine classes", "九类") if key == "nine" else (f"head {report.head!r}", f"分类头 {report.head!r}")
        on = f"{a['accuracy_answered']:.4f}" if a["accuracy_answered"] is not None else "-"
        lines.append(
            f"{who}, abstaining below the threshold: coverage {a['coverage']:.4f} ({a['answered']} of {a['n']} "
            f"answered), accuracy on the answered {on} (all: {a['accuracy_all']:.4f}) / {who_zh}（低于阈值不作答）："
            f"覆盖率 {a['coverage']:.4f}（{a['n']} 个中作答 {a['answered']} 个），作答部分准确率 {on}"
        )
    if report.head and not report.head_metrics and report.labelled:
        theirs = ", ".join(report.head_labels)
        lines.append(
            f"head {report.head!r} not scored: no input that it answered carries one of its labels ({theirs}) / "
            f"分类头 {report.head!r} 未评分：它回答的输入中没有带其标签（{theirs}）的"
        )
    return "\n".join(lines + report_lines(report.label_set))
