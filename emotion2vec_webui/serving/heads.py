"""REST for trained classifier heads: train one (a job with progress), list them, delete one.

* ``POST /api/v1/heads`` — JSON ``{"name", "data_path", …}``: train on a labelled set inside
  ``E2V_INPUT_DIRS`` (a folder per label, a CSV ``path,label``, RAVDESS/CREMA-D names); answers 202
  with the job. ``GET /api/v1/heads/jobs/{id}`` — the job's state, progress and, when done, the report.
* ``GET /api/v1/heads`` — every head with its labels, backbone and headline figures, and whether it fits
  the loaded model; a folder that is not a valid head is left out and named under ``problems`` (never a
  500: one broken folder must not hide the others). ``DELETE /api/v1/heads/{name}``.

Use a head with ``"head": "NAME"`` on ``POST /api/v1/recognize``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBearer
from pydantic import BaseModel, Field, ValidationError

from emotion2vec_webui.engine.heads import check_name
from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.jobs.train_head import CLASSIFIERS, TrainOptions
from emotion2vec_webui.jobs.train_jobs import jobs_for, resolve_training_data
from emotion2vec_webui.jobs.train_regression import read_targets
from emotion2vec_webui.runs.stores.head_store import delete_head, engine_hash, scan_heads
from emotion2vec_webui.serving.errors import responses_for
from emotion2vec_webui.serving.json_body import read_json

_bearer = HTTPBearer(auto_error=False, description="Needed when the server sets E2V_API_TOKEN.")
router = APIRouter(prefix="/api/v1", tags=["heads"], dependencies=[Depends(_bearer)])


class TrainHeadJson(BaseModel):
    name: str = Field(description="the head's name (its folder under E2V_HEADS_DIR)")
    data_path: str = Field(description="a labelled folder or CSV inside E2V_INPUT_DIRS")
    classifier: str = Field("auto", description="auto (the better of the two by CV macro F1), logreg or mlp; for a "
                            "targets CSV (a regression head) auto (better mean CCC), ridge or mlp")  # fmt: skip
    folds: int = Field(5, ge=2, le=20)
    holdout: float = Field(0.2, ge=0.0, le=0.5)
    seed: int = 0
    labels_zh: dict[str, str] = Field(default_factory=dict, description="label → Chinese name")
    baseline_map: dict[str, str] = Field(default_factory=dict, description="nine-class emotion → your label")
    overwrite: bool = False
    targets: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        default_factory=list, max_length=64, description="numeric columns of a targets CSV to learn (a regression head)"
    )


def _model(service) -> tuple[str | None, int]:
    """The loaded model's checkpoint hash and feature width; (None, 0) while none is loaded."""
    try:
        engine = service.engine
        return engine_hash(engine), int(engine.info.embedding_dim or 0)
    except E2VError:
        return None, 0


def _scan(service, heads_dir):
    current, width = _model(service)
    found, problems = scan_heads(heads_dir, current, width)
    return current, found, problems


@router.get("/heads", summary="Trained heads", responses=responses_for("unauthorized"))
async def heads(request: Request):
    service, settings = request.app.state.service, request.app.state.settings
    current, found, problems = await run_in_threadpool(_scan, service, settings.heads_dir)
    for h in found:
        h["compatible"] = None if current is None else h["checkpoint_sha256"] == current
    return {"heads": found, "problems": problems, "model_checkpoint_sha256": current}


@router.post(
    "/heads",
    summary="Train a head on a labelled set (a background job)",
    status_code=202,
    responses=responses_for(
        "bad_request", "file_too_large", "forbidden", "unauthorized", "model_unavailable", "overloaded"
    ),
)
async def train(request: Request):
    service, settings = request.app.state.service, request.app.state.settings
    try:
        req = TrainHeadJson.model_validate(await read_json(request))  # bounded, depth-limited (json_body.py)
    except (ValueError, ValidationError) as exc:
        raise E2VError("bad_request", f"Send JSON with 'name' and 'data_path': {str(exc)[:300]} "
                                      "/ 请发送带 'name' 和 'data_path' 的 JSON。") from None  # fmt: skip
    name = check_name(req.name)
    if req.classifier not in CLASSIFIERS:
        raise E2VError("bad_request", f"classifier must be one of {', '.join(CLASSIFIERS)}. "
                                      f"/ classifier 必须是 {', '.join(CLASSIFIERS)} 之一。")  # fmt: skip
    # The one input-folder policy; every listed file inside E2V_INPUT_DIRS; labels checked.
    data, _items = await run_in_threadpool(resolve_training_data, req.data_path, settings.input_dirs)
    if req.targets:  # the columns are checked now, not when the job starts (jobs/train_regression.py)
        await run_in_threadpool(read_targets, data, tuple(req.targets))
    options = TrainOptions(
        classifier=req.classifier,
        folds=req.folds,
        holdout=req.holdout,
        seed=req.seed,
        labels_zh=req.labels_zh,
        baseline_map=req.baseline_map,
        overwrite=req.overwrite,
        targets=tuple(req.targets),
        command=f"POST /api/v1/heads {req.model_dump_json()}",
    )
    job = jobs_for(service).start(str(data), name, options)
    return JSONResponse(job.as_dict(), status_code=202)


@router.get("/heads/jobs/{job_id}", summary="A training job's state", responses=responses_for("not_found"))
async def job_status(request: Request, job_id: str):
    return jobs_for(request.app.state.service).get(job_id).as_dict()


@router.delete("/heads/{name}", summary="Delete a trained head", responses=responses_for("not_found", "bad_request"))
async def delete(request: Request, name: str):
    await run_in_threadpool(delete_head, request.app.state.settings.heads_dir, name)
    return {"deleted": name}
