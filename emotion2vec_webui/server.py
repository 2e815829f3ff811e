"""One server, one port: the REST API (FastAPI) with the Gradio UI mounted at ``/``.

The app is assembled here; the ``/api/v1`` routes live in :mod:`.api`.
Request handling, outermost first:

1. :class:`RequestContextMiddleware` gives every request an ``X-Request-ID``
   (a sane incoming one is kept), sets :data:`logs.request_id_var` for the
   request's duration, and turns any unexpected exception into a logged
   ``500 internal_error`` without a stack trace for the client.
2. :class:`ApiGuardMiddleware` guards ``/api/*`` (and ``/metrics``): the
   bearer token when ``E2V_API_TOKEN`` is set (checked before any body byte
   is read), and the upload cap, enforced while the body streams in
   (Starlette does not cap multipart file parts): ``413 file_too_large`` goes
   out as soon as the cap is passed, never after buffering the whole body.
3. FastAPI routes (``/healthz``, ``/readyz``, ``/api/v1/*``, ``/docs``), then
   the Gradio app, mounted last so it does not swallow them.

Torch and FunASR are imported only by the service's loader thread, after the
app is built: ``/`` and ``/healthz`` answer within seconds of the start.
"""

from __future__ import annotations

import argparse
import hmac
import logging
import re
import threading
import uuid

from starlette.requests import ClientDisconnect

from .config import Settings
from .logs import log_to_file, request_id_var
from .service import Service

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,64}$")
# Paths behind the token (when E2V_API_TOKEN is set). /healthz and /readyz stay open for orchestrators.
PROTECTED_PREFIXES = ("/api/", "/metrics")
# Bytes allowed for a request body beyond the file(s): multipart boundaries, form fields, JSON keys.
BODY_OVERHEAD = 64 * 1024
# After answering early (401, 413, 503 …) we keep reading and dropping the body, at most this much
# and this long, so that a client still busy sending it gets to read the answer (see _drain).
_DRAIN_LIMIT = 64 * 1024 * 1024
_DRAIN_TIMEOUT_S = 10.0


def _json_error_messages(status: int, code: str, message: str, request_id: str | None, extra_headers=()):
    """The ASGI messages of an error response, for middleware that answers by itself."""
    import json

    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *extra_headers,
    ]
    if request_id:
        headers.append((REQUEST_ID_HEADER.lower().encode(), request_id.encode()))
    return {"type": "http.response.start", "status": status, "headers": headers}, body


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


class ApiGuardMiddleware:
    """Bearer token and streaming body cap for the API paths.

    Args:
        app: the inner ASGI app.
        settings: token (``api_token``) and upload cap (``max_upload_bytes``).
    """

    def __init__(self, app, settings: Settings) -> None:
        self.app = app
        self.token = settings.api_token
        self.max_upload = settings.max_upload_bytes

    def body_limit(self, scope) -> int:
        """Largest body accepted on this path: two files for similarity, base64 inflation for JSON."""
        files = 2 if scope["path"].rstrip("/").endswith("/similarity") else 1
        content_type = b""
        for name, value in scope.get("headers", ()):
            if name == b"content-type":
                content_type = value.lower()
        per_file = self.max_upload * 4 // 3 + 4 if b"json" in content_type else self.max_upload
        return files * per_file + BODY_OVERHEAD

    def authorized(self, scope) -> bool:
        if not self.token:
            return True
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                scheme, _, given = value.decode("latin-1").partition(" ")
                if scheme.lower() == "bearer":
                    return hmac.compare_digest(given.strip().encode(), self.token.encode())
        return False

    async def __call__(self, scope, receive, send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not path.startswith(PROTECTED_PREFIXES) and path != "/api":
            await self.app(scope, receive, send)
            return
        request_id = scope.get("state", {}).get("request_id")
        headers = dict(scope.get("headers", ()))
        try:
            declared = int(headers[b"content-length"]) if b"content-length" in headers else None
        except ValueError:
            declared = None
        chunked = b"chunked" in headers.get(b"transfer-encoding", b"").lower()
        # A client waiting for "100 Continue" sends no body until we read: then there is nothing to drain.
        expects_continue = b"100-continue" in headers.get(b"expect", b"").lower()
        has_body = (bool(declared) or chunked) and not expects_continue
        limit = self.body_limit(scope)

        if not self.authorized(scope):
            message = "A valid API token is required: send 'Authorization: Bearer <E2V_API_TOKEN>'."
            extra = [(b"www-authenticate", b"Bearer")]
            await self._answer(send, receive, 401, "unauthorized", message, request_id, extra, drain=has_body)
            return
        too_large = (
            f"The request body exceeds the upload limit of {self.max_upload / 1024 / 1024:g} MB (E2V_MAX_UPLOAD_MB)."
        )
        if declared is not None and declared > limit:
            await self._answer(send, receive, 413, "file_too_large", too_large, request_id, drain=has_body)
            return

        received = 0
        body_done = not has_body
        exceeded = answered = False

        async def counting_receive():
            nonlocal received, exceeded, body_done
            if exceeded:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                body_done = body_done or not message.get("more_body", False)
                if received > limit:
                    exceeded = True
                    # Tell the app the client went away: it stops parsing and drops its temp files.
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message) -> None:
            nonlocal answered
            if exceeded:
                if not answered:
                    answered = True
                    await self._answer(send, receive, 413, "file_too_large", too_large, request_id, drain=True)
                return
            if message["type"] == "http.response.start" and not body_done:
                # Answered before the body was read (401/413/503 …): this connection cannot be reused.
                message = {**message, "headers": [*message.get("headers", ()), (b"connection", b"close")]}
            elif message["type"] == "http.response.body" and not message.get("more_body", False) and not body_done:
                await send({**message, "more_body": True})
                await _drain(receive, limit)
                message = {"type": "http.response.body", "body": b""}
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not exceeded:
                raise
            # The app stopped on the disconnect we simulated (e.g. Starlette's ClientDisconnect).
        if exceeded and not answered:
            await self._answer(send, receive, 413, "file_too_large", too_large, request_id, drain=True)

    @staticmethod
    async def _answer(send, receive, status, code, message, request_id, extra=(), drain=False) -> None:
        """Answer by ourselves; then, if the client is still sending, read and drop its body (bounded)."""
        start, body = _json_error_messages(status, code, message, request_id, [*extra, (b"connection", b"close")])
        await send(start)
        await send({"type": "http.response.body", "body": body, "more_body": drain})
        if drain:
            await _drain(receive, _DRAIN_LIMIT)
            await send({"type": "http.response.body", "body": b""})


async def _drain(receive, max_bytes: int) -> None:
    """Read and drop the rest of a request body, up to ``max_bytes`` or ``_DRAIN_TIMEOUT_S``.

    The answer is already on the wire. Clients such as httpx send the whole body
    before they read a response; closing on them mid-upload would turn our answer
    into a connection reset (nginx's "lingering close" solves the same problem).
    """
    import anyio

    dropped = 0
    with anyio.move_on_after(_DRAIN_TIMEOUT_S):
        while dropped <= max_bytes:
            message = await receive()
            if message["type"] != "http.request":
                return
            dropped += len(message.get("body", b""))
            if not message.get("more_body", False):
                return


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
        )
    )
    if getattr(args, "share", False):
        threading.Thread(target=_open_share_link, args=(server, host, port, settings), daemon=True).start()
    server.run()
    return 0
