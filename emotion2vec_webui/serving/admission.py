"""Admission: how many recognitions the API holds at once, per client too, and how it waits on the worker.

A request is checked at once (503 when no slot could be had, 429 when its
client holds its share), reads its body without holding a slot, then takes a
slot for decoding and queueing; an ``audio_url`` is downloaded before that,
under its own bound (:meth:`Admission.download`); a client that goes away
drops its queued job.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import logging

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from emotion2vec_webui.errors import E2VError, OverloadedError
from emotion2vec_webui.runs.inputs.url_fetch import Fetched, FetchPolicy, download_slots, fetch_url

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
    not in number, so stalled connections cost nothing. One client holds at
    most ``client_slots`` slots (``E2V_MAX_PER_CLIENT``; 429 beyond), so it
    cannot take them all. Slots are only touched from the event loop, so plain
    counters are enough.
    """

    def __init__(self, service) -> None:
        settings = service.settings
        self.service = service
        self.limit = settings.max_queue + 1
        self.per_client = settings.client_slots  # 0: no per-client cap
        self.active = 0
        self.by_client: collections.Counter[str] = collections.Counter()
        self.reading = 0  # bytes of request bodies read but not yet admitted
        self.body_budget = self.limit * (2 * settings.max_upload_bytes + 64 * 1024)
        self.downloads = download_slots(settings.url_max_concurrent, settings.url_max_per_client)

    def check(self, client: str | None = None) -> None:
        """Raise ``model_unavailable``, ``rate_limited`` or ``overloaded`` now if a slot could not be had.

        Takes nothing. ``client`` is :func:`client_key`'s answer (None: no per-client cap).
        """
        _ = self.service.engine  # model_unavailable while loading or after a failure
        if client is not None and 0 < self.per_client <= self.by_client[client]:
            raise E2VError(
                "rate_limited",
                f"This client already has {self.per_client} recognition(s) in progress (E2V_MAX_PER_CLIENT); "
                f"retry when one is done. / 此客户端进行中的识别请求已达上限（{self.per_client} 个），请稍后重试。",
            )
        if self.active >= self.limit or self.service.queue_depth >= self.service.settings.max_queue:
            raise OverloadedError(
                "The server is busy: the queue is full. Retry shortly. / 服务器繁忙，队列已满，请稍后重试。"
            )

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
    def slot(self, client: str | None = None):
        """Hold one slot (checked first, see :meth:`check`) while the block runs."""
        self.check(client)
        self.active += 1
        if client is not None:
            self.by_client[client] += 1
        try:
            yield
        finally:
            self.active -= 1
            if client is not None:
                self.by_client[client] -= 1
                if self.by_client[client] <= 0:
                    del self.by_client[client]

    async def download(self, url: str, client: str | None = None) -> Fetched:
        """Download ``url`` holding a download slot, not an admission slot (a slow remote server holds no slot).

        Raises:
            E2VError: ``rate_limited`` / ``overloaded`` (download bounds), or what
                :func:`url_fetch.fetch_url` raises.
        """
        policy = FetchPolicy.from_settings(self.service.settings)
        with self.downloads.hold(client):
            return await run_in_threadpool(fetch_url, url, policy)


def client_key(request: Request) -> str:
    """Who a request is, for the per-client caps: the peer address, and the bearer token's digest when one is sent.

    Behind a reverse proxy every client has the proxy's address and shares one share.
    """
    peer = (request.scope.get("client") or ("unknown", 0))[0]
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return f"{peer} {hashlib.sha256(token.strip().encode()).hexdigest()[:12]}"
    return peer


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
