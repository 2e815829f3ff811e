"""What a client may send, and how slowly: the server's HTTP guards.

* :class:`ApiGuardMiddleware` (``/api/*``, ``/metrics``): the bearer token,
  the upload cap while the body streams in, and the body timeouts.
* :class:`UploadGuardMiddleware` (Gradio's ``/gradio_api/upload``): a cap
  per request (Gradio caps each file, not each request), a token bucket per
  client, and a free-space floor under Gradio's temp folder.
* :func:`guarded_http_protocol`: uvicorn's HTTP protocol with a header
  timeout and a ``400`` for a client that half-closes mid-body.

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
import shutil
import time
from pathlib import Path

from emotion2vec_webui.config import Settings, gradio_temp_dir

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
# Gradio's upload route when the UI is mounted at "/" (gradio.route_utils.API_PREFIX, Gradio 6.31).
GRADIO_UPLOAD_PATH = "/gradio_api/upload"
# Multipart headers of up to 1,000 files (Gradio's max_files) in one upload request.
UPLOAD_OVERHEAD = 1024 * 1024
# Distinct clients whose upload buckets are remembered (full buckets are forgotten first).
_MAX_TRACKED_CLIENTS = 4096
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


def _header(scope, name: bytes) -> bytes:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value
    return b""


def declared_length(scope) -> int | None:
    """The request's ``Content-Length``, or None when absent or not a number."""
    raw = _header(scope, b"content-length")
    try:
        return int(raw) if raw else None
    except ValueError:
        return None


def expects_body(scope) -> bool:
    """Whether the request announces a body (a non-zero Content-Length, or chunked)."""
    return bool(declared_length(scope)) or b"chunked" in _header(scope, b"transfer-encoding").lower()


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
        expects_continue = b"100-continue" in _header(scope, b"expect").lower()
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
        if b"json" in _header(scope, b"content-type").lower():
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
        if not self.token:
            return True
        value = _header(scope, b"authorization")
        scheme, _, given = value.decode("latin-1").partition(" ")
        if scheme.lower() == "bearer":
            return hmac.compare_digest(given.strip().encode(), self.token.encode())
        return False

    async def __call__(self, scope, receive, send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not path.startswith(PROTECTED_PREFIXES) and path != "/api":
            await self.app(scope, receive, send)
            return
        request_id = scope.get("state", {}).get("request_id")
        declared = declared_length(scope)
        expects_continue = b"100-continue" in _header(scope, b"expect").lower()
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


class ClientBuckets:
    """Token buckets keyed by client: ``per_min`` tokens a minute, at most ``burst`` saved up.

    Args:
        per_min: refill rate in tokens per minute (0 or less: unlimited).
        burst: bucket size; a request needing more than this is never allowed.
    """

    def __init__(self, per_min: float, burst: float) -> None:
        self.rate = per_min / 60.0
        self.burst = float(burst)
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, client: str, amount: float, now: float | None = None) -> float:
        """Take ``amount`` tokens; 0.0 when granted, else the seconds until they would be there."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.get(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens >= amount:
            self._buckets[client] = (tokens - amount, now)
            self._forget_full(now)
            return 0.0
        self._buckets[client] = (tokens, now)
        return (min(amount, self.burst) - tokens) / self.rate if amount <= self.burst else math.inf

    def give_back(self, client: str, amount: float) -> None:
        """Return tokens taken for bytes that never came (a short chunked upload)."""
        if client in self._buckets and amount > 0:
            tokens, last = self._buckets[client]
            self._buckets[client] = (min(self.burst, tokens + amount), last)

    def _forget_full(self, now: float) -> None:
        if len(self._buckets) <= _MAX_TRACKED_CLIENTS:
            return
        refill_s = self.burst / self.rate
        for key, (_tokens, last) in list(self._buckets.items()):
            if now - last >= refill_s:  # full again: forgetting it changes nothing
                del self._buckets[key]
        while len(self._buckets) > _MAX_TRACKED_CLIENTS:  # many active clients: drop the oldest
            del self._buckets[min(self._buckets, key=lambda k: self._buckets[k][1])]


class UploadGuardMiddleware(_BodyGuard):
    """Bounds Gradio's upload route: bytes per request, uploads per client, free disk under the temp folder.

    Gradio caps each file (``max_file_size``) but not how many files one
    request carries, nor how often a client uploads; uploads stay in
    ``<outputs>/.gradio-tmp`` for a day. Checked before a byte reaches Gradio
    (``Content-Length``), and again while the body streams in:

    * one request may carry ``max(2 × E2V_MAX_UPLOAD_MB, E2V_MAX_BATCH_UPLOAD_MB)``
      plus multipart overhead (the similarity tab sends two clips at once; the
      batch tab sends every chosen file in one request) → else ``413 file_too_large``;
    * per client address, ``E2V_UPLOAD_REQUESTS_PER_MIN`` requests and
      ``E2V_UPLOAD_MB_PER_MIN`` MB a minute, a minute's worth (or one full
      request) saved up → else ``429 rate_limited`` with ``Retry-After``;
    * an upload that would leave less than ``E2V_MIN_FREE_MB`` free on the temp
      folder's disk → ``507 storage_full``;
    * the body timeouts of :class:`BodyWatch` → ``408 request_timeout``.

    Behind a reverse proxy every client has the proxy's address and shares one bucket.
    """

    def __init__(self, app, settings: Settings) -> None:
        super().__init__(app, settings)
        self.settings = settings
        self.limit = int(max(2 * settings.max_upload_bytes, settings.max_batch_upload_mb * _MB)) + UPLOAD_OVERHEAD
        self.requests = ClientBuckets(settings.upload_requests_per_min, max(1, settings.upload_requests_per_min))
        self.bytes = ClientBuckets(settings.upload_mb_per_min * _MB, max(settings.upload_mb_per_min * _MB, self.limit))
        self.min_free = int(settings.min_free_mb * _MB)
        self.in_flight = 0  # bytes announced by uploads still streaming in (not yet on disk)

    def too_large_message(self, scope) -> str:
        mb = (self.limit - UPLOAD_OVERHEAD) / _MB
        return (
            f"The upload exceeds the limit of {mb:g} MB per request (E2V_MAX_BATCH_UPLOAD_MB, "
            f"E2V_MAX_UPLOAD_MB); upload fewer files at once. / 单次上传超过 {mb:g} MB 上限，请分批上传。"
        )

    def temp_dir(self) -> Path:

        return gradio_temp_dir(self.settings)

    def free_bytes(self) -> int | None:
        path = self.temp_dir()
        while not path.exists() and path != path.parent:  # not created yet: ask its nearest parent
            path = path.parent
        try:
            return shutil.disk_usage(path).free
        except OSError:
            return None

    async def __call__(self, scope, receive, send) -> None:
        if (
            scope["type"] != "http"
            or scope.get("method") != "POST"
            or scope.get("path", "").rstrip("/") != GRADIO_UPLOAD_PATH
        ):
            await self.app(scope, receive, send)
            return
        request_id = scope.get("state", {}).get("request_id")
        declared = declared_length(scope)
        expects_continue = b"100-continue" in _header(scope, b"expect").lower()
        drain = expects_body(scope) and not expects_continue
        if declared is not None and declared > self.limit:
            await answer_error(
                send, receive, 413, "file_too_large", self.too_large_message(scope), request_id, drain=drain
            )
            return
        need = declared if declared is not None else self.limit
        client = (scope.get("client") or ("unknown", 0))[0]
        wait = self.requests.take(client, 1)
        if not wait:
            wait = self.bytes.take(client, need)
            if wait:
                self.requests.give_back(client, 1)
        if wait:
            retry = max(1, math.ceil(min(wait, 3600)))
            message = (
                f"Too many uploads from this client; retry in {retry} s (E2V_UPLOAD_REQUESTS_PER_MIN, "
                f"E2V_UPLOAD_MB_PER_MIN). / 上传过于频繁，请 {retry} 秒后重试。"
            )
            extra = [(b"retry-after", str(retry).encode())]
            await answer_error(send, receive, 429, "rate_limited", message, request_id, extra, drain=drain)
            return
        free = await asyncio.to_thread(self.free_bytes)
        if free is not None and free - self.in_flight - need < self.min_free:
            self.bytes.give_back(client, need)
            message = (
                f"The server's disk is nearly full ({free / _MB:.0f} MB free; E2V_MIN_FREE_MB is "
                f"{self.min_free / _MB:g}): the upload was refused. / 服务器磁盘空间不足，已拒绝上传。"
            )
            await answer_error(send, receive, 507, "storage_full", message, request_id, drain=drain)
            return
        self.in_flight += need
        try:
            watch = await self.run_watched(scope, receive, send, self.limit, poison=_multipart_poison(scope))
        finally:
            self.in_flight -= need
        if declared is None:  # charged the whole cap up front; give back what did not come
            self.bytes.give_back(client, need - min(need, watch.received))


def _multipart_poison(scope) -> bytes | None:
    """Bytes that end the current part and start a malformed one: a multipart parser fails on them.

    Gradio's parser deletes the temp files it wrote when parsing fails, but not
    when the client disconnects; a request cut off for its size or a stall is
    fed these first, so that nothing is left in the temp folder.
    """
    content_type = _header(scope, b"content-type").decode("latin-1")
    for param in content_type.split(";")[1:]:
        name, _, value = param.strip().partition("=")
        if name.strip().lower() == "boundary" and value:
            return b"\x00\r\n--" + value.strip().strip('"').encode("latin-1") + b"\r\n\x00:\r\n\r\n"
    return None


def guarded_http_protocol(settings: Settings):
    """uvicorn's HTTP/1.1 protocol class with a header timeout and a 400 for a half-closed request.

    uvicorn times out idle keep-alive connections only: a client that sends a
    request line and then a header byte now and then holds its connection for
    ever. This class starts a timer when a connection opens (and when the
    first byte of a next request arrives) and closes the connection if the
    request line and headers are not complete after ``E2V_HEADER_TIMEOUT_S``.
    Header size is bounded by h11 (``h11_max_incomplete_event_size``, 16 KB).

    A client that shuts down its sending side before the body it announced is
    complete gets ``400 bad_request`` (uvicorn would close without a word).

    Returns:
        A subclass of uvicorn's ``AutoHTTPProtocol`` (httptools when installed, else h11),
        for ``uvicorn.Config(http=...)``.
    """
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    timeout_s = settings.header_timeout_s

    class GuardedHTTPProtocol(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
        header_timeout_s = timeout_s

        def connection_made(self, transport) -> None:
            self._e2v_header_timer = None
            super().connection_made(transport)
            self._e2v_arm()

        def _e2v_between_requests(self) -> bool:
            return self.cycle is None or self.cycle.response_complete

        def _e2v_arm(self) -> None:
            if self.header_timeout_s > 0 and self._e2v_header_timer is None:
                self._e2v_header_timer = self.loop.call_later(self.header_timeout_s, self._e2v_headers_late)

        def _e2v_disarm(self) -> None:
            if self._e2v_header_timer is not None:
                self._e2v_header_timer.cancel()
                self._e2v_header_timer = None

        def _e2v_headers_late(self) -> None:
            self._e2v_header_timer = None
            if self.transport.get_protocol() is not self or self.transport.is_closing():
                return  # upgraded (WebSocket) or closed already
            if self._e2v_between_requests():
                log.info("closing a connection whose request headers took over %g s", self.header_timeout_s)
                self.transport.close()

        def data_received(self, data: bytes) -> None:
            if self._e2v_between_requests():
                self._e2v_arm()  # the first byte of a request: its headers are on the clock
            before = self.cycle
            super().data_received(data)
            if self.cycle is not before or self.transport.get_protocol() is not self:
                self._e2v_disarm()  # headers complete (a new request cycle), or upgraded

        def eof_received(self):
            cycle = self.cycle
            if cycle is not None and cycle.more_body and not cycle.response_started and not cycle.disconnected:
                body = json.dumps(
                    {
                        "error": {
                            "code": "bad_request",
                            "message": "The client closed its side before the request body was complete. / "
                            "请求体未发送完整，客户端已关闭连接。",
                        }
                    }
                ).encode()
                head = (
                    "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n"
                    f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
                ).encode()
                cycle.response_started = cycle.response_complete = True  # the app's answer, if any, is dropped
                cycle.disconnected = True
                cycle.message_event.set()  # the app's next receive() says the client went away
                self.transport.write(head + body)
                self.transport.close()
                return None
            return super().eof_received()

        def connection_lost(self, exc) -> None:
            self._e2v_disarm()
            super().connection_lost(exc)

    return GuardedHTTPProtocol
