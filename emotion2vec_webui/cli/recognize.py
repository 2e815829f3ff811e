"""``emotion2vec-webui recognize FILE…``: one run folder per file."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

from emotion2vec_webui.cli.common import (
    EXIT_OK,
    add_channel_args,
    add_confidence_args,
    add_model_args,
    add_output_args,
    add_recognition_args,
    add_segmentation_arg,
    channel_options,
    confidence_options,
    exit_code_for,
    settings_from_args,
)
from emotion2vec_webui.cli.conversation_args import add_conversation_args, conversation_options
from emotion2vec_webui.cli.progress import WindowProgress
from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.runs.inputs.url_fetch import AudioUrl, is_url


def add_parser(sub) -> None:
    """Add the ``recognize`` sub-command to ``sub`` (argparse sub-parsers)."""
    p = sub.add_parser(
        "recognize",
        help="classify audio files; one run folder per file",
        description="Classify audio files. A bad file is reported on stderr with its error code; the others are "
        "still processed, and the exit status is 2.",
    )
    p.add_argument(
        "files",
        nargs="+",
        metavar="FILE",
        help="audio or video files (`emotion2vec-webui formats` lists the formats), or http(s) URLs "
        "(E2V_URL_ALLOW, E2V_URL_FETCH)",
    )
    add_recognition_args(p)
    add_channel_args(p)
    add_conversation_args(p)
    add_model_args(p)
    add_output_args(p)
    p.add_argument("--json", action="store_true", help="print one result object per line (JSON Lines)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr (a long file prints "
                   "'window k/n, ETA m:ss' as each window starts); errors are still printed")  # fmt: skip
    p.add_argument(
        "--report", action="store_true", help="also write report.html in each run folder: one self-contained page "
        "(summary, emotional arc, speaker lanes, transcript, settings) that opens offline and prints to PDF"
    )
    p.add_argument(
        "--head", metavar="NAME", help="also apply the trained head E2V_HEADS_DIR/NAME (see train-head); "
        "result.json gets a 'head' block beside the nine classes"
    )
    add_segmentation_arg(p)
    add_confidence_args(p)


def run(args: argparse.Namespace) -> int:
    from emotion2vec_webui.engine.engine import EmotionEngine
    from emotion2vec_webui.runs.recognize import Recognition, RecognizeOptions

    settings = settings_from_args(args)
    options = RecognizeOptions(
        args.granularity, args.embedding, segmentation=args.segmentation, head=args.head or None, **channel_options(args),
        **conversation_options(args), **confidence_options(args),
    )
    engine = None

    def with_engine(fn):  # the model loads once, after the first file decodes
        nonlocal engine
        if engine is None:
            engine = EmotionEngine.from_settings(settings)
        return fn(engine)

    status = EXIT_OK
    for name in args.files:
        try:
            flow = Recognition(settings, options)
            with contextlib.nullcontext() if args.quiet else WindowProgress(flow, name):  # window k/n, ETA (stderr)
                if is_url(name):  # downloaded under the same rules as REST's audio_url (runs/inputs/url_fetch.py)
                    outcome = flow.run(AudioUrl(name), with_engine)
                else:
                    outcome = flow.run(name, with_engine, source_name=Path(name).name)
        except E2VError as exc:
            if exc.code in ("model_unavailable", "head_mismatch", "head_invalid") or (
                exc.code == "not_found" and (args.head or args.calibration)
            ):
                print(f"error: {exc.message} [{exc.code}]", file=sys.stderr)
                return exit_code_for(exc)  # 3 for the model; 2 for a missing or mismatched head
            print(f"{name}: {exc.message} [{exc.code}]", file=sys.stderr)
            status = max(status, exit_code_for(exc))
            continue
        run = outcome.run
        if args.report:  # runs/report.py, from the result just written
            from emotion2vec_webui.runs.report import write_report

            write_report(run.path, outcome.result)
        if args.json:
            print(json.dumps({**outcome.result, "run_id": run.run_id, "run_dir": str(run.path)}, ensure_ascii=False))
        else:
            r = outcome.result
            from emotion2vec_webui.labels import EMOJI
            from emotion2vec_webui.runs.confidence import shown

            warn = f"  ({len(r['warnings'])} warning(s))" if r["warnings"] else ""
            h = r.get("head")
            head = ""
            if h:
                h_answer = f"{h['label']} {h['confidence']:.3f}"
                head = f"  [{h['name']}: {shown(h_answer, h.get('uncertain', False))}]"
            answer = shown(f"{r['emotion']} / {r['emotion_zh']}  {r['confidence']:.3f}", r.get("uncertain", False))
            calibrated = f"  (calibration {r['calibration']['name']})" if r.get("calibration") else ""
            print(f"{name}: {EMOJI[r['emotion']]} {answer}{calibrated}{head}  → {run.path}{warn}")
            if r.get("turns") is not None:  # a conversation (--speakers)
                print(f"  {len(r['speakers'])} speaker(s), {len(r['turns'])} turn(s), {r['summary']['escalations']} "
                      "escalation(s) → transcript.srt, transcript.vtt, turns.csv, turns.jsonl")  # fmt: skip
            if args.report:
                print(f"  → {run.path / 'report.html'}")
        sys.stdout.flush()
    return status
