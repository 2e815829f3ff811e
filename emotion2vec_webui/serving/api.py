"""The REST API's ``/api/v1`` routes: recognize, similarity, the result.json schema (runs: ``runs_api.py``).

Schemas are in ``schemas.py``, the error table and shape in ``errors.py``,
health in ``health.py``, admission (slots, body reading, waiting) in
``admission.py``.

A thin adapter over :class:`.service.Service`: decoding runs in a thread of the
thread pool, inference on the service's single worker, and the event loop
only waits. Every error leaves as ``{"error": {"code", "message"}}`` with the
status from :data:`HTTP_STATUS`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import logging
from pathlib import PurePosixPath

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBearer
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.options import parse_bool
from emotion2vec_webui.runs.inputs.input_files import read_input_file
from emotion2vec_webui.runs.inputs.url_fetch import AudioUrl, FetchPolicy, check_url
from emotion2vec_webui.runs.recognize import Recognition, RecognizeOptions
from emotion2vec_webui.serving.admission import admission_of, client_key, wait_or_cancel
from emotion2vec_webui.serving.errors import describe_validation, error_response, responses_for
from emotion2vec_webui.serving.json_body import check_form, read_json
from emotion2vec_webui.serving.progress_stream import MEDIA_TYPE, PROGRESS_PARAMETER, progress_response
from emotion2vec_webui.serving.runs_api import with_links
from emotion2vec_webui.serving.schemas import RecognizeJson, RecognizeResponse, SimilarityResponse, form_properties

log = logging.getLogger(__name__)

API_DESCRIPTION = """Speech emotion recognition with Emotion2Vec+ (FunASR).

* `POST /api/v1/recognize` takes a multipart `file`, JSON with `audio_base64`, JSON with
  `audio_path` (inside `E2V_INPUT_DIRS` only) or JSON with `audio_url` (http/https; loopback,
  private and link-local addresses refused unless `E2V_URL_ALLOW` lists them) and answers the
  run's `result.json` plus `run_id` and the artifact URLs. `channels` = `mix` (default), `left`,
  `right` or a channel index from 0; `audio_stream` = which audio stream of a video (from 0).
* Every error is `{"error": {"code": …, "message": …}}`: 413 `file_too_large`,
  415 `audio_undecodable`, 422 `bad_request` / `audio_too_short` / `audio_too_long` /
  `audio_empty` / `audio_nonfinite` / `audio_no_stream`, 403 `url_forbidden`, 502 `url_unreachable`,
  504 `url_timeout`, 401 `unauthorized`, 403 `forbidden`, 404 `not_found`,
  405 `method_not_allowed`, 408 `request_timeout` (a stalled or too slow body),
  429 `rate_limited` (this client holds its share: `E2V_MAX_PER_CLIENT`, `E2V_URL_MAX_PER_CLIENT`),
  503 `model_unavailable` / `overloaded` (with `Retry-After`), 500 `internal_error`;
  507 `storage_full` / 503 `storage_unavailable` when the output folder is full or cannot be written.
* `?progress=true` on `/api/v1/recognize`: `application/x-ndjson`, a `{"progress": …}` line as each window of a
  long recording starts (`window`, `windows`, `eta_s`), then one `{"result": …}` or `{"error": …}` line.
* When `E2V_API_TOKEN` is set, `/api/*` needs `Authorization: Bearer <token>`.
* Every response carries `X-Request-ID`; the id is in the logs and in `result.json`.
"""


# -- the API --------------------------------------------------------------------------
# Documents the token in OpenAPI; ApiGuardMiddleware enforces it before the body is read.
_bearer = HTTPBearer(auto_error=False, description="Needed when the server sets E2V_API_TOKEN.")
router = APIRouter(prefix="/api/v1", tags=["api"], dependencies=[Depends(_bearer)])

_RECOGNIZE_BODY = {
    "parameters": [PROGRESS_PARAMETER],
    "responses": {"200": {"content": {MEDIA_TYPE: {"schema": {"type": "string", "description": "with ?progress=true: "
                                                              "one JSON object per line (docs/api.md)"}}}}},
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary", "description": "an audio file"},
                        **form_properties(),  # the JSON body's option fields, from the one definition (options.py)
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
    responses=responses_for(
        "bad_request",
        "audio_undecodable",
        "file_too_large",
        "unauthorized",
        "forbidden",
        "not_found", "head_mismatch",
        *("url_forbidden", "url_unreachable", "url_timeout", "audio_no_stream"),
        "overloaded", "rate_limited",
        "storage_full",
        "storage_unavailable",
        "internal_error",
    ),
    openapi_extra=_RECOGNIZE_BODY,
)
async def recognize(request: Request):
    admission, client = admission_of(request), client_key(request)
    progress = parse_bool(request.query_params.get("progress"), "progress")  # NDJSON progress (progress_stream.py)
    admission.check(client)  # 503 (429 for a client over its share) at once, before a byte of the body is read
    request = await admission.read_body(request)  # a slow or stalled client holds no slot (408)
    with contextlib.ExitStack() as held:
        held.enter_context(admission.slot(client))
        source, name, options = await _parse(request)
        if not isinstance(source, AudioUrl):
            return await _recognize(request, source, name, options, held if progress else None)
    # An audio_url is downloaded holding a download slot, not this one: a remote server that
    # trickles its bytes must not keep uploads out (issue 26). The request then queues like an upload.
    fetched = await admission.download(source.url, client)
    with contextlib.ExitStack() as held:
        held.enter_context(admission.slot(client))
        return await _recognize(request, fetched, name, options, held if progress else None)


async def _parse(request: Request):
    """The request's input (bytes, or an :class:`AudioUrl` still to download), its name and the options."""
    settings = request.app.state.settings
    content_type = request.headers.get("content-type", "").lower()
    if content_type.startswith("multipart/form-data"):
        return await _from_multipart(request)
    if "json" in content_type:
        return await _from_json(request, settings)
    raise E2VError(
        "bad_request",
        "Send multipart/form-data with a 'file' part, or JSON with 'audio_base64', 'audio_path' or 'audio_url'. "
        "/ 请发送带 'file' 部分的 multipart/form-data，或带 'audio_base64'、'audio_path' 或 'audio_url' 的 JSON。",
    )


async def _recognize(request: Request, source, name: str | None, options: RecognizeOptions,
                     held: contextlib.ExitStack | None = None):  # fmt: skip
    """Decode ``source`` (bytes or a :class:`Fetched` download), queue it for the worker, answer its run.

    With ``held`` (the admission slot; ``?progress=true``) the answer is an NDJSON stream that keeps the slot
    until its last line.
    """
    service, settings = request.app.state.service, request.app.state.settings
    flow = Recognition(settings, options, request_id=request.state.request_id)
    decoded = await run_in_threadpool(flow.decode, source, name)
    del source
    # assembly and writing run on a job thread; only the model calls queue for the worker (runs/inference/scheduler.py)
    submit = functools.partial(service.submit, functools.partial(flow.finish, decoded), client=client_key(request))
    if held is not None:
        return progress_response(request, flow, decoded.duration_s, submit, held.pop_all())
    future = submit()
    outcome = await wait_or_cancel(request, future)
    if outcome is None:  # the client went away; nothing was (or will be) half-written
        return JSONResponse({}, status_code=499)
    return JSONResponse(await run_in_threadpool(with_links, request, dict(outcome.result), outcome.run.run_id))


def _safe_name(raw: str | None, default: str = "upload") -> str:
    """A file name for people: no directories, no control characters, bounded length."""
    name = PurePosixPath((raw or "").replace("\\", "/")).name
    name = "".join(ch for ch in name if ch.isprintable())[:200]
    return name or default


# The form fields of a multipart request: each is a RecognizeOptions field, checked there (options.py).
FORM_FIELDS = ("granularity", "extract_embedding", "segmentation", "channels", "audio_stream", "head",
               "speakers", "num_speakers", "transcribe", "asr_model", "calibration", "min_confidence")  # fmt: skip


def _parse_options(form) -> RecognizeOptions:
    """The options of a multipart form: text as sent (an empty field is the default), checked by RecognizeOptions."""
    values = {}
    for key in FORM_FIELDS:
        value = form.get(key)
        if value is not None and not isinstance(value, str):
            raise E2VError("bad_request", f"{key} must be a text field, not a file. / {key} 必须是文本字段，不能是文件。")
        if value is not None and value.strip():
            values[key] = value
    return RecognizeOptions(**values)


async def _read_upload(form, field: str) -> tuple[bytes, str]:
    upload = form.get(field)
    if upload is None or isinstance(upload, str):
        raise E2VError("bad_request", f"The multipart body needs a file part named {field!r}. "
                                      f"/ multipart 请求体需要名为 {field!r} 的文件部分。")  # fmt: skip
    data = await upload.read()
    return data, _safe_name(upload.filename)


async def _multipart_form(request: Request, files: int):
    from starlette.formparsers import MultiPartException

    try:
        form = await request.form(max_files=files, max_fields=16, max_part_size=64 * 1024)
    except MultiPartException as exc:
        raise E2VError("bad_request", f"Malformed multipart body: {exc.message} / multipart 请求体格式错误。") from None
    except StarletteHTTPException as exc:  # what Starlette raises for a MultiPartException inside an app
        if exc.status_code >= 500:
            raise
        raise E2VError("bad_request", f"Malformed multipart body: {exc.detail} / multipart 请求体格式错误。") from None
    try:
        check_form(form)  # a charset=utf-7 part can decode to a lone surrogate (json_body.py)
    except E2VError:
        await form.close()
        raise
    return form


async def _from_multipart(request: Request):
    form = await _multipart_form(request, files=1)
    try:
        data, name = await _read_upload(form, "file")
        options = _parse_options(form)  # checked here: a bad option answers 422 before any decode (issue 27)
    finally:
        await form.close()
    return data, name, options


async def _from_json(request: Request, settings):
    raw = await read_json(request, max_bytes=None)  # bounded by the upload cap; depth, values, text (json_body.py)
    try:
        req = RecognizeJson.model_validate(raw)
    except ValidationError as exc:
        raise E2VError("bad_request", describe_validation(exc.errors())) from None
    except RecursionError:
        raise E2VError("bad_request", "The JSON body is nested too deeply. / JSON 请求体嵌套过深。") from None
    options = RecognizeOptions(**req.model_dump(include=set(FORM_FIELDS)))
    if sum(x is not None for x in (req.audio_base64, req.audio_path, req.audio_url)) != 1:
        raise E2VError("bad_request", "Give exactly one of 'audio_base64', 'audio_path' and 'audio_url'. "
                       "/ 'audio_base64'、'audio_path'、'audio_url' 三者须且只能给出一个。")  # fmt: skip
    if req.audio_url is not None:
        # Scheme and E2V_URL_FETCH checked now; fetched (address-checked) by recognize() before it takes a slot.
        check_url(req.audio_url, FetchPolicy.from_settings(settings))
        return AudioUrl(req.audio_url), (_safe_name(req.filename) if req.filename else None), options
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
        raise E2VError("bad_request", "audio_base64 is not valid base64. / audio_base64 不是有效的 base64。") from None
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
        raise E2VError("bad_request", "audio_base64 is not valid base64. / audio_base64 不是有效的 base64。") from None


@router.post(
    "/similarity",
    summary="How alike two clips are: embedding cosine, emotion-score similarity, both emotions (kept as a record)",
    response_model=SimilarityResponse,
    responses=responses_for(
        "bad_request", "audio_undecodable", "file_too_large", "overloaded", "rate_limited", "not_implemented"
    ),
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
        return error_response("not_implemented", "Similarity is not available in this build. / 此版本不提供相似度比较。")
    service = request.app.state.service
    admission, client = admission_of(request), client_key(request)
    admission.check(client)  # 503 (429 for a client over its share) at once, before a byte of the body is read
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise E2VError("bad_request", "Send multipart/form-data with file parts 'a' and 'b'. "
                                      "/ 请发送带文件部分 'a' 和 'b' 的 multipart/form-data。")  # fmt: skip
    request = await admission.read_body(request)  # a slow or stalled client holds no slot (408)
    with admission.slot(client):
        form = await _multipart_form(request, files=2)
        try:
            a, a_name = await _read_upload(form, "a")
            b, b_name = await _read_upload(form, "b")
        finally:
            await form.close()
        result = await run_in_threadpool(similarity_from_sources, service, a, a_name, b, b_name)
    return JSONResponse(result)


@router.get(
    "/schema/result",
    summary="The JSON Schema of result.json (draft 2020-12)",
    responses={200: {"content": {"application/schema+json": {}}}},
)
async def result_schema_route() -> JSONResponse:
    from emotion2vec_webui.runs.schema import result_schema

    return JSONResponse(result_schema(), media_type="application/schema+json")
