"""The REST API's runs routes: runs (list with filters, one, an artifact, rename, delete), batches, stats.

Listings come from the run catalog (:mod:`runs.run_index`, SQLite beside the runs), not a
walk of every folder: a page of 20 out of 100,000 runs answers in milliseconds. The folders stay
the source of truth: a run's detail and its files are read from its folder. Run ids are
untrusted: :mod:`runs.catalog` accepts ``outputs_…`` and ``<batch folder>~outputs_…`` only,
and resolves every path inside the outputs root (no traversal, no symlink out). Split from
``api.py``, which keeps recognize and similarity; :func:`with_links` is shared with recognize.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPBearer
from starlette.concurrency import run_in_threadpool

from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.jobs.calls import read_calls_table
from emotion2vec_webui.runs.catalog import run_query, run_stats
from emotion2vec_webui.runs.catalog.folders import (  # single and batch runs
    batch_folder,
    batch_run_id,
    read_result,
    run_path,
)
from emotion2vec_webui.runs.catalog.retention import delete_batch, delete_run, in_use
from emotion2vec_webui.runs.catalog.run_index import catalog_for
from emotion2vec_webui.runs.report import REPORT_HTML, report_html
from emotion2vec_webui.runs.speaker_names import rename_speakers
from emotion2vec_webui.runs.storage import ARTIFACTS, RUN_FILES
from emotion2vec_webui.serving.conversation_fields import CONVERSATION_MEDIA_TYPES
from emotion2vec_webui.serving.downloads import content_disposition, open_file_response
from emotion2vec_webui.serving.errors import responses_for
from emotion2vec_webui.serving.json_body import json_request_body, read_model
from emotion2vec_webui.serving.runs_schemas import (
    BatchDetail,
    BatchesPage,
    Deleted,
    RunsPage,
    RunSummary,
    Stats,
)
from emotion2vec_webui.serving.schemas import RecognizeResponse, SpeakerNames

_MEDIA_TYPES = {
    "result.json": "application/json",
    "processed_audio.wav": "audio/wav",
    "embedding.npy": "application/octet-stream",
    "run.log": "text/plain; charset=utf-8",
    "frames.csv": "text/csv; charset=utf-8",
    **CONVERSATION_MEDIA_TYPES,  # transcript.srt, transcript.vtt, turns.csv, turns.jsonl (runs/transcripts.py)
    REPORT_HTML: "text/html; charset=utf-8",  # runs/report.py
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


SYNC_WAIT_S = 10.0  # a listing right after the start waits this long at most for the start-up sync


def _index(request: Request):
    return catalog_for(request.app.state.settings.output_dir)


async def _synced_index(request: Request):
    """The catalog, once the start-up sync is done (or after SYNC_WAIT_S: then the answer says ``indexing``)."""
    upkeep = getattr(request.app.state, "catalog_upkeep", None)
    if upkeep is not None and not upkeep.synced.is_set():
        await run_in_threadpool(upkeep.synced.wait, SYNC_WAIT_S)
    return _index(request)


def _indexing(request: Request) -> bool:
    """Whether the catalog is still being built (the start-up sync, or a rebuild): a listing may be short."""
    upkeep = getattr(request.app.state, "catalog_upkeep", None)
    return _index(request).syncing or (upkeep is not None and not upkeep.synced.is_set())


class _Filters:
    """The listing filters, shared by ``GET /runs`` and ``GET /stats`` (checked by ``run_query.make_filter``)."""

    def __init__(
        self,
        q: str | None = Query(None, max_length=200, description="part of the file name, any case"),
        emotion: str | None = Query(None, max_length=200, description="top emotion: a key, or several comma-separated"),
        min_confidence: float | None = Query(None, ge=0, le=1, description="top emotion's confidence at least this"),
        since: str | None = Query(None, alias="from", max_length=40, description="from this date or ISO 8601 time"),
        until: str | None = Query(None, alias="to", max_length=40, description="through this date, or before this time"),
        batch: str | None = Query(None, max_length=100, description="only the runs of this batch (its folder name)"),
        head_label: str | None = Query(None, max_length=100, description="a trained head's top label"),
        speaker: str | None = Query(None, max_length=100, description="a conversation speaker's id or name"),
        kind: str | None = Query(None, max_length=20, description="single | batch | live | stream | conversation"),
    ) -> None:
        self.filter = run_query.make_filter(q, emotion, min_confidence, since, until, batch, head_label, speaker, kind)


def _summary(request: Request, row: dict) -> RunSummary:
    fields = {k: row.get(k) for k in RunSummary.model_fields if k != "url"}
    return RunSummary(**fields, url=str(request.url_for("run_detail", run_id=row["run_id"])))


@router.get(
    "/runs",
    summary="Past runs, newest first: search, filters, cursor pages",
    response_model=RunsPage,
    responses=responses_for("bad_request", "unauthorized"),
)
async def runs(
    request: Request,
    limit: int = Query(20, ge=1, le=200, description="runs per page"),
    offset: int = Query(0, ge=0, le=1_000_000, description="runs to skip (ignored with cursor; prefer cursor)"),
    cursor: str | None = Query(None, max_length=600, description="next_cursor of the previous page"),
    filters: _Filters = Depends(),
) -> RunsPage:
    page = await run_in_threadpool(run_query.list_runs, await _synced_index(request), filters.filter, limit, cursor, offset)
    return RunsPage(
        runs=[_summary(request, row) for row in page.runs], total=page.total, limit=limit,
        offset=0 if cursor else offset, next_cursor=page.next_cursor, indexing=_indexing(request),
    )  # fmt: skip


@router.get("/stats", summary="Emotion counts: in all, by day, by batch, by speaker", response_model=Stats,
            responses=responses_for("bad_request", "unauthorized"))  # fmt: skip
async def stats(request: Request, filters: _Filters = Depends()):
    counts = await run_in_threadpool(run_stats.stats, await _synced_index(request), filters.filter)
    return {**counts, "indexing": _indexing(request)}


def _batch_summary(request: Request, row: dict) -> dict:
    return {**row, "url": str(request.url_for("batch_detail", batch_id=row["batch_id"]))}


@router.get("/batches", summary="Batches, newest first", response_model=BatchesPage,
            responses=responses_for("bad_request", "unauthorized"))  # fmt: skip
async def batches(
    request: Request,
    limit: int = Query(20, ge=1, le=200, description="batches per page"),
    cursor: str | None = Query(None, max_length=600, description="next_cursor of the previous page"),
    q: str | None = Query(None, max_length=200, description="part of the batch id or of its input"),
):
    page = await run_in_threadpool(run_stats.list_batches, await _synced_index(request), limit, cursor, q)
    return {**page, "batches": [_batch_summary(request, b) for b in page["batches"]]}


@router.get(
    "/batches/{batch_id}",
    name="batch_detail",
    summary="One batch: summary, metrics and confusion matrix",
    response_model=BatchDetail,
    responses=responses_for("not_found", "unauthorized"),
)
async def batch_detail(request: Request, batch_id: str):
    root = request.app.state.settings.output_dir
    detail = None
    if await run_in_threadpool(batch_folder, root, batch_id) is not None:
        detail = await run_in_threadpool(run_stats.batch_detail, await _synced_index(request), batch_id)
    if detail is None:
        raise E2VError("not_found", "No such batch. / 没有这个批量。")
    runs_url = str(request.url_for("runs").include_query_params(batch=batch_id))
    return {**_batch_summary(request, detail), "runs": detail["summary"]["runs"], "runs_url": runs_url}


@router.get(
    "/batches/{batch_id}/calls",
    name="batch_calls",
    summary="A conversation batch's calls ranked by escalation, and aggregates per speaker label (calls.json)",
    responses=responses_for("not_found", "unauthorized"),
)
async def batch_calls(request: Request, batch_id: str):
    folder = await run_in_threadpool(batch_folder, request.app.state.settings.output_dir, batch_id)
    if folder is None:
        raise E2VError("not_found", "No such batch. / 没有这个批量。")
    table = await run_in_threadpool(read_calls_table, folder)
    for call in table["calls"]:
        run_id = batch_run_id(batch_id, Path(call["run_folder"]).name)
        call["run_id"] = run_id
        call["report_url"] = str(request.url_for("run_report", run_id=run_id))
    return JSONResponse({"batch_id": batch_id, **table})


@router.delete(
    "/batches/{batch_id}",
    summary="Delete a batch: its folder, every run in it, its catalog rows",
    response_model=Deleted,
    responses=responses_for("not_found", "run_busy", "unauthorized"),
)
async def remove_batch(request: Request, batch_id: str):
    count = await run_in_threadpool(delete_batch, request.app.state.settings.output_dir, batch_id)
    return {"deleted": batch_id, "runs": count}


@router.get(
    "/runs/{run_id}",
    name="run_detail",
    summary="One run: its result.json plus file URLs",
    response_model=RecognizeResponse,
    responses=responses_for("not_found", "unauthorized"),
)
async def run_detail(request: Request, run_id: str):
    root = request.app.state.settings.output_dir
    with in_use(await run_in_threadpool(run_path, root, run_id)):  # a deletion meanwhile answers run_busy
        result = await run_in_threadpool(read_result, root, run_id)
        if result is None:
            raise E2VError("not_found", "No such run. / 没有这个运行。")
        return JSONResponse(await run_in_threadpool(with_links, request, result, run_id))


@router.delete(
    "/runs/{run_id}",
    summary="Delete a run: its folder and its catalog rows",
    response_model=Deleted,
    responses=responses_for("not_found", "run_busy", "unauthorized"),
)
async def remove_run(request: Request, run_id: str):
    await run_in_threadpool(delete_run, request.app.state.settings.output_dir, run_id)
    return {"deleted": run_id, "runs": 1}


@router.patch(
    "/runs/{run_id}/speakers",
    name="rename_speakers",
    summary="Rename a conversation run's speakers (result.json labels, transcript.srt/.vtt, turns.csv)",
    response_model=RecognizeResponse,
    responses=responses_for("not_found", "bad_request", "file_too_large", "unauthorized"),
    openapi_extra=json_request_body(SpeakerNames),
)
async def rename_run_speakers(request: Request, run_id: str):
    body = await read_model(request, SpeakerNames)  # bounded, depth-limited, no lone surrogates (json_body.py)
    folder = await run_in_threadpool(run_path, request.app.state.settings.output_dir, run_id)
    if folder is None:
        raise E2VError("not_found", "No such run. / 没有这个运行。")
    with in_use(folder):  # a deletion (or retention) leaves the run alone while it is rewritten
        result = await run_in_threadpool(rename_speakers, folder, body.names)
    return JSONResponse(await run_in_threadpool(with_links, request, result, run_id))


REPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"  # report.html: no script, nothing fetched


@router.get(
    "/runs/{run_id}/report.html",
    name="run_report",
    summary="The run's self-contained HTML report (summary, arc, lanes, transcript, settings); made from result.json "
    "when the run folder has none",
    responses={200: {"content": {"text/html": {}}}, **responses_for("not_found", "unauthorized")},
)
async def run_report(request: Request, run_id: str):
    root = request.app.state.settings.output_dir
    folder = await run_in_threadpool(run_path, root, run_id)
    if folder is None:
        raise E2VError("not_found", "No such run. / 没有这个运行。")
    with in_use(folder):
        stored = await run_in_threadpool(run_path, root, run_id, REPORT_HTML)
        if stored is not None:  # written by recognize --report (kept up to date by a speaker rename)
            response = await open_file_response(request, stored, _MEDIA_TYPES[REPORT_HTML], f"{run_id}_{REPORT_HTML}")
        else:
            result = await run_in_threadpool(read_result, root, run_id)
            if result is None:
                raise E2VError("not_found", "No such run. / 没有这个运行。")
            html = await run_in_threadpool(report_html, result)
            response = Response(html, media_type=_MEDIA_TYPES[REPORT_HTML],
                                headers={"content-disposition": content_disposition(f"{run_id}_{REPORT_HTML}")})  # fmt: skip
    response.headers["content-security-policy"] = REPORT_CSP
    return response


@router.get(
    "/runs/{run_id}/{artifact}",
    name="run_artifact",
    summary="Download one artifact: result.json, processed_audio.wav, embedding.npy, frames.csv, run.log, "
    "transcript.srt/.vtt, turns.csv, turns.jsonl",
    responses={200: {"content": {t: {} for t in sorted(set(_MEDIA_TYPES.values()))}},
               **responses_for("not_found", "range_not_satisfiable")},  # fmt: skip
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
