"""``emotion2vec-webui serve``: the web UI and the REST API on one port (assembled in app.py)."""

from __future__ import annotations

import argparse

from emotion2vec_webui.cli.common import add_model_args, add_output_args, settings_from_args


def add_parser(sub) -> None:
    """Add the ``serve`` sub-command to ``sub`` (argparse sub-parsers)."""
    p = sub.add_parser("serve", help="start the web UI and REST API on one port")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (0.0.0.0 for the LAN)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--share", action="store_true", help="also open a public Gradio share link")
    add_model_args(p)
    add_output_args(p)


def run(args: argparse.Namespace) -> int:
    from emotion2vec_webui.app import serve

    return serve(settings_from_args(args), args.host, args.port, share=args.share)
