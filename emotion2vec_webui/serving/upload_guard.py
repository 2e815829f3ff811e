"""Gradio's upload route (``/gradio_api/upload``): a cap per request, a rate per client, a disk floor.

Gradio caps each uploaded file, not each request (one request carried 40
files), and keeps uploads in its temp folder for a day: without these bounds
an anonymous client could fill the disk. A cut-off upload is fed a few
malformed multipart bytes so that Gradio's parser fails and removes its
temp files (it does not on a client disconnect).
"""

from __future__ import annotations

import asyncio
import logging
import math
import shutil
import time
from pathlib import Path

from emotion2vec_webui.config import Settings, gradio_temp_dir
from emotion2vec_webui.serving.guards import (
    _BodyGuard,
    answer_error,
    declared_length,
    expects_body,
    header_value,
)

log = logging.getLogger(__name__)

# Gradio's upload route when the UI is mounted at "/" (gradio.route_utils.API_PREFIX, Gradio 6.31).
GRADIO_UPLOAD_PATH = "/gradio_api/upload"
# Multipart headers of up to 1,000 files (Gradio's max_files) in one upload request.
UPLOAD_OVERHEAD = 1024 * 1024
# Distinct clients whose upload buckets are remembered (full buckets are forgotten first).
_MAX_TRACKED_CLIENTS = 4096
_MB = 1024 * 1024


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
        expects_continue = b"100-continue" in header_value(scope, b"expect").lower()
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
    content_type = header_value(scope, b"content-type").decode("latin-1")
    for param in content_type.split(";")[1:]:
        name, _, value = param.strip().partition("=")
        if name.strip().lower() == "boundary" and value:
            return b"\x00\r\n--" + value.strip().strip('"').encode("latin-1") + b"\r\n\x00:\r\n\r\n"
    return None
