"""Liveness and readiness: ``GET /healthz`` (the process lives) and ``GET /readyz`` (model loaded, output folder writable).

Under ``serve --ray`` the model is ready only while at least one replica runs; ``/readyz`` then also tells the
replicas' states (docs/scaling.md).
"""

from __future__ import annotations

import dataclasses
import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from emotion2vec_webui import __version__
from emotion2vec_webui.runs.storage import OutputDirProbe
from emotion2vec_webui.serving.errors import RETRY_AFTER_S
from emotion2vec_webui.serving.schemas import Health, Readiness

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="Liveness: 200 while the process lives")
async def healthz(request: Request) -> Health:
    return Health(version=__version__, uptime_s=round(time.time() - request.app.state.service.started_at, 3))


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="Readiness: 200 once the model is loaded and the output folder writable, else 503 with the reason",
    responses={503: {"model": Readiness, "description": "loading, unavailable, or the output folder full/unwritable"}},
)
async def readyz(request: Request):
    service = request.app.state.service
    status = service.status
    storage = await run_in_threadpool(_storage_probe(request).status)  # cached for a few seconds
    storage_bad = status.state == "ready" and not storage.ok  # the model's state first, then the disk's
    replicas = await run_in_threadpool(_replicas, service)  # serve --ray: read from Serve's controller (cached)
    # none running while some should (--autoscale 0:N scales up from zero on the next request: still ready)
    no_replica = status.state == "ready" and replicas is not None and replicas.running < 1 and replicas.min > 0
    message = storage.message if storage_bad else status.message
    if no_replica and not storage_bad:
        message = (f"No model replica is running ({replicas.status}); Ray Serve is starting new ones. "
                   "/ 没有正在运行的模型副本,Ray Serve 正在启动新的副本。")  # fmt: skip
    body = Readiness(
        ready=status.state == "ready" and storage.ok and not no_replica,
        state="unavailable" if storage_bad or no_replica else status.state,
        message=message,
        model=_model_info(status.info),
        queue_depth=service.queue_depth,
        max_queue=service.settings.max_queue,
        storage={
            "ok": storage.ok,
            "code": storage.code,
            "message": storage.message,
            "free_mb": None if storage.free_bytes is None else round(storage.free_bytes / 1024 / 1024, 1),
        },
        replicas=None if replicas is None else dataclasses.asdict(replicas),
    )
    if body.ready:
        return body
    waiting = status.state == "loading" or no_replica
    headers = {"Retry-After": str(RETRY_AFTER_S["model_unavailable"])} if waiting else {}
    return JSONResponse(body.model_dump(), status_code=503, headers=headers)


def _replicas(service):
    """The model replicas of ``serve --ray`` (:class:`runs.ray_service.ReplicaStatus`); None in one process."""
    return getattr(service, "replicas", None)


def _storage_probe(request: Request) -> OutputDirProbe:
    state = request.app.state
    if getattr(state, "storage_probe", None) is None:
        settings = state.settings
        state.storage_probe = OutputDirProbe(settings.output_dir, int(settings.min_free_mb * 1024 * 1024))
    return state.storage_probe


def _model_info(info) -> dict | None:
    if info is None:
        return None
    return {k: v for k, v in dataclasses.asdict(info).items() if isinstance(v, (str, int, float, bool, type(None)))}


