"""``emotion2vec-webui batch INPUT``: a folder, glob or list file → a batch folder (jobs/batch_job.py does the work)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from emotion2vec_webui.cli.common import (
    EXIT_OK,
    EXIT_SOME_FAILED,
    add_channel_args,
    add_confidence_args,
    add_model_args,
    add_output_args,
    add_recognition_args,
    add_segmentation_arg,
    channel_options,
    confidence_options,
    settings_from_args,
)
from emotion2vec_webui.cli.conversation_args import add_conversation_args, conversation_options
from emotion2vec_webui.jobs.batch import BatchOptions, format_report
from emotion2vec_webui.jobs.batch_job import batch_head_labels, prepare_batch
from emotion2vec_webui.jobs.evaluation import DEFAULT_LABEL_MAP, parse_label_map
from emotion2vec_webui.jobs.inputs import discover_inputs
from emotion2vec_webui.label_sets import LABEL_SETS
from emotion2vec_webui.runs.recognize import RecognizeOptions
from emotion2vec_webui.runs.speaker_names import check_names


def add_parser(sub) -> None:
    """Add the ``batch`` sub-command to ``sub`` (argparse sub-parsers)."""
    p = sub.add_parser("batch", help="classify a folder, glob or list file; writes summary.csv and summary.jsonl")
    p.add_argument("input", metavar="INPUT", help="folder (recursive), glob pattern, or list file (.txt / .csv)")
    add_recognition_args(p, embedding_default=False)
    add_segmentation_arg(p)
    add_channel_args(p)
    add_conversation_args(p)
    add_model_args(p)
    add_output_args(p)
    p.add_argument("--batch-size", type=int, default=8, help="clips per model call (length-bucketed)")
    p.add_argument("--resume", action="store_true", help="skip inputs already done in the batch folder")
    p.add_argument("--batch-dir", type=Path, help="batch folder to write or resume (default: a new one)")
    p.add_argument("--engine", choices=["local", "ray"], default="local", help="local threads, or Ray Data")
    p.add_argument("--workers", type=int, default=2, help="decoding threads (local) or actors (ray)")
    defaults = ", ".join(f"{k}={v}" for k, v in DEFAULT_LABEL_MAP.items() if len(k) > 3 and not k.startswith("<"))
    p.add_argument(
        "--label-map",
        help=f"dataset label=our class pairs, e.g. 'calm=sad,surprise=surprised'; they override the defaults "
        f"({defaults}; CREMA-D codes; the report lists every mapping it applied)",
    )
    p.add_argument(
        "--head",
        metavar="NAME",
        help="also apply the trained head E2V_HEADS_DIR/NAME (see train-head); inputs labelled with its labels "
        "(list file, folder per label) score it: accuracy, UA, F1, confusion matrix",
    )
    p.add_argument(
        "--label-set",
        choices=list(LABEL_SETS),
        metavar="SET",
        help="also score on a benchmark label set, as published tables do: references mapped into the set (others "
        "dropped and counted), the answer is the set's class with the highest score; "
        f"one of {', '.join(LABEL_SETS)} (metrics.json \"label_set\", label_set_confusion_matrix.*)",
    )
    add_confidence_args(p)
    p.add_argument(
        "--speaker-names", metavar="ID=NAME,…", help="conversations: name the speakers of every call, e.g. "
        "'left=Agent,right=Customer'; calls.csv and calls_report.html then aggregate per name"
    )


def run(args) -> int:
    """The ``batch`` sub-command. Returns 0 when every input is ok, 1 when any failed."""
    settings = settings_from_args(args)
    head_labels = batch_head_labels(settings, args.head)  # not_found / head_invalid before any work
    each = RecognizeOptions(  # every option checked here, before any input is read
        args.granularity, args.embedding, args.segmentation, head=args.head or None, **channel_options(args),
        **conversation_options(args), **confidence_options(args),
    )
    options = BatchOptions(
        each,
        batch_size=max(1, args.batch_size),
        workers=max(1, args.workers),
        label_map=parse_label_map(args.label_map, head_labels),  # dataset labels → classes or the head's labels
        label_set=args.label_set,
        speaker_names=check_names(args.speaker_names),
    )
    batch = prepare_batch(
        discover_inputs(args.input), settings, options, args.input,
        batch_dir=args.batch_dir, resume=args.resume, engine=args.engine,
    )  # fmt: skip
    items, skipped = batch.items, batch.skipped
    print(f"batch folder: {batch.folder} — {len(items)} inputs, {len(batch.todo)} to do", file=sys.stderr)

    # Each input's processing log is in its run.log; the console shows the progress bar and failures.
    # Restored on the way out: an in-process caller (tests, a notebook) keeps its logging as it was.
    pipeline_log = logging.getLogger("emotion2vec_webui.runs.recognize")
    pipeline_level = pipeline_log.level
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        pipeline_log.setLevel(logging.WARNING)
    try:
        return _run_batch(args, batch, items, skipped)
    finally:
        pipeline_log.setLevel(pipeline_level)


def _run_batch(args, batch, items, skipped) -> int:
    """Load the engine, run the prepared batch under a progress bar, print its report; the exit status."""
    if batch.todo and args.engine == "local":
        batch.load_engine()  # before the bar: head_mismatch once, before any input

    from tqdm import tqdm

    # Starts at the inputs a resumed batch already has. Rows arrive a model call's group at a time, within
    # milliseconds: tqdm's 0.1 s redraw limit showed the group's first row only ("1/20" when 8 were done), and
    # its moving average timed that one row over the whole call (93.89 s/clip). Each row is drawn, and the
    # rate is this session's clips over its time (smoothing 0: tqdm then leaves the resumed inputs out).
    bar = tqdm(total=len(items), initial=skipped, unit="clip", file=sys.stderr, dynamic_ncols=True, smoothing=0)
    failed = 0

    def on_row(row: dict) -> None:
        nonlocal failed
        if row["status"] != "ok":
            failed += 1
            bar.write(f"{row['file']}: {row['error_message']} [{row['error_code']}]", file=sys.stderr)
        bar.set_postfix(failed=failed, refresh=False)
        bar.update(1)
        bar.refresh()

    try:
        report = batch.run(on_row)
    finally:
        bar.close()
    print(format_report(report))
    if (report.folder / "calls.csv").is_file():  # a conversation batch (jobs/calls.py)
        print(f"calls / 通话: {report.folder / 'calls.csv'}, {report.folder / 'calls_report.html'}")
    return EXIT_SOME_FAILED if report.failed else EXIT_OK
