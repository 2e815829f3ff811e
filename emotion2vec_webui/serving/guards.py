"""What a client may send, and how slowly: the server's HTTP guards.

* :class:`ApiGuardMiddleware` (``/api/*``, ``/metrics``): the bearer token,
  the upload cap while the body streams in, and the body timeouts.
* :class:`~.upload_guard.UploadGuardMiddleware` (Gradio's ``/gradio_api/upload``,
  in ``upload_guard.py``): a cap per request, a token bucket per client, and a
  free-space floor under Gradio's temp folder.
* :func:`~.http_protocol.guarded_http_protocol` (``http_protocol.py``): uvicorn's
  HTTP protocol with a header timeout and a ``400`` for a client that
  half-closes mid-body.

Why timeouts at all: a request that holds a resource (an admission slot,
a temp file, a connection) while its client sends nothing lets a few idle
sockets block everyone. The API reads the body *before* taking an admission
slot (see ``api.recognize``), and :class:`BodyWatch` bounds that read: after
``E2V_BODY_TIMEOUT_S`` (10 s) without a byte, or once the body averages less
than ``E2V_BODY_MIN_RATE_KB`` (8 KB/s) after that much waiting, the request is
answered ``408 request_timeout`` and the connection closed. 10 s is long
next to a loopback or LAN upload (a 100 MB file at 8 KB/s minimum would be
refused, at 1 MB/s it takes 100 s and passes) and short enough that stalled
sockets cannot pile up.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
import time

from emotion2vec_webui.config import Settings

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"
# Paths behind the token (when E2V_API_TOKEN is set). /healthz and /readyz stay open for orchestrators.
PROTECTED_PREFIXES = ("/api/", "/metrics")
# Bytes allowed for a request body beyond the file(s): multipart boundaries, form fields, JSON keys.
BODY_OVERHEAD = 64 * 1024
# After answering early (401, 413, 503 …) we keep reading and dropping the body, at most this much
# and this long, so that a client still busy sending it gets to read the answer (see _drain).
_DRAIN_LIMIT = 64 * 1024 * 1024
_DRAIN_TIMEOUT_S = 10.0

_MB = 1024 * 1024
TIMEOUT_MESSAGE = "The request body arrived too slowly or stalled; send it again. / 请求体上传过慢或中断，请重新发送。"


def json_error_messages(status: int, code: str, message: str, request_id: str | None, extra_headers=()):
    """The ASGI start message and body of an error response, for middleware that answers by itself."""
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *extra_headers,
    ]
    if request_id:
        headers.append((REQUEST_ID_HEADER.lower().encode(), request_id.encode()))
    return {"type": "http.response.start", "status": status, "headers": headers}, body


async def answer_error(send, receive, status, code, message, request_id, extra=(), drain=False) -> None:
    """Answer by ourselves with ``Connection: close``; then, if the client is still sending, drain (bounded)."""
    start, body = json_error_messages(status, code, message, request_id, [*extra, (b"connection", b"close")])
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


def header_value(scope, name: bytes) -> bytes:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value
    return b""


def declared_length(scope) -> int | None:
    """The request's ``Content-Length``, or None when absent or not a number."""
    raw = header_value(scope, b"content-length")
    try:
        return int(raw) if raw else None
    except ValueError:
        return None


def bearer_matches(scope, token: str) -> bool:
    """Whether the request's ``Authorization`` is ``Bearer <token>`` (compared in constant time)."""
    scheme, _, given = header_value(scope, b"authorization").decode("latin-1").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def expects_body(scope) -> bool:
    """Whether the request announces a body (a non-zero Content-Length, or chunked)."""
    return bool(declared_length(scope)) or b"chunked" in header_value(scope, b"transfer-encoding").lower()


class BodyWatch:
    """An ASGI ``receive`` that bounds one request body: a byte cap, an idle timeout, a minimum rate.

    The app reads through it as through ``receive``. When the body passes
    ``limit`` bytes or stalls, :attr:`failure` says why (``file_too_large`` or
    ``request_timeout``) and the app is told the client went away (after
    ``poison``, when given: bytes that make a multipart parser fail, so that
    it deletes its temp files). Only time spent waiting inside ``receive``
    counts towards the rate, so an app that is slow to read is not blamed on
    its client.

    Args:
        receive: the server's ``receive``.
        limit: most body bytes accepted.
        idle_s: longest wait for the next chunk (0: none).
        min_rate: bytes per second the body must average once ``idle_s`` of waiting has passed (0: none).
        expected: whether a body is announced at all (else reads are passed through untimed).
        poison: bytes handed to the app once, before the simulated disconnect.
    """

    def __init__(
        self, receive, limit: int, idle_s: float, min_rate: float, expected: bool, poison: bytes | None = None
    ) -> None:
        self._receive = receive
        self.limit = limit
        self.idle_s = idle_s
        self.min_rate = min_rate
        self.done = not expected
        self.received = 0
        self.waited = 0.0
        self.started = False
        self.failure: str | None = None
        self._poison = poison

    def _timeout(self) -> float | None:
        timeout = self.idle_s if self.idle_s > 0 else math.inf
        if self.min_rate > 0 and self.idle_s > 0:
            timeout = min(timeout, max(0.0, self.idle_s + self.received / self.min_rate - self.waited))
        return None if math.isinf(timeout) else timeout

    def _fail(self, code: str) -> dict:
        self.failure = code
        return self._gone()

    def _gone(self) -> dict:
        if self._poison is not None:
            poison, self._poison = self._poison, None
            return {"type": "http.request", "body": poison, "more_body": True}
        return {"type": "http.disconnect"}

    async def __call__(self) -> dict:
        if self.failure:
            return self._gone()
        if self.done:  # after the body: the app waits for a disconnect, as long as it likes
            return await self._receive()
        self.started = True
        began = time.monotonic()
        try:
            message = await asyncio.wait_for(self._receive(), self._timeout())
        except asyncio.TimeoutError:
            log.info("request body stalled after %d bytes; answering 408", self.received)
            return self._fail("request_timeout")
        finally:
            self.waited += time.monotonic() - began
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            self.done = not message.get("more_body", False)
            if self.received > self.limit:
                return self._fail("file_too_large")
        return message


class _BodyGuard:
    """Runs an app with its request body read through a :class:`BodyWatch`; answers the watch's failures."""

    def __init__(self, app, settings: Settings) -> None:
        self.app = app
        self.body_timeout_s = settings.body_timeout_s
        self.min_rate = settings.body_min_rate_kb * 1024

    def too_large_message(self, scope) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    async def run_watched(self, scope, receive, send, limit: int, poison: bytes | None = None) -> BodyWatch:
        """Call the app; answer ``413 file_too_large`` or ``408 request_timeout`` when the watch fails."""
        request_id = scope.get("state", {}).get("request_id")
        # A client waiting for "100 Continue" sends no body until we read: then there is nothing to drain.
        expects_continue = b"100-continue" in header_value(scope, b"expect").lower()
        watch = BodyWatch(receive, limit, self.body_timeout_s, self.min_rate, expects_body(scope), poison)
        answered = False

        async def fail() -> None:
            nonlocal answered
            if answered:
                return
            answered = True
            if watch.failure == "request_timeout":  # nothing more is coming: close at once
                await answer_error(send, receive, 408, "request_timeout", TIMEOUT_MESSAGE, request_id)
            else:
                await answer_error(
                    send, receive, 413, "file_too_large", self.too_large_message(scope), request_id, drain=True
                )

        async def guarded_send(message) -> None:
            if watch.failure:
                await fail()
                return
            body_done = watch.done or (expects_continue and not watch.started)
            if message["type"] == "http.response.start" and not body_done:
                # Answered before the body was read (401/413/503 …): this connection cannot be reused.
                message = {**message, "headers": [*message.get("headers", ()), (b"connection", b"close")]}
            elif message["type"] == "http.response.body" and not message.get("more_body", False) and not body_done:
                await send({**message, "more_body": True})
                await _drain(receive, limit)
                message = {"type": "http.response.body", "body": b""}
            await send(message)

        try:
            await self.app(scope, watch, guarded_send)
        except Exception:
            if not watch.failure:
                raise
            # The app stopped on the disconnect we simulated (e.g. Starlette's ClientDisconnect).
        if watch.failure:
            await fail()
        return watch


class ApiGuardMiddleware(_BodyGuard):
    """Bearer token, streaming body cap and body timeouts for the API paths.

    Args:
        app: the inner ASGI app.
        settings: token (``api_token``), upload cap (``max_upload_bytes``), body timeouts.
    """

    def __init__(self, app, settings: Settings) -> None:
        super().__init__(app, settings)
        self.token = settings.api_token
        self.max_upload = settings.max_upload_bytes

    def body_limit(self, scope) -> int:
        """Largest body accepted on this path: two files for similarity, base64 inflation for JSON."""
        files = 2 if scope["path"].rstrip("/").endswith("/similarity") else 1
        per_file = self.max_upload
        if b"json" in header_value(scope, b"content-type").lower():
            # base64 is 4/3 of the bytes; line breaks every 76 characters (as `base64` prints them),
            # escaped in JSON as "\\r\\n", add up to 4/76 more
            per_file = self.max_upload * 4 // 3 * 80 // 76 + 8
        return files * per_file + BODY_OVERHEAD

    def too_large_message(self, scope) -> str:
        return (
            f"The request body exceeds the upload limit of {self.max_upload / _MB:g} MB (E2V_MAX_UPLOAD_MB). / "
            f"请求体超过上传上限 {self.max_upload / _MB:g} MB。"
        )

    def authorized(self, scope) -> bool:
        return not self.token or bearer_matches(scope, self.token)

    async def __call__(self, scope, receive, send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not path.startswith(PROTECTED_PREFIXES) and path != "/api":
            await self.app(scope, receive, send)
            return
        request_id = scope.get("state", {}).get("request_id")
        declared = declared_length(scope)
        expects_continue = b"100-continue" in header_value(scope, b"expect").lower()
        has_body = expects_body(scope) and not expects_continue
        limit = self.body_limit(scope)

        if not self.authorized(scope):
            message = "A valid API token is required: send 'Authorization: Bearer <E2V_API_TOKEN>'."
            extra = [(b"www-authenticate", b"Bearer")]
            await answer_error(send, receive, 401, "unauthorized", message, request_id, extra, drain=has_body)
            return
        if declared is not None and declared > limit:
            await answer_error(
                send, receive, 413, "file_too_large", self.too_large_message(scope), request_id, drain=has_body
            )
            return
        await self.run_watched(scope, receive, send, limit)
