"""``emotion2vec-webui serve``: the web UI and the REST API on one port (assembled in app.py).

``serve --ray`` serves the same app from this process with the model on Ray Serve replicas
(``runs/inference/ray_service.py``, docs/scaling.md).
"""

from __future__ import annotations

import argparse

from emotion2vec_webui.cli.common import add_model_args, add_output_args, settings_from_args
from emotion2vec_webui.errors import E2VError


def add_parser(sub) -> None:
    """Add the ``serve`` sub-command to ``sub`` (argparse sub-parsers)."""
    p = sub.add_parser("serve", help="start the web UI and REST API on one port")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (0.0.0.0 for the LAN)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--share", action="store_true", help="also open a public Gradio share link")
    add_model_args(p)
    add_output_args(p)
    r = p.add_argument_group("Ray Serve (docs/scaling.md)")
    r.add_argument("--ray", action="store_true",
                   help="run the model on Ray Serve replicas (this process stays the API, the UI and the decoder)")  # fmt: skip
    r.add_argument(
        "--address", help="Ray cluster to join (host:port or ray://…; default RAY_ADDRESS, else a local one)"
    )
    scale = r.add_mutually_exclusive_group()
    scale.add_argument("--replicas", type=int, help="model replicas (default 1)")
    scale.add_argument(
        "--autoscale", metavar="MIN:MAX", help="scale between MIN and MAX replicas on requests in flight"
    )
    r.add_argument("--app-name", help="the Serve application's name, to run several servers on one cluster "
                   "(default emotion2vec-webui; a server with the same name replaces it)")  # fmt: skip
    r.add_argument(
        "--replica-cpus", type=float, help="CPUs reserved for each replica, also its torch threads (default 1)"
    )


def ray_options(args: argparse.Namespace):
    """The ``--ray`` flags as :class:`runs.ray_service.RayServeOptions` (None without ``--ray``).

    Raises:
        E2VError: ``bad_request`` for a Ray flag without ``--ray``, or a value out of bounds.
    """
    given = [f for f, v in (("--address", args.address), ("--replicas", args.replicas),
                            ("--autoscale", args.autoscale), ("--replica-cpus", args.replica_cpus),
                            ("--app-name", args.app_name)) if v is not None]  # fmt: skip
    if not args.ray:
        if given:
            raise E2VError("bad_request", f"{given[0]} needs --ray. / {given[0]} 需要与 --ray 一起使用。")
        return None
    from emotion2vec_webui.runs.inference.ray_options import RayServeOptions, parse_autoscale

    return RayServeOptions(
        address=args.address,
        replicas=1 if args.replicas is None else args.replicas,
        autoscale=None if args.autoscale is None else parse_autoscale(args.autoscale),
        replica_cpus=1.0 if args.replica_cpus is None else args.replica_cpus,
        **({} if args.app_name is None else {"app_name": args.app_name}),
    )


def run(args: argparse.Namespace) -> int:
    from emotion2vec_webui.app import serve
    from emotion2vec_webui.runs.inputs.url_fetch import serving_at

    settings = settings_from_args(args)  # a malformed setting stops here, in one line
    ray = ray_options(args)
    with serving_at(args.host, args.port):  # audio_url never reaches this server itself (E2V_URL_ALLOW)
        return serve(settings, args.host, args.port, share=args.share, ray=ray)
