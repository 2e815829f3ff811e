"""The composition root: one server, one port — the REST API (FastAPI) with the Gradio UI mounted at ``/``.

Nothing below imports this module; it is the only place where the REST face
(``serving/``) and the UI face (``ui/``) meet, over one shared
:class:`runs.service.Service`. Request handling, outermost first: metrics,
request ids (``serving/middleware.py``), the upload guard, the throttle of
wrong tokens and logins (``serving/auth_throttle.py``), the API guard
(``serving/guards.py``), the routes
(``serving/api.py``), then the Gradio app, mounted last so it does not swallow
them.

Torch and FunASR are imported only by the service's loader thread, after the
app is built: ``/`` and ``/healthz`` answer within seconds of the start.
"""

from __future__ import annotations

import logging
import threading

from emotion2vec_webui.config import Settings
from emotion2vec_webui.logs import log_to_file
from emotion2vec_webui.runs.catalog.retention import Maintenance, RetentionPolicy
from emotion2vec_webui.runs.inference.service import Service
from emotion2vec_webui.serving.auth_throttle import AuthThrottleMiddleware
from emotion2vec_webui.serving.guards import ApiGuardMiddleware
from emotion2vec_webui.serving.http_protocol import guarded_http_protocol
from emotion2vec_webui.serving.middleware import RequestContextMiddleware
from emotion2vec_webui.serving.upload_guard import UploadGuardMiddleware

log = logging.getLogger(__name__)


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

    from emotion2vec_webui import __version__
    from emotion2vec_webui.serving import api, calibrations, docs_ui, errors, heads, health, metrics, runs_api, stream

    service = service or Service(settings)

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        service.start()  # idempotent; the model loads in the background
        # The run catalog: synced with the folders in the background, then retention (E2V_KEEP_*) hourly.
        upkeep = app.state.catalog_upkeep = Maintenance(settings.output_dir, RetentionPolicy.from_settings(settings))
        upkeep.start()
        try:
            yield
        finally:
            upkeep.stop()
            service.stop()

    app = FastAPI(
        title="emotion2vec-webui",
        version=__version__,
        description=api.API_DESCRIPTION,
        docs_url=None,  # serving/docs_ui.py serves /docs with Swagger UI from the package (no CDN)
        redoc_url=None,
        openapi_url="/openapi.json",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.service = service
    errors.install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(docs_ui.router)
    docs_ui.mount_static(app)  # Swagger UI's script and style, vendored
    app.include_router(api.router)
    app.include_router(runs_api.router)  # runs: list (single and batch), one run, its artifacts
    app.include_router(heads.router)  # trained classifier heads (train, list, delete)
    app.include_router(calibrations.router)  # saved calibrations (list, reliability diagram, delete)
    app.include_router(stream.router)  # /api/v1/stream: live audio over a WebSocket (docs/streaming.md)

    app.add_middleware(ApiGuardMiddleware, settings=settings)
    # Outside the token check and around the UI's /login: wrong credentials, a budget per client (429 beyond).
    app.add_middleware(AuthThrottleMiddleware, settings=settings)
    app.add_middleware(UploadGuardMiddleware, settings=settings)
    app.add_middleware(RequestContextMiddleware)
    # GET /metrics, and the metrics middleware added last: outermost, so it also counts the
    # 401/413/500 answers that the two middleware above give by themselves.
    metrics.install(app, service, settings)
    errors.add_api_catch_all(app)  # after every /api route: unknown /api paths are JSON 404s, not the UI's
    _mount_ui(app, service, settings)
    return app


def _mount_ui(app, service: Service, settings: Settings) -> None:
    from starlette.staticfiles import StaticFiles

    from emotion2vec_webui.ui import app as ui
    from emotion2vec_webui.ui import timeline

    ui.configure_gradio_env(settings)  # before Gradio is imported (the ui package also prepares that import)
    import gradio as gr

    # the timeline's script, styles and vendored uPlot, before Gradio takes every path under "/"
    app.mount(timeline.STATIC_URL, StaticFiles(directory=timeline.STATIC_DIR), name="timeline-static")
    blocks = ui.build_ui(service)
    kwargs = ui.mount_kwargs(settings)
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


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 7860, share: bool = False, ray=None) -> int:
    """``emotion2vec-webui serve``: build the app, start the service, run uvicorn until stopped.

    ``ray``: a :class:`runs.ray_service.RayServeOptions` (``serve --ray``): the same app here, the model on
    Ray Serve replicas (docs/scaling.md).
    """
    import uvicorn

    from emotion2vec_webui.runs.storage import require_output_dir, sweep_stale_temps
    from emotion2vec_webui.serving.stream import WS_MAX_MESSAGE_BYTES

    # An unwritable outputs folder stops the start with one plain line (the CLI prints the
    # StorageError, exit 4), not a traceback from the first run; then temp folders of writers
    # that died (a kill mid-write) are swept.
    require_output_dir(settings.output_dir)
    log_to_file(settings.log_dir)  # rotating JSON lines, 10 MB x 5
    sweep_stale_temps(settings.output_dir)
    from emotion2vec_webui.ui.app import configure_gradio_env

    configure_gradio_env(settings)  # before Gradio is imported: some of its modules read the temp dir at import
    if ray is not None:
        from emotion2vec_webui.runs.inference.ray_service import RemoteService

        service = RemoteService(settings, ray)
    else:
        service = Service(settings)
    app = create_app(settings, service)
    service.start()  # after the UI is built: importing torch would slow the first page
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
            ws_max_size=WS_MAX_MESSAGE_BYTES,  # /api/v1/stream: a larger message closes the socket unread
        )
    )
    if share:
        threading.Thread(target=_open_share_link, args=(server, host, port, settings), daemon=True).start()
    server.run()
    return 0
