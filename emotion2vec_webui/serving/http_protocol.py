"""uvicorn's HTTP protocol with a header timeout, and a ``400`` for a client that half-closes mid-body.

uvicorn times out idle keep-alive connections only: a client that sends its
request line and headers slowly, or not at all, would hold its connection for
ever. ``uvicorn.Config(http=guarded_http_protocol(settings))`` closes it after
``E2V_HEADER_TIMEOUT_S``.
"""

from __future__ import annotations

import json
import logging

from emotion2vec_webui.config import Settings

log = logging.getLogger(__name__)


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

    Always h11, even where httptools is installed (``ray[serve]`` brings it):
    httptools' parser answers a request with an unknown method (``FOO /x``)
    with its own ``400`` in plain text before the app sees it, where every
    error must have the API's JSON shape, and its header bound differs.

    Returns:
        A subclass of uvicorn's ``H11Protocol``, for ``uvicorn.Config(http=...)``.
    """
    from uvicorn.protocols.http.h11_impl import H11Protocol

    timeout_s = settings.header_timeout_s

    class GuardedHTTPProtocol(H11Protocol):
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
