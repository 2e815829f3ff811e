"""Admission: how many recognitions the API holds at once, and how it waits on the worker.

A request is checked at once (503 when no slot could be had), reads its body
without holding a slot, then takes a slot for decoding and queueing; a client
that goes away drops its queued job.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging

from fastapi import Request

from emotion2vec_webui.errors import OverloadedError

log = logging.getLogger(__name__)


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


def admission_of(request: Request) -> Admission:
    """The app's one :class:`Admission` (made on first use)."""
    state = request.app.state
    if getattr(state, "admission", None) is None:
        state.admission = Admission(state.service)
    return state.admission


async def wait_or_cancel(request: Request, future):
    """Wait for the worker; if the client disconnects first, cancel the job if it has not started."""
    result_task = asyncio.wrap_future(future)
    watcher = asyncio.ensure_future(disconnected(request))
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


async def disconnected(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
