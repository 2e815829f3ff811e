"""The REST API's runs routes: ``GET /api/v1/runs`` (single and batch runs), one run, one artifact, renames.

Run ids are untrusted: :mod:`runs.catalog` accepts ``outputs_…`` and
``<batch folder>~outputs_…`` only, and resolves every path inside the
outputs root (no traversal, no symlink out). Split from ``api.py``, which
keeps recognize and similarity; :func:`with_links` is shared with recognize.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBearer
from starlette.concurrency import run_in_threadpool

from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.runs.catalog import list_runs, read_result, run_path  # single and batch runs
from emotion2vec_webui.runs.speaker_names import rename_speakers
from emotion2vec_webui.runs.storage import ARTIFACTS, RUN_FILES
from emotion2vec_webui.serving.conversation_fields import CONVERSATION_MEDIA_TYPES
from emotion2vec_webui.serving.downloads import open_file_response
from emotion2vec_webui.serving.errors import responses_for
from emotion2vec_webui.serving.json_body import json_request_body, read_model
from emotion2vec_webui.serving.schemas import RecognizeResponse, RunsPage, RunSummary, SpeakerNames

_MEDIA_TYPES = {
    "result.json": "application/json",
    "processed_audio.wav": "audio/wav",
    "embedding.npy": "application/octet-stream",
    "run.log": "text/plain; charset=utf-8",
    "frames.csv": "text/csv; charset=utf-8",
    **CONVERSATION_MEDIA_TYPES,  # transcript.srt, transcript.vtt, turns.csv (runs/transcripts.py)
}

# Documents the token in OpenAPI; ApiGuardMiddleware enforces it before the body is read.
_bearer = HTTPBearer(auto_error=False, description="Needed when the server sets E2V_API_TOKEN.")
router = APIRouter(prefix="/api/v1", tags=["api"], dependencies=[Depends(_bearer)])


def with_links(request: Request, result: dict, run_id: str) -> dict:
    """``result`` plus ``run_id`` and ``files`` (the URL of each artifact the run folder holds)."""
    result["run_id"] = run_id
    folder = run_path(request.app.state.settings.output_dir, run_id)
    files = {}
    for name in RUN_FILES:
        if folder is not None and (folder / name).is_file():
            files[name] = str(request.url_for("run_artifact", run_id=run_id, artifact=name))
    result["files"] = files
    return result


@router.get("/runs", summary="Past runs, newest first", response_model=RunsPage, responses=responses_for("unauthorized"))
async def runs(
    request: Request,
    limit: int = Query(20, ge=1, le=200, description="runs per page"),
    offset: int = Query(0, ge=0, description="runs to skip"),
    batch: str | None = Query(None, max_length=100, description="only the runs of this batch (its folder name)"),
) -> RunsPage:
    root = request.app.state.settings.output_dir
    folders = await run_in_threadpool(list_runs, root, None, batch or None)
    page = folders[offset : offset + limit]
    summaries = []
    for folder in page:
        result = await run_in_threadpool(read_result, root, folder.run_id) or {}
        audio = result.get("audio") or {}
        summaries.append(
            RunSummary(
                run_id=folder.run_id,
                batch=folder.batch,
                timestamp=result.get("timestamp"),
                emotion=result.get("emotion"),
                confidence=result.get("confidence"),
                granularity=result.get("granularity"),
                source_name=audio.get("source_name"),
                duration_s=audio.get("duration_s"),
                url=str(request.url_for("run_detail", run_id=folder.run_id)),
            )
        )
    return RunsPage(runs=summaries, total=len(folders), limit=limit, offset=offset)


@router.get(
    "/runs/{run_id}",
    name="run_detail",
    summary="One run: its result.json plus file URLs",
    response_model=RecognizeResponse,
    responses=responses_for("not_found", "unauthorized"),
)
async def run_detail(request: Request, run_id: str):
    result = await run_in_threadpool(read_result, request.app.state.settings.output_dir, run_id)
    if result is None:
        raise E2VError("not_found", "No such run. / 没有这个运行。")
    return JSONResponse(await run_in_threadpool(with_links, request, result, run_id))


@router.patch(
    "/runs/{run_id}/speakers",
    name="rename_speakers",
    summary="Rename a conversation run's speakers (result.json labels, transcript.srt/.vtt, turns.csv)",
    response_model=RecognizeResponse,
    responses=responses_for("not_found", "bad_request", "unauthorized"),
    openapi_extra=json_request_body(SpeakerNames),
)
async def rename_run_speakers(request: Request, run_id: str):
    body = await read_model(request, SpeakerNames)  # bounded, depth-limited, no lone surrogates (json_body.py)
    folder = await run_in_threadpool(run_path, request.app.state.settings.output_dir, run_id)
    if folder is None:
        raise E2VError("not_found", "No such run. / 没有这个运行。")
    result = await run_in_threadpool(rename_speakers, folder, body.names)
    return JSONResponse(await run_in_threadpool(with_links, request, result, run_id))


@router.get(
    "/runs/{run_id}/{artifact}",
    name="run_artifact",
    summary="Download one artifact: result.json, processed_audio.wav, embedding.npy, frames.csv or run.log",
    responses={200: {"content": {t: {} for t in sorted(set(_MEDIA_TYPES.values()))}}, **responses_for("not_found")},
)
async def run_artifact(request: Request, run_id: str, artifact: str):
    if artifact not in RUN_FILES:
        raise E2VError("not_found", f"No such artifact; expected one of {', '.join(ARTIFACTS)}. "
                                    f"/ 没有这个文件；应为 {', '.join(ARTIFACTS)} 之一。")  # fmt: skip
    path = await run_in_threadpool(run_path, request.app.state.settings.output_dir, run_id, artifact)
    if path is None:
        raise E2VError("not_found", "No such run or artifact. / 没有这个运行或文件。")
    # One descriptor for the size and the bytes: a rename (PATCH …/speakers) never cuts a download.
    return await open_file_response(request, path, _MEDIA_TYPES[artifact], f"{run_id}_{artifact}")
