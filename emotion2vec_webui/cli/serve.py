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
    from emotion2vec_webui.runs.url_fetch import serving_at

    settings = settings_from_args(args)  # a malformed setting stops here, in one line
    with serving_at(args.host, args.port):  # audio_url never reaches this server itself (E2V_URL_ALLOW)
        return serve(settings, args.host, args.port, share=args.share)
