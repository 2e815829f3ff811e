"""The ``emotion2vec-webui`` command (also ``python -m emotion2vec_webui``).

Sub-commands are thin adapters: heavy imports (torch, FunASR, Gradio, Ray)
happen inside the handlers, so ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from . import __version__
from .errors import E2VError

# Exit codes, one table: 0 ok, 1 some batch items failed, 2 bad input, 3 model unavailable,
# 4 the output folder is full or cannot be written.
EXIT_OK, EXIT_SOME_FAILED, EXIT_BAD_INPUT, EXIT_MODEL_UNAVAILABLE, EXIT_STORAGE = 0, 1, 2, 3, 4
EXIT_CODES = {
    "model_unavailable": EXIT_MODEL_UNAVAILABLE,
    "overloaded": EXIT_MODEL_UNAVAILABLE,
    "storage_full": EXIT_STORAGE,
    "storage_unavailable": EXIT_STORAGE,
}


def exit_code_for(error: E2VError) -> int:
    return EXIT_CODES.get(error.code, EXIT_BAD_INPUT)


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="model name, hub id or local directory (E2V_MODEL; default emotion2vec_plus_large)")
    p.add_argument("--hub", choices=["ms", "hf"], help="model hub: ms = ModelScope, hf = Hugging Face (E2V_HUB)")
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N (E2V_DEVICE; default auto)")
    p.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16", "fp16", "int8", "onnx", "onnx-int8"],
        help="compute precision (E2V_PRECISION; auto = bf16/fp16 on GPU, fp32 on CPU; int8 = the fast CPU mode)",
    )


def _add_output_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--output-dir", type=Path, help="root for run folders (E2V_OUTPUT_DIR; default ./outputs)")


def _add_recognition_args(p: argparse.ArgumentParser, embedding_default: bool = True) -> None:
    p.add_argument(
        "--granularity",
        choices=["utterance", "frame"],
        default="utterance",
        help="utterance: one result per file; frame: also scores every 20 ms (timeline, segments)",
    )
    p.add_argument(
        "--embedding",
        action=argparse.BooleanOptionalAction,
        default=embedding_default,
        help="write embedding.npy ([D] per utterance, [T, D] per frame)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="emotion2vec-webui",
        description="Speech emotion recognition with Emotion2Vec+ (FunASR): web UI, REST API, CLI, batch, benchmark.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING, ERROR (E2V_LOG_LEVEL; default INFO)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("serve", help="start the web UI and REST API on one port")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (0.0.0.0 for the LAN)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--share", action="store_true", help="also open a public Gradio share link")
    _add_model_args(p)
    _add_output_args(p)

    p = sub.add_parser(
        "recognize",
        help="classify audio files; one run folder per file",
        description="Classify audio files. A bad file is reported on stderr with its error code; the others are "
        "still processed, and the exit status is 2.",
    )
    p.add_argument("files", nargs="+", metavar="FILE")
    _add_recognition_args(p)
    _add_model_args(p)
    _add_output_args(p)
    p.add_argument("--json", action="store_true", help="print one result object per line (JSON Lines)")
    p.add_argument(
        "--segments",
        choices=["frames", "vad"],
        default="frames",
        help="frames: segments are runs of the frame emotions (frame granularity); "
        "vad: one emotion per speech segment (silero-vad), at either granularity",
    )

    p = sub.add_parser("batch", help="classify a folder, glob or list file; writes summary.csv and summary.jsonl")
    p.add_argument("input", metavar="INPUT", help="folder (recursive), glob pattern, or list file (.txt / .csv)")
    _add_recognition_args(p, embedding_default=False)
    _add_model_args(p)
    _add_output_args(p)
    p.add_argument("--batch-size", type=int, default=8, help="clips per model call (length-bucketed)")
    p.add_argument("--resume", action="store_true", help="skip inputs already done in the batch folder")
    p.add_argument("--batch-dir", type=Path, help="batch folder to write or resume (default: a new one)")
    p.add_argument("--engine", choices=["local", "ray"], default="local", help="local threads, or Ray Data")
    p.add_argument("--workers", type=int, default=2, help="decoding threads (local) or actors (ray)")
    p.add_argument("--label-map", help="label mapping, e.g. 'calm=neutral,surprise=surprised'")

    p = sub.add_parser("similarity", help="cosine similarity of two clips' utterance embeddings")
    p.add_argument("a", metavar="A")
    p.add_argument("b", metavar="B")
    _add_model_args(p)
    p.add_argument("--json", action="store_true", help="print a JSON object")

    p = sub.add_parser("bench", help="compare models on load time, latency, memory and accuracy")
    p.add_argument(
        "--models",
        default="emotion2vec_plus_large",
        help="comma-separated: names, local dirs, hf:<repo id>, hf-random:wav2vec2-base, hf-random:hubert-large",
    )
    p.add_argument("--durations", default="3,10,30", help="clip lengths in seconds (comma-separated)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--dataset", type=Path, help="labelled clips: RAVDESS/CREMA-D folder or CSV of path,label")
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16", "int8", "onnx", "onnx-int8"])
    p.add_argument("--hub", choices=["ms", "hf"])
    p.add_argument("--output", type=Path, help="write the JSON results here (Markdown goes to stdout)")

    p = sub.add_parser(
        "make-test-model",
        help="write a random-weight model directory (FunASR layout) for tests and offline trials",
    )
    p.add_argument("directory", metavar="DIR")
    p.add_argument("--size", choices=["tiny", "base", "large"], default="tiny")
    p.add_argument("--seed", type=int, default=0)
    return parser


def settings_from_args(args: argparse.Namespace):
    """E2V_* settings with command-line flags applied on top."""
    from .config import load_settings

    s = load_settings()
    changes = {}
    for field in ("model", "hub", "device", "precision", "output_dir"):
        value = getattr(args, field, None)
        if value is not None:
            changes[field] = value
    if getattr(args, "log_level", None):
        changes["log_level"] = args.log_level.upper()
    return dataclasses.replace(s, **changes)


def load_engine(settings):
    from .engine import EmotionEngine

    return EmotionEngine.load(settings.model, settings.hub, settings.device, settings.precision)


def cmd_recognize(args: argparse.Namespace) -> int:
    from .audio import AudioLimits
    from .decoder_pool import decode_guarded
    from .pipeline import RecognizeOptions, recognize_decoded

    settings = settings_from_args(args)
    options = RecognizeOptions(args.granularity, args.embedding, segmentation=args.segments)
    engine = None
    status = EXIT_OK
    for name in args.files:
        try:
            decoded = decode_guarded(name, source_name=Path(name).name, limits=AudioLimits.from_settings(settings))
            if engine is None:
                engine = load_engine(settings)
            outcome = recognize_decoded(decoded, engine, settings, options)
        except E2VError as exc:
            if exc.code == "model_unavailable":
                print(f"error: {exc.message} [{exc.code}]", file=sys.stderr)
                return EXIT_MODEL_UNAVAILABLE
            print(f"{name}: {exc.message} [{exc.code}]", file=sys.stderr)
            status = max(status, exit_code_for(exc))
            continue
        run = outcome.run
        if args.json:
            print(json.dumps({**outcome.result, "run_id": run.run_id, "run_dir": str(run.path)}, ensure_ascii=False))
        else:
            r = outcome.result
            from .labels import EMOJI

            warn = f"  ({len(r['warnings'])} warning(s))" if r["warnings"] else ""
            print(
                f"{name}: {EMOJI[r['emotion']]} {r['emotion']} / {r['emotion_zh']}  {r['confidence']:.3f}  → {run.path}{warn}"
            )
        sys.stdout.flush()
    return status


def cmd_make_test_model(args: argparse.Namespace) -> int:
    from .model import quiet_funasr
    from .testmodel import make_test_model

    with quiet_funasr():
        out = make_test_model(args.directory, args.size, args.seed)
    info = json.loads((out / "e2v_random_weights.json").read_text("utf-8"))
    print(
        f"wrote a random-weight {args.size} model to {out} "
        f"({info['parameters'] / 1e6:.2f}M parameters, embedding width {info['embed_dim']})"
    )
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return EXIT_OK
    from .config import load_settings
    from .logs import setup_logging

    base = load_settings()
    setup_logging(args.log_level or base.log_level, base.log_format)
    if args.command == "recognize":
        handler = cmd_recognize
    elif args.command == "make-test-model":
        handler = cmd_make_test_model
    elif args.command == "serve":
        from .server import cmd_serve as handler
    elif args.command == "batch":
        from .batch import cmd_batch as handler
    elif args.command == "similarity":
        from .similarity import cmd_similarity as handler
    elif args.command == "bench":
        from .bench import cmd_bench as handler
    else:  # pragma: no cover - argparse rejects unknown commands
        parser.error(f"unknown command {args.command}")
    try:
        return handler(args)
    except E2VError as exc:
        print(f"error: {exc.message} [{exc.code}]", file=sys.stderr)
        return exit_code_for(exc)
    except KeyboardInterrupt:
        return 130
