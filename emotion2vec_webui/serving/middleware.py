"""Request ids for every request: the outermost middleware of the one server (assembled in ``app.py``).

:class:`RequestContextMiddleware` gives every request an ``X-Request-ID`` (a
sane incoming one is kept), sets :data:`logs.request_id_var` for the
request's duration, and turns any unexpected exception into a logged
``500 internal_error`` without a stack trace for the client. The API's own
guards (token, upload cap, body timeouts, Gradio's upload route) are in
``serving/guards.py``.
"""

from __future__ import annotations

import logging
import re
import uuid

from starlette.requests import ClientDisconnect

from emotion2vec_webui.logs import request_id_var
from emotion2vec_webui.serving.guards import json_error_messages as _json_error_messages

log = logging.getLogger(__name__)

_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,64}$")


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
