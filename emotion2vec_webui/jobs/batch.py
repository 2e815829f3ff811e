"""Batch recognition: many inputs → one batch folder of run folders plus a summary.

``emotion2vec-webui batch INPUT`` expands INPUT (:mod:`batch_inputs`), runs
every input through the same pipeline as ``recognize`` with the run folders
written inside the batch folder, and records one summary row per input
(:mod:`batch_summary`). With the local engine, decoding runs ahead of the
model in a thread pool with a bounded prefetch, so the model (in the main
thread) never waits on disk or codecs; ``--engine ray`` runs the same job on
Ray Data (:mod:`batch_ray`). When inputs carry reference labels, the batch
ends with accuracy, UA, weighted and macro F1 and a confusion matrix
(:mod:`evaluation`): for the nine classes when the labels map to them, and
for a trained head (``--head``) when they are among the head's labels.
``batch.json`` records what the batch was started with, and ``--resume``
refuses another model, precision, granularity or head (:func:`check_resume`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from emotion2vec_webui.config import Settings
from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.files import write_atomic
from emotion2vec_webui.jobs.inputs import BatchItem, item_source
from emotion2vec_webui.jobs.summary import BatchSummary, error_row, item_request_id, ok_row, row_key
from emotion2vec_webui.labels import EMOTIONS
from emotion2vec_webui.runs.catalog import BATCH_MANIFEST
from emotion2vec_webui.runs.evaluation import Metrics, evaluate, map_label, write_confusion
from emotion2vec_webui.runs.run_index import record_batch_folder

log = logging.getLogger(__name__)

MANIFEST = BATCH_MANIFEST  # what makes a folder a batch (runs/catalog.py lists its runs)
RowCallback = Callable[[dict], None]
# Classifies decoded inputs: [(item, DecodedAudio)] → one RunOutcome or E2VError per input.
GroupRunner = Callable[[list], list]
HEAD_MATRIX = "head_confusion_matrix"  # the head's confusion matrix: <stem>.csv and <stem>.png
# What a batch must be resumed with, as batch.json stores it, and the flag that sets each.
RESUME_KEYS = {"model": "--model", "precision": "--precision", "granularity": "--granularity", "head": "--head"}


@dataclass(frozen=True)
class BatchOptions:
    granularity: str = "utterance"  # "utterance" or "frame"
    extract_embedding: bool = False  # write embedding.npy in each run folder
    batch_size: int = 8  # inputs per model call (when the engine batches)
    workers: int = 2  # decoding threads (local) or model actors (ray)
    label_map: dict[str, str] = field(default_factory=dict)  # dataset label → our class, before the defaults
    head: str | None = None  # a trained head (heads/<name>): each result.json gets its "head" block
    channels: str = "mix"  # mix | left | right | a channel index from 0
    audio_stream: int | None = None  # which audio stream of a video (0 = the first)
    # conversations (issue 20): each run gets speakers/turns and turns.csv; the batch gets turns_summary.csv
    speakers: str = "none"  # none | channels | auto
    num_speakers: int | None = None  # auto: the number of speakers, when known
    transcribe: bool = False  # each turn's text (ASR)
    asr_model: str | None = None  # ASR model (None: E2V_ASR_MODEL)


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

    @property
    def failed(self) -> int:
        return sum(r["status"] != "ok" for r in self.rows)


def new_batch_dir(root: Path) -> Path:
    """A fresh ``batch_YYYYMMDD_HHMMSS[_N]`` folder under the outputs root (not created)."""
    base = time.strftime("batch_%Y%m%d_%H%M%S")
    for n in range(10_000):
        path = root / (base if n == 0 else f"{base}_{n}")
        if not path.exists():
            return path
    raise RuntimeError(f"no free batch folder name under {root}")


def latest_batch_dir(root: Path, input_spec: str) -> Path | None:
    """The newest batch folder under ``root`` that was started on the same INPUT, if any."""
    candidates = sorted((p for p in root.glob("batch_*") if (p / MANIFEST).is_file()), reverse=True)
    for path in candidates:
        try:
            if json.loads((path / MANIFEST).read_text("utf-8")).get("input") == input_spec:
                return path
        except (OSError, ValueError):
            continue
    return None


def nine_class_of(label: str | None, label_map: dict[str, str] | None = None) -> str | None:
    """A reference label as one of the nine classes (through ``--label-map`` and the defaults), or None."""
    target = map_label(label, label_map) if label else None
    return target if target in EMOTIONS else None


def head_label_of(label: str | None, head_labels: Sequence[str], label_map: dict[str, str] | None = None) -> str | None:
    """A reference label as one of a head's labels — as spelled, case ignored, or through ``--label-map`` — or None."""
    if not label or not head_labels:
        return None
    key = label.strip()
    if key in head_labels:
        return key
    folded = {h.casefold(): h for h in head_labels}
    if key.casefold() in folded:
        return folded[key.casefold()]
    target = (label_map or {}).get(key.lower())
    return target if target in head_labels else None


def check_labels(items: list[BatchItem], label_map: dict[str, str], head_labels: Sequence[str] = ()) -> None:
    """Fail before any work when a reference label is neither a nine-class label nor one of the head's.

    Raises:
        E2VError: ``bad_request`` naming the labels and the option that fixes them.
    """
    unknown = sorted(
        {
            it.label
            for it in items
            if it.label
            and nine_class_of(it.label, label_map) is None
            and head_label_of(it.label, head_labels, label_map) is None
        }
    )
    if not unknown:
        return
    names = ", ".join(unknown)
    if head_labels:
        theirs = ", ".join(head_labels)
        raise E2VError(
            "bad_request",
            f"labels {names} are neither among our classes nor the head's labels ({theirs}); map them, e.g. "
            f"--label-map '{unknown[0]}=<class or head label>'. / 标签 {names} 既不是九类之一，也不是分类头的标签"
            f"（{theirs}）；请用 --label-map 映射，例如 --label-map '{unknown[0]}=<类别或分类头标签>'。",
        )
    raise E2VError(
        "bad_request",
        f"labels {names} are not among our classes; map them, e.g. --label-map '{unknown[0]}=other'. "
        f"/ 标签 {names} 不在九类之中；请用 --label-map 映射，例如 --label-map '{unknown[0]}=other'。",
    )


def head_folder_labels(items: list[BatchItem], input_spec: str, head_labels: Sequence[str]) -> list[BatchItem]:
    """Folder-per-label for a head: an unlabelled input of a folder INPUT whose folder is named after one of the
    head's labels (``DATA/frustrated/x.wav``, the layout heads are trained from) gets that label."""
    root = Path(input_spec).expanduser()
    if not head_labels or not root.is_dir():
        return items
    root = root.absolute()
    out = []
    for it in items:
        parent = Path(it.file).parent
        if not it.label and parent != root and parent.is_relative_to(root):
            label = head_label_of(parent.name, head_labels)
            if label:
                it = replace(it, label=label)
        out.append(it)
    return out


def _model_key(model: str | None) -> str | None:
    """A model as batch.json keeps it: a local folder by its absolute path, a hub name as given."""
    if model and Path(model).expanduser().exists():
        return str(Path(model).expanduser().resolve())
    return model


def batch_manifest(input_spec: str, settings: Settings, options: BatchOptions, **extra) -> dict:
    """What ``batch.json`` records: the INPUT and what the batch was started with (``--resume`` must match it)."""
    return {
        "input": input_spec,
        "model": _model_key(settings.model),
        "precision": settings.precision,
        "granularity": options.granularity,
        "head": options.head,
        "embedding": options.extract_embedding,
        **extra,
    }


def check_resume(folder: Path, manifest: dict, summary: BatchSummary) -> None:
    """Refuse to resume a batch with another model, precision, granularity or head than it was started with.

    The stored ``batch.json`` is compared key by key (:data:`RESUME_KEYS`; a key an older batch.json lacks is not
    compared), and rows already written with another head (or none) count too.

    Raises:
        E2VError: ``bad_request`` naming each difference and how to go on.
    """
    try:
        stored = json.loads((folder / MANIFEST).read_text("utf-8"))
    except (OSError, ValueError):
        stored = {}
    stored = stored if isinstance(stored, dict) else {}
    if "model" in stored:
        stored["model"] = _model_key(stored["model"])
    if "head" not in stored:  # a batch.json from before heads were recorded: its rows say which head they used
        heads = {r.get("head") for r in summary.rows() if r.get("status") == "ok"}
        if len(heads) == 1:
            stored["head"] = heads.pop()
    differ = [key for key in RESUME_KEYS if key in stored and stored[key] != manifest.get(key)]
    if not differ:
        return

    def shown(value) -> str:
        return "none / 无" if value in (None, "") else str(value)

    then = ", ".join(f"{RESUME_KEYS[k]} {shown(stored[k])}" for k in differ)
    now = ", ".join(f"{RESUME_KEYS[k]} {shown(manifest.get(k))}" for k in differ)
    raise E2VError(
        "bad_request",
        f"--resume: {folder.name} was started with {then}, not {now}; its rows would mix two settings. Resume with "
        f"the same settings, or start a new batch (without --resume, or another --batch-dir). / 无法继续（--resume）："
        f"{folder.name} 开始时使用 {then}，而本次为 {now}，两种设置的结果会混在一起。请用相同设置继续，"
        f"或开始新的批量任务（去掉 --resume，或换一个 --batch-dir）。",
    )


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
    from emotion2vec_webui.runs.recognize import Recognition, RecognizeOptions

    recognize_options = RecognizeOptions(
        options.granularity, options.extract_embedding, head=options.head,
        channels=options.channels, audio_stream=options.audio_stream,
        speakers=options.speakers, num_speakers=options.num_speakers, transcribe=options.transcribe,
        asr_model=options.asr_model,
    )  # fmt: skip
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
            flow = Recognition(settings, recognize_options, request_id=rid, count_wait=False)
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
    from emotion2vec_webui.runs.recognize import Recognition, RecognizeOptions

    config = PoolConfig.from_env()
    # One decode process per --workers thread (E2V_DECODE_WORKERS=0 still means in-process, unguarded).
    decoders = DecoderPool(replace(config, workers=max(1, options.workers)) if config.workers else config)
    recognize_options = RecognizeOptions(
        options.granularity, options.extract_embedding, head=options.head,
        channels=options.channels, audio_stream=options.audio_stream,
        speakers=options.speakers, num_speakers=options.num_speakers, transcribe=options.transcribe,
        asr_model=options.asr_model,
    )  # fmt: skip
    batch_name = Path(settings.output_dir).name

    def decode(item: BatchItem):  # in a decode worker: a file that crashes the decoder is one error row
        # The input's flow starts with its decode, so its run.log times and processing_time_s cover it;
        # the wait in the prefetch queue is not this run's work (count_wait=False).
        rid = item_request_id(batch_name, item.file)
        flow = Recognition(settings, recognize_options, request_id=rid, count_wait=False)
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


def open_batch(items: list[BatchItem], folder: Path, resume: bool, manifest: dict) -> tuple[BatchSummary, list]:
    """Open (or start) a batch folder and list the inputs still to do.

    Raises:
        E2VError: ``bad_request`` when the folder already holds a batch and ``resume`` is off.
    """
    summary = BatchSummary(folder)
    if summary.exists() and not resume:
        raise E2VError("bad_request", f"{folder} already holds a batch; pass --resume to continue it. "
                                      f"/ {folder} 已有一个批量任务；要继续它请加 --resume。")  # fmt: skip
    if resume and (folder / MANIFEST).exists():
        check_resume(folder, manifest, summary)
    if not (folder / MANIFEST).exists():
        write_atomic(folder / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    done = summary.done()
    todo = [it for it in items if it.file not in done]
    adopted = {row_key(r) for r in summary.adopt_orphans(todo)}
    return summary, [it for it in todo if it.file not in adopted]


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
    labelled = [r for r in rows if r.get("label")]
    nine = [r for r in labelled if nine_class_of(r["label"], options.label_map)]
    scored = [r for r in nine if r["status"] == "ok"]
    mapping, counts = label_mapping(nine, options.label_map)
    payload: dict = {}
    metrics = None
    if scored:
        reference = [nine_class_of(r["label"], options.label_map) for r in scored]
        metrics = evaluate(reference, [r["emotion"] for r in scored])
        payload = {**asdict(metrics), "labelled_inputs": len(nine), "labelled_failed": len(nine) - len(scored)}
        payload["label_mapping_applied"] = mapping  # e.g. RAVDESS calm → neutral: said, not silent
        payload["label_map"] = options.label_map
        write_confusion(summary.folder, metrics)
    head_labels = tuple(head_labels) if options.head else ()
    theirs = [r for r in labelled if head_label_of(r["label"], head_labels, options.label_map)]
    answered = [r for r in theirs if r["status"] == "ok" and r.get("head") == options.head and r.get("head_label")]
    head_metrics = None
    if answered:
        reference = [head_label_of(r["label"], head_labels, options.label_map) for r in answered]
        head_metrics = evaluate(reference, [r["head_label"] for r in answered], classes=head_labels)
        payload["head"] = {
            "name": options.head,
            "label_set": list(head_labels),
            **asdict(head_metrics),
            "labelled_inputs": len(theirs),
            "labelled_failed": len(theirs) - len(answered),
        }
        write_confusion(summary.folder, head_metrics, HEAD_MATRIX, title=f"分类头 / head {options.head}")
    if payload:
        write_atomic(summary.folder / "metrics.json", json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    processed = len(rows) - skipped
    report = BatchReport(
        summary.folder, rows, skipped, processed, audio_s, elapsed_s, metrics, len(labelled), mapping, counts,
        head=options.head, head_labels=head_labels, head_metrics=head_metrics, head_labelled=len(theirs),
    )  # fmt: skip
    write_atomic(summary.folder / "report.txt", format_report(report) + "\n")  # what the CLI printed, kept
    if options.speakers != "none":  # conversations: one row per turn of every input
        from emotion2vec_webui.jobs.turns_summary import write_turns_summary

        write_turns_summary(summary.folder, rows)
    record_batch_folder(summary.folder)  # the catalog's batch row: summary, metrics, reference labels
    return report


def label_mapping(rows: list[dict], label_map: dict[str, str]) -> tuple[dict[str, str], dict[str, int]]:
    """The dataset labels of ``rows`` that count as another of our classes (``calm`` → ``neutral``), with counts."""
    mapping: dict[str, str] = {}
    counts: dict[str, int] = {}
    for r in rows:
        raw = r["label"].strip().lower()
        target = map_label(raw, label_map)
        if target is not None and target != raw:
            mapping[raw] = target
            counts[raw] = counts.get(raw, 0) + 1
    return dict(sorted(mapping.items())), dict(sorted(counts.items()))


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
    elif report.head and report.labelled:
        theirs = ", ".join(report.head_labels)
        lines.append(
            f"head {report.head!r} not scored: no input that it answered carries one of its labels ({theirs}) / "
            f"分类头 {report.head!r} 未评分：它回答的输入中没有带其标签（{theirs}）的"
        )
    return "\n".join(lines)
