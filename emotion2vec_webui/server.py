"""One server, one port: the REST API (FastAPI) with the Gradio UI mounted at ``/``.

The app is assembled here; the ``/api/v1`` routes live in :mod:`.api`.
Request handling, outermost first:

1. :class:`RequestContextMiddleware` gives every request an ``X-Request-ID``
   (a sane incoming one is kept), sets :data:`logs.request_id_var` for the
   request's duration, and turns any unexpected exception into a logged
   ``500 internal_error`` without a stack trace for the client.
2. :class:`~.guards.ApiGuardMiddleware` guards ``/api/*`` (and ``/metrics``):
   the bearer token when ``E2V_API_TOKEN`` is set (checked before any body
   byte is read), the upload cap, enforced while the body streams in
   (Starlette does not cap multipart file parts): ``413 file_too_large`` goes
   out as soon as the cap is passed, never after buffering the whole body;
   and the body timeouts (``408 request_timeout``).
   :class:`~.guards.UploadGuardMiddleware` bounds Gradio's upload route (bytes
   per request, a rate per client, a free-space floor).
3. FastAPI routes (``/healthz``, ``/readyz``, ``/api/v1/*``, ``/docs``), then
   the Gradio app, mounted last so it does not swallow them.

Slow clients: uvicorn runs :func:`~.guards.guarded_http_protocol`, which
closes a connection whose request headers take longer than
``E2V_HEADER_TIMEOUT_S``.

Torch and FunASR are imported only by the service's loader thread, after the
app is built: ``/`` and ``/healthz`` answer within seconds of the start.
"""

from __future__ import annotations

import argparse
import logging
import re
import threading
import uuid

from starlette.requests import ClientDisconnect

from .config import Settings
from .guards import REQUEST_ID_HEADER, ApiGuardMiddleware, UploadGuardMiddleware, guarded_http_protocol
from .guards import json_error_messages as _json_error_messages
from .logs import log_to_file, request_id_var
from .service import Service

log = logging.getLogger(__name__)

__all__ = [
    "REQUEST_ID_HEADER",
    "ApiGuardMiddleware",
    "RequestContextMiddleware",
    "UploadGuardMiddleware",
    "create_app",
    "cmd_serve",
]

_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,64}$")


class RequestContextMiddleware:
    """Request id in, request id out, and no stack trace ever reaches a client."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = None
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                incoming = value.decode("latin-1").strip()
                break
        request_id = incoming if incoming and _SANE_REQUEST_ID.match(incoming) else uuid.uuid4().hex[:16]
        scope.setdefault("state", {})["request_id"] = request_id
        token = request_id_var.set(request_id)
        started = False

        async def send_with_id(message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != b"x-request-id"]
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            if isinstance(exc, ClientDisconnect):  # nobody left to answer
                log.info("client went away during %s %s", scope.get("method"), scope.get("path"))
                return
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if not started:
                start, body = _json_error_messages(
                    500, "internal_error", "An unexpected error occurred; see the server log.", request_id
                )
                await send(start)
                await send({"type": "http.response.body", "body": body})
        finally:
            request_id_var.reset(token)


def create_app(settings: Settings, service: Service | None = None):
    """The FastAPI app: health, readiness, REST API, OpenAPI docs, and the Gradio UI at ``/``.

    Args:
        settings: the server's settings.
        service: the shared service (a new one when None; started with the app).

    Returns:
        The ASGI app (a ``fastapi.FastAPI``).
    """
    import contextlib

    from fastapi import FastAPI

    from . import __version__, api, metrics

    service = service or Service(settings)

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        service.start()  # idempotent; the model loads in the background
        try:
            yield
        finally:
            service.stop()

    app = FastAPI(
        title="emotion2vec-webui",
        version=__version__,
        description=api.API_DESCRIPTION,
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.service = service
    api.install_error_handlers(app)
    app.include_router(api.health_router)
    app.include_router(api.router)

    app.add_middleware(ApiGuardMiddleware, settings=settings)
    app.add_middleware(UploadGuardMiddleware, settings=settings)
    app.add_middleware(RequestContextMiddleware)
    # GET /metrics, and the metrics middleware added last: outermost, so it also counts the
    # 401/413/500 answers that the two middleware above give by themselves.
    metrics.install(app, service, settings)
    api.add_api_catch_all(app)  # after every /api route: unknown /api paths are JSON 404s, not the UI's
    _mount_ui(app, service, settings)
    return app


def _mount_ui(app, service: Service, settings: Settings) -> None:
    import gradio as gr

    try:
        from . import ui
    except ImportError:
        ui = None
    if ui is not None and hasattr(ui, "build_ui"):
        blocks = ui.build_ui(service)
        kwargs = ui.mount_kwargs(settings) if hasattr(ui, "mount_kwargs") else {}
    else:  # the UI module is not there yet: a minimal page, so the server still serves
        with gr.Blocks(title="emotion2vec-webui") as blocks:
            gr.Markdown("# emotion2vec-webui\nThe web UI is not installed; the REST API is at `/docs`.")
        blocks.queue()
        kwargs = {"max_file_size": settings.max_upload_bytes}
    _quiet_queue(blocks)
    gr.mount_gradio_app(app, blocks, path="/", **kwargs)
    # Gradio checks that a FileData input names a file the user uploaded (not, say, /etc/passwd)
    # only when ``blocks.has_launched`` (processing_utils._check_allowed), which launch() sets and
    # mount_gradio_app() does not (Gradio 6.31): without this, the mounted UI's API would read any
    # server path. Tested in tests/reliability/test_traversal.py.
    blocks.has_launched = True


QUEUE_POLL_S = 0.02  # how often an idle Gradio queue looks for new UI events
PROGRESS_POLL_S = 0.1  # and for progress updates to send


def _quiet_queue(blocks) -> None:
    """Make Gradio's idle queue poll at 50 Hz instead of 1 kHz.

    On Linux Gradio's queue loop sleeps 1 ms between looks at an empty queue
    (``Queue.sleep_when_free``; progress updates every 10 ms). Idle, that
    kept ~9% of a core busy in this server; during inference it takes those
    cycles from one of the model's threads, and every parallel step waits for
    the slowest thread: on 2 cores a 5 s clip's inference ran ~15% slower in
    the server than in a plain process. A UI event now waits at most 20 ms
    more to start, next to inference times of 0.1-1 s.
    """
    queue = getattr(blocks, "_queue", None)
    if queue is None:  # pragma: no cover - another Gradio layout: leave it be
        return
    if hasattr(queue, "sleep_when_free"):
        queue.sleep_when_free = max(queue.sleep_when_free, QUEUE_POLL_S)
    if hasattr(queue, "progress_update_sleep_when_free"):
        queue.progress_update_sleep_when_free = max(queue.progress_update_sleep_when_free, PROGRESS_POLL_S)


def _open_share_link(server, host: str, port: int, settings: Settings) -> None:
    """``--share``: once uvicorn listens, open a Gradio share tunnel to it and log the public URL."""
    import secrets
    import time

    while not server.started and not server.should_exit:
        time.sleep(0.1)
    if server.should_exit:
        return
    from gradio import networking

    local = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    try:
        url = networking.setup_tunnel(local, port, secrets.token_urlsafe(32), None, None)
    except Exception as exc:  # no network, blocked ports, missing frpc download
        log.warning("could not open a share link (%s); serving locally only", exc)
        return
    log.info("public share link: %s (UI and API; valid about a week)", url)
    if not settings.api_token:
        log.warning("the share link is public and E2V_API_TOKEN is not set: anyone with the link can use the API")


def cmd_serve(args: argparse.Namespace) -> int:
    """``emotion2vec-webui serve``: build the app, start the service, run uvicorn."""
    import uvicorn

    from .cli import settings_from_args

    settings = settings_from_args(args)
    from .results import require_output_dir, sweep_stale_temps

    # An unwritable outputs folder stops the start with one plain line (cli.main prints the
    # StorageError, exit 4), not a traceback from the first run; then temp folders of writers
    # that died (a kill mid-write) are swept.
    require_output_dir(settings.output_dir)
    log_to_file(settings.log_dir)  # rotating JSON lines, 10 MB x 5
    sweep_stale_temps(settings.output_dir)
    from .ui import configure_gradio_env

    configure_gradio_env(settings)  # before Gradio is imported: some of its modules read the temp dir at import
    service = Service(settings)
    app = create_app(settings, service)
    service.start()  # after the UI is built: importing torch would slow the first page
    host, port = getattr(args, "host", "127.0.0.1"), getattr(args, "port", 7860)
    log.info("serving the UI at http://%s:%d/ and the API docs at http://%s:%d/docs", host, port, host, port)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level=settings.log_level.lower(),
            log_config=None,  # keep our logging set-up (request ids, JSON)
            # gradio_client keeps long-lived connections that otherwise hold shutdown for 14-30 s.
            timeout_graceful_shutdown=2,
            # Request line and headers within E2V_HEADER_TIMEOUT_S (uvicorn only times out idle keep-alive).
            http=guarded_http_protocol(settings),
        )
    )
    if getattr(args, "share", False):
        threading.Thread(target=_open_share_link, args=(server, host, port, settings), daemon=True).start()
    server.run()
    return 0
