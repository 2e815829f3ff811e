"""The HTTP middleware of the one server (assembled in ``app.py``), outermost first:

1. :class:`RequestContextMiddleware` gives every request an ``X-Request-ID``
   (a sane incoming one is kept), sets :data:`logs.request_id_var` for the
   request's duration, and turns any unexpected exception into a logged
   ``500 internal_error`` without a stack trace for the client.
2. :class:`ApiGuardMiddleware` guards ``/api/*`` (and ``/metrics``): the
   bearer token when ``E2V_API_TOKEN`` is set (checked before any body byte
   is read), and the upload cap, enforced while the body streams in
   (Starlette does not cap multipart file parts): ``413 file_too_large`` goes
   out as soon as the cap is passed, never after buffering the whole body.
3. FastAPI routes (``/healthz``, ``/readyz``, ``/api/v1/*``, ``/docs``), then
   the Gradio app, mounted last so it does not swallow them.

Torch and FunASR are imported only by the service's loader thread, after the
app is built: ``/`` and ``/healthz`` answer within seconds of the start.
"""

from __future__ import annotations

import hmac
import logging
import re
import uuid

from starlette.requests import ClientDisconnect

from emotion2vec_webui.config import Settings
from emotion2vec_webui.logs import request_id_var

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,64}$")
# Paths behind the token (when E2V_API_TOKEN is set). /healthz and /readyz stay open for orchestrators.
PROTECTED_PREFIXES = ("/api/", "/metrics")
# Bytes allowed for a request body beyond the file(s): multipart boundaries, form fields, JSON keys.
BODY_OVERHEAD = 64 * 1024
# After answering early (401, 413, 503 …) we keep reading and dropping the body, at most this much
# and this long, so that a client still busy sending it gets to read the answer (see _drain).
_DRAIN_LIMIT = 64 * 1024 * 1024
_DRAIN_TIMEOUT_S = 10.0


def _json_error_messages(status: int, code: str, message: str, request_id: str | None, extra_headers=()):
    """The ASGI messages of an error response, for middleware that answers by itself."""
    import json

    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *extra_headers,
    ]
    if request_id:
        headers.append((REQUEST_ID_HEADER.lower().encode(), request_id.encode()))
    return {"type": "http.response.start", "status": status, "headers": headers}, body


class RequestContextMiddleware:
    """Request id in, request id out, and no stack trace ever reaches a client."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = None
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                incoming = value.decode("latin-1").strip()
                break
        request_id = incoming if incoming and _SANE_REQUEST_ID.match(incoming) else uuid.uuid4().hex[:16]
        scope.setdefault("state", {})["request_id"] = request_id
        token = request_id_var.set(request_id)
        started = False

        async def send_with_id(message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != b"x-request-id"]
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            if isinstance(exc, ClientDisconnect):  # nobody left to answer
                log.info("client went away during %s %s", scope.get("method"), scope.get("path"))
                return
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if not started:
                start, body = _json_error_messages(
                    500, "internal_error", "An unexpected error occurred; see the server log.", request_id
                )
                await send(start)
                await send({"type": "http.response.body", "body": body})
        finally:
            request_id_var.reset(token)


class ApiGuardMiddleware:
    """Bearer token and streaming body cap for the API paths.

    Args:
        app: the inner ASGI app.
        settings: token (``api_token``) and upload cap (``max_upload_bytes``).
    """

    def __init__(self, app, settings: Settings) -> None:
        self.app = app
        self.token = settings.api_token
        self.max_upload = settings.max_upload_bytes

    def body_limit(self, scope) -> int:
        """Largest body accepted on this path: two files for similarity, base64 inflation for JSON."""
        files = 2 if scope["path"].rstrip("/").endswith("/similarity") else 1
        content_type = b""
        for name, value in scope.get("headers", ()):
            if name == b"content-type":
                content_type = value.lower()
        per_file = self.max_upload * 4 // 3 + 4 if b"json" in content_type else self.max_upload
        return files * per_file + BODY_OVERHEAD

    def authorized(self, scope) -> bool:
        if not self.token:
            return True
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
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
        headers = dict(scope.get("headers", ()))
        try:
            declared = int(headers[b"content-length"]) if b"content-length" in headers else None
        except ValueError:
            declared = None
        chunked = b"chunked" in headers.get(b"transfer-encoding", b"").lower()
        # A client waiting for "100 Continue" sends no body until we read: then there is nothing to drain.
        expects_continue = b"100-continue" in headers.get(b"expect", b"").lower()
        has_body = (bool(declared) or chunked) and not expects_continue
        limit = self.body_limit(scope)

        if not self.authorized(scope):
            message = "A valid API token is required: send 'Authorization: Bearer <E2V_API_TOKEN>'."
            extra = [(b"www-authenticate", b"Bearer")]
            await self._answer(send, receive, 401, "unauthorized", message, request_id, extra, drain=has_body)
            return
        too_large = (
            f"The request body exceeds the upload limit of {self.max_upload / 1024 / 1024:g} MB (E2V_MAX_UPLOAD_MB)."
        )
        if declared is not None and declared > limit:
            await self._answer(send, receive, 413, "file_too_large", too_large, request_id, drain=has_body)
            return

        received = 0
        body_done = not has_body
        exceeded = answered = False

        async def counting_receive():
            nonlocal received, exceeded, body_done
            if exceeded:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                body_done = body_done or not message.get("more_body", False)
                if received > limit:
                    exceeded = True
                    # Tell the app the client went away: it stops parsing and drops its temp files.
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message) -> None:
            nonlocal answered
            if exceeded:
                if not answered:
                    answered = True
                    await self._answer(send, receive, 413, "file_too_large", too_large, request_id, drain=True)
                return
            if message["type"] == "http.response.start" and not body_done:
                # Answered before the body was read (401/413/503 …): this connection cannot be reused.
                message = {**message, "headers": [*message.get("headers", ()), (b"connection", b"close")]}
            elif message["type"] == "http.response.body" and not message.get("more_body", False) and not body_done:
                await send({**message, "more_body": True})
                await _drain(receive, limit)
                message = {"type": "http.response.body", "body": b""}
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not exceeded:
                raise
            # The app stopped on the disconnect we simulated (e.g. Starlette's ClientDisconnect).
        if exceeded and not answered:
            await self._answer(send, receive, 413, "file_too_large", too_large, request_id, drain=True)

    @staticmethod
    async def _answer(send, receive, status, code, message, request_id, extra=(), drain=False) -> None:
        """Answer by ourselves; then, if the client is still sending, read and drop its body (bounded)."""
        start, body = _json_error_messages(status, code, message, request_id, [*extra, (b"connection", b"close")])
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
