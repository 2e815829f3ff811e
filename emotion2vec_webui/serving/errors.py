"""REST errors: one table from error code to HTTP status, and the one error shape ``{"error": {"code", "message"}}``.

Every answer under ``/api`` that is not a success leaves through
:func:`error_response`: our own errors, validation errors, Starlette's own
4xx, unknown paths and methods.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.runs.shown_paths import shown_paths
from emotion2vec_webui.serving.schemas import ErrorBody

# One table: error code → HTTP status.
HTTP_STATUS: dict[str, int] = {
    "bad_request": 422,
    "audio_too_short": 422,
    "audio_too_long": 422,
    "audio_nonfinite": 422,
    "audio_empty": 422,
    "audio_too_large_decoded": 422,
    "audio_no_stream": 422,
    "url_forbidden": 403,
    "url_unreachable": 502,
    "url_timeout": 504,
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
    "head_mismatch": 409,
    "head_invalid": 422,
    "run_busy": 409,
    "range_not_satisfiable": 416,
}
RETRY_AFTER_S = {"overloaded": 1, "model_unavailable": 5, "rate_limited": 1}


def responses_for(*codes: str) -> dict:
    """OpenAPI ``responses`` for a route that can fail with ``codes``."""
    out: dict[int, dict] = {}
    for code in codes:
        out.setdefault(HTTP_STATUS[code], {"model": ErrorBody, "description": ""})
        out[HTTP_STATUS[code]]["description"] += (" / " if out[HTTP_STATUS[code]]["description"] else "") + code
    return out


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

    async def on_e2v_error(request: Request, exc: E2VError) -> JSONResponse:
        # files named relative to the folders a client knows, never by absolute server paths (runs/shown_paths.py)
        return error_response(exc.code, shown_paths(exc.message, getattr(request.app.state, "settings", None)))

    async def on_validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response("bad_request", describe_validation(exc.errors()))

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
    416: "range_not_satisfiable",
    429: "rate_limited",
    501: "not_implemented",
    503: "overloaded",
}


def describe_validation(errors) -> str:
    parts = []
    for err in list(errors)[:5]:
        loc = ".".join(str(x) for x in err.get("loc", ()) if x not in ("body", "query", "path"))
        parts.append(f"{loc}: {err.get('msg', 'invalid')}" if loc else str(err.get("msg", "invalid")))
    return "Invalid request: " + "; ".join(parts) + " / 请求无效。" if parts else "Invalid request. / 请求无效。"


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
                f"{request.method[:20]} is not allowed on {path}; use {allow}. / 此路径不支持该请求方法，请使用 {allow}。",
                headers={"Allow": allow},
            )
        return error_response("not_found", f"No such API endpoint: {request.method[:20]} {path} / 没有这个 API 端点。")

    class CatchAll:
        """An ASGI app, not a function: Starlette's Route then matches every method (TRACE, made-up
        ones), so that no request under /api falls through to the UI mount's ``{"detail": …}``."""

        async def __call__(self, scope, receive, send) -> None:
            response = await answer(Request(scope, receive))
            await response(scope, receive, send)

    catch_all = CatchAll()
    app.add_route("/api", catch_all, include_in_schema=False)
    app.add_route("/api/{rest:path}", catch_all, include_in_schema=False)


