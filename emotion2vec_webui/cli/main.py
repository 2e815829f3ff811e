"""The ``emotion2vec-webui`` command (also ``python -m emotion2vec_webui``).

One module per sub-command in this folder, each with ``add_parser(sub)`` and
``run(args) -> int``; this module only builds the parser and dispatches.
Heavy imports (torch, FunASR, Gradio, Ray) happen inside the commands, so
``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import sys

from emotion2vec_webui import __version__
from emotion2vec_webui.cli import (
    batch,
    bench,
    calibrate,
    catalog,
    export,
    formats,
    make_test_model,
    recognize,
    serve,
    similarity,
    stream,
    train_head,
)
from emotion2vec_webui.cli.common import EXIT_OK, exit_code_for
from emotion2vec_webui.errors import E2VError

# Sub-commands in --help order: name → module with add_parser(sub) and run(args).
COMMANDS = {
    "serve": serve,
    "recognize": recognize,
    "batch": batch,
    "similarity": similarity,
    "stream": stream,
    "train-head": train_head,
    "calibrate": calibrate,
    "bench": bench,
    "make-test-model": make_test_model,
    "export": export,
    "formats": formats,
    "catalog": catalog,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="emotion2vec-webui",
        description="Speech emotion recognition with Emotion2Vec+ (FunASR): web UI, REST API, CLI, batch, benchmark.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING, ERROR (E2V_LOG_LEVEL; default INFO)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS.values():
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return EXIT_OK
    from emotion2vec_webui.config import load_settings
    from emotion2vec_webui.logs import setup_logging

    base = load_settings()
    setup_logging(args.log_level or base.log_level, base.log_format)
    try:
        return COMMANDS[args.command].run(args)
    except E2VError as exc:
        print(f"error: {exc.message} [{exc.code}]", file=sys.stderr)
        return exit_code_for(exc)
    except KeyboardInterrupt:
        return 130
