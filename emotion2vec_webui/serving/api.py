"""The REST API (``/healthz``, ``/readyz``, ``/api/v1/*``): routes, schemas, and the error table.

A thin adapter over :class:`.service.Service`: decoding runs in a thread of the
thread pool, inference on the service's single worker, and the event loop
only waits. Every error leaves as ``{"error": {"code", "message"}}`` with the
status from :data:`HTTP_STATUS`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import contextlib
import functools
import json
import logging
import time
from pathlib import PurePosixPath
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from emotion2vec_webui import __version__
from emotion2vec_webui.errors import E2VError, OverloadedError
from emotion2vec_webui.runs.input_files import read_input_file
from emotion2vec_webui.runs.recognize import Recognition, RecognizeOptions
from emotion2vec_webui.runs.storage import ARTIFACTS, RUN_FILES, OutputDirProbe, list_runs, read_result, run_path

log = logging.getLogger(__name__)

# One table: error code → HTTP status.
HTTP_STATUS: dict[str, int] = {
    "bad_request": 422,
    "audio_too_short": 422,
    "audio_too_long": 422,
    "audio_nonfinite": 422,
    "audio_empty": 422,
    "audio_too_large_decoded": 422,
    "audio_undecodable": 415,
    "file_too_large": 413,
    "request_timeout": 408,
    "rate_limited": 429,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "internal_error": 500,
    "not_implemented": 501,
    "model_unavailable": 503,
    "overloaded": 503,
    "storage_unavailable": 503,
    "storage_full": 507,
}
RETRY_AFTER_S = {"overloaded": 1, "model_unavailable": 5, "rate_limited": 1}
_MEDIA_TYPES = {
    "result.json": "application/json",
    "processed_audio.wav": "audio/wav",
    "embedding.npy": "application/octet-stream",
    "run.log": "text/plain; charset=utf-8",
}

API_DESCRIPTION = """Speech emotion recognition with Emotion2Vec+ (FunASR).

* `POST /api/v1/recognize` takes a multipart `file`, JSON with `audio_base64`, or JSON with
  `audio_path` (inside `E2V_INPUT_DIRS` only) and answers the run's `result.json` plus
  `run_id` and the artifact URLs.
* Every error is `{"error": {"code": …, "message": …}}`: 413 `file_too_large`,
  415 `audio_undecodable`, 422 `bad_request` / `audio_too_short` / `audio_too_long` /
  `audio_empty` / `audio_nonfinite`, 401 `unauthorized`, 403 `forbidden`, 404 `not_found`,
  405 `method_not_allowed`, 408 `request_timeout` (a stalled or too slow body),
  503 `model_unavailable` / `overloaded` (with `Retry-After`), 500 `internal_error`;
  507 `storage_full` / 503 `storage_unavailable` when the output folder is full or cannot be written.
* When `E2V_API_TOKEN` is set, `/api/*` needs `Authorization: Bearer <token>`.
* Every response carries `X-Request-ID`; the id is in the logs and in `result.json`.
"""


# -- schemas (OpenAPI) ------------------------------------------------------------
class ErrorDetail(BaseModel):
    code: str = Field(description="stable machine-readable code", examples=["audio_undecodable"])
    message: str = Field(description="what went wrong and how to fix it")


class ErrorBody(BaseModel):
    error: ErrorDetail


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    version: str
    uptime_s: float


class Readiness(BaseModel):
    ready: bool
    state: str = Field(description="loading, ready or unavailable", examples=["ready"])
    message: str
    model: dict[str, Any] | None = None
    queue_depth: int
    max_queue: int
    storage: dict[str, Any] | None = Field(
        None, description="the output folder: ok, code (storage_full / storage_unavailable), message, free_mb"
    )


class RecognizeJson(BaseModel):
    """JSON body of ``POST /api/v1/recognize``: exactly one of ``audio_base64`` and ``audio_path``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"audio_base64": "UklGRiQAAABXQVZF…", "filename": "clip.wav"}]},
    )
    audio_base64: str | None = Field(None, description="the audio file's bytes, base64 (a data: URL prefix is ok)")
    filename: str | None = Field(None, description="name reported in result.json")
    audio_path: str | None = Field(None, description="a file inside E2V_INPUT_DIRS (refused when unset)")
    granularity: Literal["utterance", "frame"] = "utterance"
    extract_embedding: bool = True
    segmentation: Literal["frames", "vad"] = Field(
        "frames", description="'segments' from runs of frame emotions, or 'vad': one utterance per speech segment"
    )


class RecognizeResponse(BaseModel):
    """The run's result.json, plus ``run_id`` and ``files`` (artifact URLs)."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "emotion": "happy",
                    "emotion_zh": "开心",
                    "confidence": 0.853,
                    "scores": {"angry": 0.01, "happy": 0.853, "neutral": 0.1},
                    "granularity": "utterance",
                    "timestamp": "2026-11-24T13:05:09+08:00",
                    "request_id": "3f2a9c0d1b7e4a55",
                    "run_id": "outputs_20261124_130509",
                    "files": {"result.json": "http://127.0.0.1:7860/api/v1/runs/outputs_20261124_130509/result.json"},
                }
            ]
        },
    )
    emotion: str
    emotion_zh: str
    confidence: float
    scores: dict[str, float]
    granularity: str
    timestamp: str
    request_id: str | None = None
    audio: dict[str, Any]
    model: dict[str, Any]
    embedding: dict[str, Any] | None = None
    frames: dict[str, Any] | None = None
    segments: list[dict[str, Any]] | None = None
    warnings: list[str] = []
    processing_time_s: float
    run_id: str
    files: dict[str, str]


class RunSummary(BaseModel):
    run_id: str
    timestamp: str | None = None
    emotion: str | None = None
    confidence: float | None = None
    granularity: str | None = None
    source_name: str | None = None
    duration_s: float | None = None
    url: str


class RunsPage(BaseModel):
    runs: list[RunSummary]
    total: int
    limit: int
    offset: int


class SimilarityResponse(BaseModel):
    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [{"cosine": 0.93}]})
    cosine: float = Field(description="cosine similarity of the two utterance embeddings, -1…1")


def _errors(*codes: str) -> dict:
    out: dict[int, dict] = {}
    for code in codes:
        out.setdefault(HTTP_STATUS[code], {"model": ErrorBody, "description": ""})
        out[HTTP_STATUS[code]]["description"] += (" / " if out[HTTP_STATUS[code]]["description"] else "") + code
    return out


# -- errors ---------------------------------------------------------------------------
def error_response(code: str, message: str, status: int | None = None, headers: dict | None = None) -> JSONResponse:
    """The one error shape: ``{"error": {"code", "message"}}`` with its status from the table."""
    headers = dict(headers or {})
    if code in RETRY_AFTER_S:
        headers.setdefault("Retry-After", str(RETRY_AFTER_S[code]))
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status or HTTP_STATUS.get(code, 500), headers=headers
    )


def install_error_handlers(app) -> None:
    """Map E2VError, validation errors and Starlette's HTTP errors onto the error shape."""

    async def on_e2v_error(_request: Request, exc: E2VError) -> JSONResponse:
        return error_response(exc.code, exc.message)

    async def on_validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response("bad_request", _describe_validation(exc.errors()))

    async def on_http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Starlette's own 4xx (a malformed multipart body is its 400) take the status of their code,
        # so that one code always has one status (HTTP_STATUS).
        code = _STARLETTE_CODES.get(exc.status_code, "bad_request" if exc.status_code < 500 else "internal_error")
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return error_response(code, message, headers=getattr(exc, "headers", None))

    app.add_exception_handler(E2VError, on_e2v_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)


_STARLETTE_CODES = {
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "file_too_large",
    429: "rate_limited",
    501: "not_implemented",
    503: "overloaded",
}


def _describe_validation(errors) -> str:
    parts = []
    for err in list(errors)[:5]:
        loc = ".".join(str(x) for x in err.get("loc", ()) if x not in ("body", "query", "path"))
        parts.append(f"{loc}: {err.get('msg', 'invalid')}" if loc else str(err.get("msg", "invalid")))
    return "Invalid request: " + "; ".join(parts) if parts else "Invalid request."


_HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def add_api_catch_all(app) -> None:
    """Unknown paths under /api answer a JSON 404 instead of falling through to the UI mount."""

    async def answer(request: Request) -> JSONResponse:
        from starlette.routing import Match, Mount

        scope, path = request.scope, request.scope["path"]
        routes = [
            r
            for r in request.app.router.routes
            if getattr(r, "endpoint", None) is not catch_all and not isinstance(r, Mount)
        ]
        if any(route.matches(scope)[0] is Match.PARTIAL for route in routes):  # the path exists with other methods
            allow = ", ".join(
                m for m in _HTTP_METHODS if any(r.matches({**scope, "method": m})[0] is Match.FULL for r in routes)
            )
            return error_response(
                "method_not_allowed",
                f"{request.method[:20]} is not allowed on {path}; use {allow}.",
                headers={"Allow": allow},
            )
        return error_response("not_found", f"No such API endpoint: {request.method[:20]} {path}")

    class CatchAll:
        """An ASGI app, not a function: Starlette's Route then matches every method (TRACE, made-up
        ones), so that no request under /api falls through to the UI mount's ``{"detail": …}``."""

        async def __call__(self, scope, receive, send) -> None:
            response = await answer(Request(scope, receive))
            await response(scope, receive, send)

    catch_all = CatchAll()
    app.add_route("/api", catch_all, include_in_schema=False)
    app.add_route("/api/{rest:path}", catch_all, include_in_schema=False)


# -- health ---------------------------------------------------------------------------
health_router = APIRouter(tags=["health"])


@health_router.get("/healthz", response_model=Health, summary="Liveness: 200 while the process lives")
async def healthz(request: Request) -> Health:
    return Health(version=__version__, uptime_s=round(time.time() - request.app.state.service.started_at, 3))


@health_router.get(
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
    body = Readiness(
        ready=status.state == "ready" and storage.ok,
        state="unavailable" if storage_bad else status.state,
        message=storage.message if storage_bad else status.message,
        model=_model_info(status.info),
        queue_depth=service.queue_depth,
        max_queue=service.settings.max_queue,
        storage={
            "ok": storage.ok,
            "code": storage.code,
            "message": storage.message,
            "free_mb": None if storage.free_bytes is None else round(storage.free_bytes / 1024 / 1024, 1),
        },
    )
    if body.ready:
        return body
    headers = {"Retry-After": str(RETRY_AFTER_S["model_unavailable"])} if status.state == "loading" else {}
    return JSONResponse(body.model_dump(), status_code=503, headers=headers)


def _storage_probe(request: Request) -> OutputDirProbe:
    state = request.app.state
    if getattr(state, "storage_probe", None) is None:
        settings = state.settings
        state.storage_probe = OutputDirProbe(settings.output_dir, int(settings.min_free_mb * 1024 * 1024))
    return state.storage_probe


def _model_info(info) -> dict | None:
    if info is None:
        return None
    import dataclasses

    return {k: v for k, v in dataclasses.asdict(info).items() if isinstance(v, (str, int, float, bool, type(None)))}


# -- the API --------------------------------------------------------------------------
# Documents the token in OpenAPI; ApiGuardMiddleware enforces it before the body is read.
_bearer = HTTPBearer(auto_error=False, description="Needed when the server sets E2V_API_TOKEN.")
router = APIRouter(prefix="/api/v1", tags=["api"], dependencies=[Depends(_bearer)])

_RECOGNIZE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary", "description": "an audio file"},
                        "granularity": {"type": "string", "enum": ["utterance", "frame"], "default": "utterance"},
                        "extract_embedding": {"type": "boolean", "default": True},
                        "segmentation": {
                            "type": "string",
                            "enum": ["frames", "vad"],
                            "default": "frames",
                            "description": "'vad': split at pauses (silero-vad), one utterance per speech segment",
                        },
                    },
                }
            },
            "application/json": {"schema": RecognizeJson.model_json_schema()},
        },
    }
}


@router.post(
    "/recognize",
    summary="Recognise the emotion in one audio file",
    response_model=RecognizeResponse,
    responses=_errors(
        "bad_request",
        "audio_undecodable",
        "file_too_large",
        "unauthorized",
        "forbidden",
        "not_found",
        "overloaded",
        "storage_full",
        "storage_unavailable",
        "internal_error",
    ),
    openapi_extra=_RECOGNIZE_BODY,
)
async def recognize(request: Request):
    admission = _admission(request)
    admission.check()  # 503 at once, before a byte of the body is read
    request = await admission.read_body(request)  # a slow or stalled client holds no slot (408)
    with admission.slot():
        return await _recognize(request)


async def _recognize(request: Request):
    service, settings = request.app.state.service, request.app.state.settings
    content_type = request.headers.get("content-type", "").lower()
    if content_type.startswith("multipart/form-data"):
        source, name, options = await _from_multipart(request)
    elif "json" in content_type:
        source, name, options = await _from_json(request, settings)
    else:
        raise E2VError(
            "bad_request",
            "Send multipart/form-data with a 'file' part, or application/json with 'audio_base64' or 'audio_path'.",
        )
    flow = Recognition(settings, options, request_id=request.state.request_id)
    decoded = await run_in_threadpool(flow.decode, source, name)
    del source
    future = service.submit(functools.partial(flow.finish, decoded))
    outcome = await _wait_or_cancel(request, future)
    if outcome is None:  # the client went away; nothing was (or will be) half-written
        return JSONResponse({}, status_code=499)
    return JSONResponse(await run_in_threadpool(_with_links, request, dict(outcome.result), outcome.run.run_id))


class Admission:
    """Bounds the recognition requests in flight (decoding, queued or running) and the bodies being read.

    The service's queue bounds waiting jobs; this also bounds the uploads and
    decoded signals held in memory before a job is queued: one running plus
    ``E2V_MAX_QUEUE`` waiting, beyond which a request is answered 503 at once.
    A request takes its slot only once its body is in (:meth:`read_body`): a
    client that sends slowly or not at all holds no slot, and the body
    timeouts of ``guards.BodyWatch`` end it. Bodies still arriving are bounded
    in total bytes (``body_budget``: as many full bodies as there are slots),
    not in number, so stalled connections cost nothing. Only touched from the
    event loop, so plain counters are enough.
    """

    def __init__(self, service) -> None:
        self.service = service
        self.limit = service.settings.max_queue + 1
        self.active = 0
        self.reading = 0  # bytes of request bodies read but not yet admitted
        self.body_budget = self.limit * (2 * service.settings.max_upload_bytes + 64 * 1024)

    def check(self) -> None:
        """Raise ``model_unavailable`` or ``overloaded`` now if a slot could not be had; takes nothing."""
        _ = self.service.engine  # model_unavailable while loading or after a failure
        if self.active >= self.limit or self.service.queue_depth >= self.service.settings.max_queue:
            raise OverloadedError()

    async def read_body(self, request: Request) -> Request:
        """Read the whole body, then return a request that replays it (and passes later messages through).

        The size cap and the timeouts are ApiGuardMiddleware's; past ``body_budget``
        bytes of bodies in flight the request is answered ``503 overloaded``.
        """
        chunks: collections.deque[bytes] = collections.deque()
        held = 0
        try:
            async for chunk in request.stream():
                if self.reading + len(chunk) > self.body_budget:
                    raise OverloadedError()
                self.reading += len(chunk)
                held += len(chunk)
                chunks.append(chunk)
        finally:
            self.reading -= held
        receive = request.receive
        replayed = False

        async def replay():
            # Chunk by chunk, letting go of each: no joined copy of the body.
            nonlocal replayed
            if replayed:
                return await receive()
            body = chunks.popleft() if chunks else b""
            replayed = not chunks
            return {"type": "http.request", "body": body, "more_body": not replayed}

        return Request(request.scope, replay)

    @contextlib.contextmanager
    def slot(self):
        self.check()
        self.active += 1
        try:
            yield
        finally:
            self.active -= 1


def _admission(request: Request) -> Admission:
    state = request.app.state
    if getattr(state, "admission", None) is None:
        state.admission = Admission(state.service)
    return state.admission


async def _wait_or_cancel(request: Request, future):
    """Wait for the worker; if the client disconnects first, cancel the job if it has not started."""
    result_task = asyncio.wrap_future(future)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        done, _ = await asyncio.wait({result_task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        future.cancel()
        raise
    finally:
        watcher.cancel()
    if result_task in done:
        return result_task.result()
    if future.cancel():
        log.info("client went away; dropped its queued job")
    else:
        log.info("client went away while its job ran; the run folder is still written whole")
        result_task.add_done_callback(lambda t: t.cancelled() or t.exception())
    return None


async def _disconnected(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


def _safe_name(raw: str | None, default: str = "upload") -> str:
    """A file name for people: no directories, no control characters, bounded length."""
    name = PurePosixPath((raw or "").replace("\\", "/")).name
    name = "".join(ch for ch in name if ch.isprintable())[:200]
    return name or default


def _parse_bool(value, field: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise E2VError("bad_request", f"{field} must be true or false, not {str(value)[:40]!r}.")


def _parse_options(granularity, extract_embedding, segmentation=None) -> RecognizeOptions:
    granularity = (granularity or "utterance").strip().lower() if isinstance(granularity, str) else "utterance"
    if granularity not in ("utterance", "frame"):
        raise E2VError("bad_request", "granularity must be 'utterance' or 'frame'.")
    segmentation = (segmentation or "frames").strip().lower() if isinstance(segmentation, str) else "frames"
    if segmentation not in ("frames", "vad"):
        raise E2VError("bad_request", "segmentation must be 'frames' or 'vad'.")
    embedding = True if extract_embedding in (None, "") else _parse_bool(extract_embedding, "extract_embedding")
    return RecognizeOptions(granularity, embedding, segmentation)


async def _read_upload(form, field: str) -> tuple[bytes, str]:
    upload = form.get(field)
    if upload is None or isinstance(upload, str):
        raise E2VError("bad_request", f"The multipart body needs a file part named {field!r}.")
    data = await upload.read()
    return data, _safe_name(upload.filename)


async def _multipart_form(request: Request, files: int):
    from starlette.formparsers import MultiPartException

    try:
        return await request.form(max_files=files, max_fields=16, max_part_size=64 * 1024)
    except MultiPartException as exc:
        raise E2VError("bad_request", f"Malformed multipart body: {exc.message}") from None
    except StarletteHTTPException as exc:  # what Starlette raises for a MultiPartException inside an app
        if exc.status_code >= 500:
            raise
        raise E2VError("bad_request", f"Malformed multipart body: {exc.detail}") from None


async def _from_multipart(request: Request):
    form = await _multipart_form(request, files=1)
    try:
        data, name = await _read_upload(form, "file")
        options = _parse_options(
            form.get("granularity"), form.get("extract_embedding"), form.get("segmentation")
        )
    finally:
        await form.close()
    return data, name, options


async def _from_json(request: Request, settings):
    body = await request.body()
    try:
        raw = await run_in_threadpool(json.loads, body)
    except (ValueError, UnicodeDecodeError):
        raise E2VError("bad_request", "The body is not valid JSON.") from None
    except RecursionError:  # e.g. "[" * 100_000
        raise E2VError("bad_request", "The JSON body is nested too deeply.") from None
    del body
    try:
        req = RecognizeJson.model_validate(raw)
    except ValidationError as exc:
        raise E2VError("bad_request", _describe_validation(exc.errors())) from None
    except RecursionError:
        raise E2VError("bad_request", "The JSON body is nested too deeply.") from None
    options = RecognizeOptions(req.granularity, req.extract_embedding, req.segmentation)
    if (req.audio_base64 is None) == (req.audio_path is None):
        raise E2VError("bad_request", "Give exactly one of 'audio_base64' and 'audio_path'.")
    if req.audio_path is not None:
        # Opened by walking from the input folder with O_NOFOLLOW at every step, and read from
        # that descriptor: no check-then-open race (input_files.py).
        data, file_name = await run_in_threadpool(
            read_input_file, req.audio_path, settings.input_dirs, settings.max_upload_bytes
        )
        return data, _safe_name(req.filename, file_name), options
    text = req.audio_base64
    if text.startswith("data:") and "," in text[:200]:
        text = text.split(",", 1)[1]
    data = await run_in_threadpool(decode_base64, text, settings.max_upload_bytes)
    return data, _safe_name(req.filename), options


# What `base64` (76-character lines), MIME and PEM put between the characters; nothing else is skipped.
_BASE64_WHITESPACE = b" \t\n\r\x0b\x0c"


def decode_base64(text: str, max_bytes: int) -> bytes:
    """Strict base64 that tolerates ASCII whitespace (line breaks), capped at ``max_bytes`` decoded.

    Raises:
        E2VError: ``bad_request`` (not base64), ``file_too_large`` (over the cap).
    """
    try:
        raw = text.encode("ascii")
    except UnicodeEncodeError:
        raise E2VError("bad_request", "audio_base64 is not valid base64.") from None
    raw = raw.translate(None, _BASE64_WHITESPACE)  # one copy, the size of the body at most
    if len(raw) * 3 // 4 > max_bytes + 3:
        mb = max_bytes / 1024 / 1024
        raise E2VError(
            "file_too_large",
            f"The decoded audio exceeds the limit of {mb:g} MB (E2V_MAX_UPLOAD_MB). / 解码后的音频超过 {mb:g} MB 上限。",
        )
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise E2VError("bad_request", "audio_base64 is not valid base64.") from None


def _with_links(request: Request, result: dict, run_id: str) -> dict:
    result["run_id"] = run_id
    folder = run_path(request.app.state.settings.output_dir, run_id)
    files = {}
    for name in RUN_FILES:
        if folder is not None and (folder / name).is_file():
            files[name] = str(request.url_for("run_artifact", run_id=run_id, artifact=name))
    result["files"] = files
    return result


@router.get("/runs", summary="Past runs, newest first", response_model=RunsPage, responses=_errors("unauthorized"))
async def runs(
    request: Request,
    limit: int = Query(20, ge=1, le=200, description="runs per page"),
    offset: int = Query(0, ge=0, description="runs to skip"),
) -> RunsPage:
    root = request.app.state.settings.output_dir
    folders = await run_in_threadpool(list_runs, root)
    page = folders[offset : offset + limit]
    summaries = []
    for folder in page:
        result = await run_in_threadpool(read_result, root, folder.run_id) or {}
        audio = result.get("audio") or {}
        summaries.append(
            RunSummary(
                run_id=folder.run_id,
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
    responses=_errors("not_found", "unauthorized"),
)
async def run_detail(request: Request, run_id: str):
    result = await run_in_threadpool(read_result, request.app.state.settings.output_dir, run_id)
    if result is None:
        raise E2VError("not_found", "No such run.")
    return JSONResponse(await run_in_threadpool(_with_links, request, result, run_id))


@router.get(
    "/runs/{run_id}/{artifact}",
    name="run_artifact",
    summary="Download one artifact: result.json, processed_audio.wav, embedding.npy or run.log",
    responses={200: {"content": {t: {} for t in sorted(set(_MEDIA_TYPES.values()))}}, **_errors("not_found")},
)
async def run_artifact(request: Request, run_id: str, artifact: str):
    if artifact not in RUN_FILES:
        raise E2VError("not_found", f"No such artifact; expected one of {', '.join(ARTIFACTS)}.")
    path = await run_in_threadpool(run_path, request.app.state.settings.output_dir, run_id, artifact)
    if path is None:
        raise E2VError("not_found", "No such run or artifact.")
    return FileResponse(path, media_type=_MEDIA_TYPES[artifact], filename=f"{run_id}_{artifact}")


@router.post(
    "/similarity",
    summary="Cosine similarity of two clips' utterance embeddings",
    response_model=SimilarityResponse,
    responses=_errors("bad_request", "audio_undecodable", "file_too_large", "overloaded", "not_implemented"),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["a", "b"],
                        "properties": {
                            "a": {"type": "string", "format": "binary"},
                            "b": {"type": "string", "format": "binary"},
                        },
                    }
                }
            },
        }
    },
)
async def similarity(request: Request):
    try:
        from emotion2vec_webui.runs.similarity import similarity_from_sources
    except ImportError:
        return error_response("not_implemented", "Similarity is not available in this build.")
    service = request.app.state.service
    admission = _admission(request)
    admission.check()  # 503 at once, before a byte of the body is read
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise E2VError("bad_request", "Send multipart/form-data with file parts 'a' and 'b'.")
    request = await admission.read_body(request)  # a slow or stalled client holds no slot (408)
    with admission.slot():
        form = await _multipart_form(request, files=2)
        try:
            a, a_name = await _read_upload(form, "a")
            b, b_name = await _read_upload(form, "b")
        finally:
            await form.close()
        result = await run_in_threadpool(similarity_from_sources, service, a, a_name, b, b_name)
    return JSONResponse(result)
