"""``/api/v1/stream``: live audio over a WebSocket → emotion events while it plays, a run folder when it stops.

The transport only: who may stream, what a message may be, how fast and how
long; the analysis is :class:`runs.live_stream.LiveStream`. The protocol is
docs/streaming.md, each message's JSON Schema is in ``stream_schemas/``.

* **Auth**, as the REST API: with ``E2V_API_TOKEN`` set, ``Authorization:
  Bearer <token>`` on the upgrade request, or ``"token"`` in the ``start``
  message (browsers cannot set headers on a WebSocket), or ``?ticket=`` on
  the URL: a short-lived single-use pass the UI hands its logged-in page
  (``runs/live/stream_tickets.py``), so the page never holds the token; a socket
  opened with one is the Live tab's (run kind ``live``). A wrong token or ticket costs
  the client address one failure from a budget of ``E2V_AUTH_FAILURES_PER_MIN``
  (as ``serving/auth_throttle.py`` does for HTTP); beyond it, ``rate_limited``.
* **Admission**, as a recognition: a stream holds one of the API's slots for
  its whole life (``serving/admission.py``: ``overloaded`` when none is free,
  ``rate_limited`` beyond the client's share, ``E2V_MAX_PER_CLIENT``).
* **Bounds**: the ``start`` message within ``E2V_STREAM_IDLE_S``; text
  messages of at most 64 KB; binary frames of at most 1 s of audio (and
  1 MB; uvicorn closes on messages over 2 MB, ``app.serve``); the client may
  send faster than real time only ``E2V_STREAM_BUFFER_S`` ahead of
  ``E2V_STREAM_MAX_SPEED`` × real time (a token bucket of audio seconds, each
  frame counted as at least :data:`MIN_FRAME_CHARGE_S`), then ``rate_limited``;
  while the analysis is behind, frames are not read (the client's sends wait:
  back-pressure); the server receives at most one
  message ahead (uvicorn pauses reading until the app takes it).
* **Limits that end the take** (saved like ``stop``, after a ``warning``):
  ``E2V_STREAM_IDLE_S`` without a message, ``E2V_MAX_DURATION_S`` of audio,
  or twice that of wall-clock time.
* **Errors** are one ``error`` message (``code`` from docs/errors.md, the same
  as REST), then the socket closes (code 1008, 1011 for the server's own
  failures, 1013 for "try again later"); the take is dropped. A client that
  disconnects ends the take: it is saved all the same.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time

import anyio
from fastapi import APIRouter, WebSocket

from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.runs.live.stream_options import StreamOptions
from emotion2vec_webui.runs.recognize import new_request_id
from emotion2vec_webui.runs.shown_paths import shown_paths
from emotion2vec_webui.serving.admission import admission_of, client_key
from emotion2vec_webui.serving.json_body import parse_json
from emotion2vec_webui.serving.upload_guard import ClientBuckets

log = logging.getLogger(__name__)

router = APIRouter()

STREAM_PATH = "/api/v1/stream"
MAX_TEXT_BYTES = 64 * 1024  # a start or stop message
MAX_FRAME_S = 1.0  # audio in one binary frame
MAX_FRAME_BYTES = 1024 * 1024
MAX_PAGE_BYTES = 256 * 1024  # opus: container bytes in one frame (Opus tops out near 64 KB/s per channel)
# The pace counts a frame as at least this much audio: a message costs the server its work whatever it holds
# (2-byte frames were never limited). Real frames are longer: an AudioWorklet's 128 samples at 48 kHz, 2.67 ms.
MIN_FRAME_CHARGE_S = 0.0025
WS_MAX_MESSAGE_BYTES = 2 * 1024 * 1024  # uvicorn's ws_max_size: larger messages close the socket (1009) unread
CLOSE_CODES = {"overloaded": 1013, "model_unavailable": 1013, "internal_error": 1011, "storage_full": 1011,
               "storage_unavailable": 1011}  # fmt: skip
CLOSE_DEFAULT = 1008  # policy violation: the client's own doing


class Connection:
    """One WebSocket: messages out one at a time; a client gone makes sending a no-op."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self.gone = False
        self._lock = asyncio.Lock()

    async def send(self, message: dict) -> None:
        if self.gone:
            return
        async with self._lock:
            try:
                await self.ws.send_json(message)
            except Exception:  # the client went away: the take goes on to its run folder
                self.gone = True

    async def fail(self, exc: E2VError, settings) -> None:
        message = shown_paths(exc.message, settings)  # never a server path
        await self.send({"type": "error", "code": exc.code, "message": message})
        await self.close(CLOSE_CODES.get(exc.code, CLOSE_DEFAULT))

    async def close(self, code: int = 1000) -> None:
        if not self.gone:
            self.gone = True
            try:
                await self.ws.close(code)
            except Exception:
                pass


def _auth_failures(ws: WebSocket) -> ClientBuckets:
    state, per_min = ws.app.state, ws.app.state.settings.auth_failures_per_min
    if getattr(state, "stream_auth_failures", None) is None:
        state.stream_auth_failures = ClientBuckets(per_min, max(1.0, per_min))
    return state.stream_auth_failures


def _check_credential(ws: WebSocket, valid: bool, what: str) -> None:
    """Raise ``unauthorized`` for a wrong credential (``rate_limited`` once the address used its failure budget)."""
    settings = ws.app.state.settings
    failures = _auth_failures(ws) if settings.auth_failures_per_min > 0 else None
    peer = ws.client.host if ws.client else "unknown"
    if failures is not None and failures.take(peer, 1):
        raise E2VError("rate_limited", "Too many failed sign-ins from this address; retry later "
                                       "(E2V_AUTH_FAILURES_PER_MIN). / 此地址登录失败次数过多，请稍后重试。")  # fmt: skip
    if valid:
        if failures is not None:
            failures.give_back(peer, 1)
        return
    log.info("client %s: a wrong or missing stream %s", peer, what)
    if what == "ticket":
        raise E2VError("unauthorized", "The stream ticket is unknown, used or expired: ask for a new one. / "
                                       "音频流票据无效、已使用或已过期，请重新获取。")  # fmt: skip
    raise E2VError("unauthorized", "A valid API token is required: send 'Authorization: Bearer <E2V_API_TOKEN>' or "
                                   "\"token\" in the start message. / 需要有效的 API 令牌。")  # fmt: skip


def _check_token(ws: WebSocket, given: str | None) -> None:
    """The API token, compared in constant time."""
    token = ws.app.state.settings.api_token
    valid = given is not None and hmac.compare_digest(given.strip().encode(), token.encode())
    _check_credential(ws, valid, "token")


def _check_ticket(ws: WebSocket, ticket: str) -> None:
    """A ticket from ``runs/live/stream_tickets.py``: used up here, whatever follows."""
    _check_credential(ws, ws.app.state.service.stream_tickets.redeem(ticket), "ticket")


async def _receive(ws: WebSocket, timeout: float) -> dict | None:
    """The next message, or None after ``timeout`` seconds without one."""
    try:
        return await asyncio.wait_for(ws.receive(), timeout)
    except asyncio.TimeoutError:
        return None


def _text_message(text: str) -> dict:
    """A client text message: bounded JSON with a ``type``."""
    raw = text.encode("utf-8", "surrogatepass")
    if len(raw) > MAX_TEXT_BYTES:
        raise E2VError("bad_request", f"A text message is larger than {MAX_TEXT_BYTES // 1024} KB. / "
                                      f"文本消息超过 {MAX_TEXT_BYTES // 1024} KB。")  # fmt: skip
    message = parse_json(raw)
    if not isinstance(message, dict) or message.get("type") not in ("start", "stop"):
        raise E2VError("bad_request", 'A text message must be a JSON object with "type": "start" or "stop". / '
                                      '文本消息必须是 type 为 start 或 stop 的 JSON 对象。')  # fmt: skip
    return message


async def _open(ws: WebSocket, settings) -> tuple[StreamOptions, bool]:
    """Authorise and read the ``start`` message: the options, and whether a ticket opened the socket (the UI)."""
    ticket = ws.query_params.get("ticket")
    if ticket is not None:  # checked even without a token: a ticket given is one ticket used
        _check_ticket(ws, ticket)
    header = ws.headers.get("authorization")
    authorised = ticket is not None
    if settings.api_token and header is not None and not authorised:
        scheme, _, given = header.partition(" ")
        _check_token(ws, given if scheme.lower() == "bearer" else "")
        authorised = True
    first = await _receive(ws, settings.stream_idle_s)
    if first is None:
        raise E2VError("request_timeout", f"No start message within {settings.stream_idle_s:g} s "
                                          f"(E2V_STREAM_IDLE_S). / {settings.stream_idle_s:g} 秒内未收到 start 消息。")  # fmt: skip
    if first["type"] == "websocket.disconnect":
        raise WebSocketGone()
    if first.get("text") is None:
        raise E2VError("bad_request", 'The first message must be the JSON start message, not audio. / '
                                      '第一条消息必须是 JSON 格式的 start 消息，而不是音频。')  # fmt: skip
    message = _text_message(first["text"])
    if settings.api_token and not authorised:
        token = message.get("token")
        _check_token(ws, token if isinstance(token, str) else None)
    if message["type"] != "start":
        raise E2VError("bad_request", 'The first message must be "type": "start". / 第一条消息必须是 start。')
    return StreamOptions.from_message(message), ticket is not None


class WebSocketGone(Exception):
    """The client closed before the take began."""


class SpeedLimit:
    """Audio seconds a client may send: ``speed`` per wall-clock second, ``buffer_s`` ahead at most (0: no cap)."""

    def __init__(self, speed: float, buffer_s: float) -> None:
        self.speed, self.buffer_s = speed, buffer_s
        self.tokens, self.last = buffer_s, time.monotonic()

    def take(self, seconds: float) -> None:
        if self.speed <= 0:
            return
        seconds = max(seconds, MIN_FRAME_CHARGE_S)  # one frame: at least this much of the pace
        now = time.monotonic()
        self.tokens = min(self.buffer_s, self.tokens + (now - self.last) * self.speed)
        self.last = now
        if seconds > self.tokens + 1e-6:
            raise E2VError(
                "rate_limited",
                f"The client sends audio faster than {self.speed:g}× real time and is more than {self.buffer_s:g} s "
                f"ahead (E2V_STREAM_MAX_SPEED, E2V_STREAM_BUFFER_S; a frame counts as at least "
                f"{MIN_FRAME_CHARGE_S * 1000:g} ms); send at the pace of the audio. / "
                f"客户端发送音频快于 {self.speed:g} 倍实时且超前 {self.buffer_s:g} 秒以上（每帧至少按 "
                f"{MIN_FRAME_CHARGE_S * 1000:g} 毫秒计），请按音频的实际速度发送。",
            )
        self.tokens -= seconds


async def _pump(ws: WebSocket, conn: Connection, stream, settings) -> None:
    """Read the take's frames until ``stop``, a close, or a limit that ends it (then a ``warning``)."""
    options = stream.options
    frame_limit = (
        MAX_PAGE_BYTES if options.compressed else min(MAX_FRAME_BYTES, int(options.bytes_per_second * MAX_FRAME_S))
    )
    speed = SpeedLimit(settings.stream_max_speed, settings.stream_buffer_s)
    wall_limit = time.monotonic() + 2 * settings.max_duration_s
    while True:
        await stream.room()  # back-pressure: the analysis is behind, leave the next frame on the socket
        message = await _receive(ws, settings.stream_idle_s)
        if message is None:
            idle = settings.stream_idle_s
            await stream.warn("idle", f"no audio for {idle:g} s (E2V_STREAM_IDLE_S): the take ends here",
                              f"{idle:g} 秒没有收到音频：录音到此结束", keep=True)  # fmt: skip
            return
        if message["type"] == "websocket.disconnect":
            conn.gone = True
            return
        data = message.get("bytes")
        if data is None:
            if _text_message(message.get("text") or "")["type"] == "stop":
                return
            raise E2VError(
                "bad_request", "The take has started: send audio frames or stop. / 录音已开始，请发送音频或 stop。"
            )
        if len(data) > frame_limit:
            raise E2VError("file_too_large", f"A binary frame of {len(data)} bytes is larger than {frame_limit} bytes "
                                             f"({MAX_FRAME_S:g} s of this audio at most). / 二进制帧过大（每帧至多 "
                                             f"{MAX_FRAME_S:g} 秒音频，{frame_limit} 字节）。")  # fmt: skip
        if options.compressed:  # its pace in the audio it decodes to
            before = stream.received_s
            stream.feed(data)
            speed.take(stream.received_s - before)
        else:
            speed.take(len(data) / options.bytes_per_second)
            stream.feed(data)
        if stream.full or time.monotonic() > wall_limit:
            limit = settings.max_duration_s
            await stream.warn("limit", f"the take reached the {limit:g} s limit (E2V_MAX_DURATION_S): it ends here",
                              f"录音达到 {limit:g} 秒上限，到此结束", keep=True)  # fmt: skip
            return


async def _until_failure(stream, work):
    """Run ``work`` (a coroutine) unless the take fails first (the model stopped answering): then raise that."""
    task = asyncio.ensure_future(work)
    failed = asyncio.ensure_future(stream.failed())
    try:
        await asyncio.wait({task, failed}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pending in (task, failed):
            if not pending.done():
                pending.cancel()
        await asyncio.gather(task, failed, return_exceptions=True)
    if not task.cancelled() and (task.exception() is not None or stream.failure is None):
        return task.result()
    raise stream.failure


@router.websocket(STREAM_PATH)
async def stream_audio(ws: WebSocket) -> None:
    """A live take: ``start``, binary audio frames, ``stop``; events back; ``done`` names the run folder."""
    from emotion2vec_webui.runs.live.live_stream import LiveStream

    settings, service = ws.app.state.settings, ws.app.state.service
    await ws.accept()
    conn = Connection(ws)
    stream = None
    try:
        options, from_ui = await _open(ws, settings)
        admission, client = admission_of(ws), client_key(ws)
        with admission.slot(client):
            request_id = new_request_id()
            container = "microphone" if from_ui else "stream"  # a ticket is the Live tab's: run kind "live"
            stream = await anyio.to_thread.run_sync(LiveStream, service, options, request_id, container)
            stream.start(conn.send)
            log.info("stream %s from %s: %s", request_id, client, options)
            await _until_failure(stream, _pump(ws, conn, stream, settings))
            outcome = await _until_failure(stream, stream.finish())
        run_id = outcome.run.run_id if outcome.run else None
        log.info("stream %s: %.1f s saved as %s%s", request_id, stream.received_s, run_id,
                 " (the client had gone)" if conn.gone else "")  # fmt: skip
        await conn.send(stream.done(outcome))
        await conn.close(1000)
    except WebSocketGone:
        conn.gone = True
    except E2VError as exc:
        if stream is not None:
            if exc is stream.failure:  # the model stopped answering: the audio received is kept, not dropped
                kept = await anyio.to_thread.run_sync(stream.keep_audio)
                if kept:
                    exc = E2VError(exc.code, f"{exc.message} The audio received so far is kept as {kept} in the "
                                             f"outputs folder. / 已收到的音频保存为输出文件夹中的 {kept}。")  # fmt: skip
            stream.close()
        log.info("stream ended with %s: %s", exc.code, exc.message)
        await conn.fail(exc, settings)
    except Exception:
        if stream is not None:
            stream.close()
        log.exception("stream failed")
        await conn.fail(E2VError("internal_error", "The stream failed; see the server log. / 音频流出错，请查看服务器日志。"),
                        settings)  # fmt: skip
    else:
        stream.close()
