"""REST for saved calibrations (``emotion2vec-webui calibrate``; docs/calibration.md): list, diagram, delete.

* ``GET /api/v1/calibrations`` — every readable calibration: name, target (``nine`` or a head), temperature,
  whether a per-class bias is kept, held-out ECE before and after, clips, created.
* ``GET /api/v1/calibrations/{name}/reliability.png`` — its reliability diagram.
* ``DELETE /api/v1/calibrations/{name}``.

Use one with ``"calibration": "NAME"`` (and ``"min_confidence"``) on ``POST /api/v1/recognize``. Fitting one
is the CLI's ``calibrate`` or the Train tab. Names are checked (options.check_calibration_name) before any path
is built from them.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from fastapi.security import HTTPBearer

from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.runs.stores.calibration_store import (
    DIAGRAM,
    calibration_dir,
    delete_calibration,
    list_calibrations,
)
from emotion2vec_webui.serving.errors import responses_for

_bearer = HTTPBearer(auto_error=False, description="Needed when the server sets E2V_API_TOKEN.")
router = APIRouter(prefix="/api/v1", tags=["calibrations"], dependencies=[Depends(_bearer)])
MAX_DIAGRAM_BYTES = 4 << 20


@router.get("/calibrations", summary="Saved calibrations", responses=responses_for("unauthorized"))
async def calibrations(request: Request):
    found = await run_in_threadpool(list_calibrations, request.app.state.settings.heads_dir)
    return {"calibrations": found}


def _diagram(heads_dir, name: str) -> bytes:
    path = calibration_dir(heads_dir, name) / DIAGRAM  # bad_request for a name that is not one
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_DIAGRAM_BYTES + 1)
    except OSError:
        data = b""
    if not data or len(data) > MAX_DIAGRAM_BYTES:
        raise E2VError(
            "not_found", f"No reliability diagram for calibration {name!r}. / 没有校准 {name!r} 的可靠性图。"
        )
    return data


@router.get(
    "/calibrations/{name}/reliability.png",
    summary="A calibration's reliability diagram",
    responses=responses_for("not_found", "bad_request"),
)
async def diagram(request: Request, name: str):
    data = await run_in_threadpool(_diagram, request.app.state.settings.heads_dir, name)
    return Response(data, media_type="image/png")


@router.delete(
    "/calibrations/{name}", summary="Delete a calibration", responses=responses_for("not_found", "bad_request")
)
async def delete(request: Request, name: str):
    await run_in_threadpool(delete_calibration, request.app.state.settings.heads_dir, name)
    return {"deleted": name}
