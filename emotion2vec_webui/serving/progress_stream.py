"""``POST /api/v1/recognize?progress=true``: the run's progress as NDJSON lines, then its result (issue 33).

Why NDJSON and not a job to poll or Server-Sent Events: the request stays one
request — the same admission slot, the same cancel-on-disconnect, no job store
to expire — and any HTTP client reads it line by line (``curl -N``,
``httpx.stream(...).iter_lines()``, ``fetch`` with a reader); SSE's ``data:``
framing and reconnects add nothing to a POST that cannot be resumed.

Errors found before the stream starts (options, upload, decode, a full queue)
answer with their usual status and ``{"error": …}`` body. Once the ``200`` is
sent, each line is one JSON object:

* ``{"progress": {"fraction", "step", "window", "windows", "eta_s"}}`` — from
  the recognise flow's own reports (``runs/recognize.py``): long audio is
  analysed in windows, and each window that starts is a line, with the seconds
  left at the pace so far (``eta_s``, null for the first window);
* the last line: ``{"result": {…}}`` (what the plain request answers) or
  ``{"error": {"code", "message"}}`` (the usual error body).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from concurrent.futures import Future

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import StreamingResponse

from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.runs.recognize import Recognition
from emotion2vec_webui.runs.shown_paths import shown_paths
from emotion2vec_webui.serving.runs_api import with_links

log = logging.getLogger(__name__)

MEDIA_TYPE = "application/x-ndjson"
PROGRESS_PARAMETER = {
    "name": "progress",
    "in": "query",
    "required": False,
    "schema": {"type": "boolean", "default": False},
    "description": 'true: answer application/x-ndjson — a {"progress": …} line as each window of a long '
    'recording starts (window, windows, eta_s), then one {"result": …} or {"error": …} line (docs/api.md)',
}
INTERNAL = "The recognition failed; see the server log. / 识别出错，请查看服务器日志。"


def _line(obj: dict) -> bytes:
    return (json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def _progress(flow: Recognition, fraction: float, step: str) -> dict:
    eta = None if flow.eta_s is None else round(flow.eta_s, 1)
    return {"progress": {"fraction": round(fraction, 4), "step": step, "window": flow.window,
                         "windows": flow.windows, "eta_s": eta}}  # fmt: skip


def progress_response(
    request: Request, flow: Recognition, seconds: float, submit, held: contextlib.ExitStack
) -> StreamingResponse:
    """Queue the decoded run (``submit()`` → its :class:`Future`) and stream its progress, then its result.

    Args:
        request: the API request (its settings, for the links and shown paths).
        flow: the recognition, already decoded; its ``progress`` is set here.
        seconds: the decoded audio's length (the first line says it).
        submit: queues ``flow``'s job and returns its future (raises ``overloaded`` before anything is sent).
        held: the admission slot, released when the job ends (done, failed or cancelled) or the stream ends,
            whichever comes first: a stream whose client left is not always closed by the server at once (a
            cancellation that lands while the response waits on the socket leaves the generator suspended), and
            its slot must not wait for that.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[dict] = asyncio.Queue()

    def report(fraction: float, step: str) -> None:  # called from the job's thread
        loop.call_soon_threadsafe(queue.put_nowait, _progress(flow, fraction, step))

    flow.progress = report
    flow.report(0.3, f"已解码 {seconds:.1f} 秒，识别中 / decoded {seconds:.1f} s, classifying")  # the first line
    try:
        future: Future = submit()
    except BaseException:  # overloaded, say: answered with its status; the slot is let go here
        held.close()
        raise

    def let_go(_done: Future) -> None:  # on the job's thread: slots are only touched from the event loop
        with contextlib.suppress(RuntimeError):  # the loop is closed: the server is stopping
            loop.call_soon_threadsafe(held.close)

    future.add_done_callback(let_go)
    return StreamingResponse(
        _lines(request, flow, future, queue, held),
        media_type=MEDIA_TYPE,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},  # no proxy holds the lines back
    )


async def _lines(request: Request, flow: Recognition, future: Future, queue: asyncio.Queue,
                 held: contextlib.ExitStack) -> AsyncIterator[bytes]:  # fmt: skip
    done = asyncio.wrap_future(future)
    getter: asyncio.Future | None = None
    try:
        while not done.done():
            getter = asyncio.ensure_future(queue.get())
            await asyncio.wait({getter, done}, return_when=asyncio.FIRST_COMPLETED)
            if getter.done():
                yield _line(getter.result())
            else:
                getter.cancel()
        while not queue.empty():
            yield _line(queue.get_nowait())
        yield _line(await _final(request, done))
    finally:  # finished, failed, or the client went away (Starlette cancels the stream)
        if getter is not None:
            getter.cancel()
        if not future.done() and future.cancel():
            log.info("client went away; dropped its queued job")
        elif not done.done():  # the job runs on and writes its run folder whole; its outcome is not read
            log.info("client went away while its job ran; the run folder is still written whole")
            done.add_done_callback(lambda t: t.cancelled() or t.exception())
        held.close()


async def _final(request: Request, done: asyncio.Future) -> dict:
    """The last line: the result with its links, or the error body."""
    settings = getattr(request.app.state, "settings", None)
    try:
        outcome = done.result()
        return {"result": await run_in_threadpool(with_links, request, dict(outcome.result), outcome.run.run_id)}
    except E2VError as exc:
        return {"error": {"code": exc.code, "message": shown_paths(exc.message, settings)}}
    except Exception:
        log.exception("recognition failed after its progress stream started")
        return {"error": {"code": "internal_error", "message": INTERNAL}}
