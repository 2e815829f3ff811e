"""Files served from one open descriptor: the size, the ETag and the bytes all come from the same file.

Starlette's ``FileResponse`` takes the size from ``stat(path)`` and opens the
path again when it streams. A run artifact replaced in between — a speaker
rename writes each file to a temp file and renames it over the old one
(``files.write_atomic``) — is then sent with the other version's
``Content-Length``, and the download is cut ("Too much data for declared
Content-Length"; issue 26 counted 42 cut downloads in 864). Here the file is
opened once (``O_NOFOLLOW``), ``Content-Length``, ``ETag`` and
``Last-Modified`` come from ``fstat`` of that descriptor, and the body is read
from it with ``pread``: a rename over the path leaves the open file whole, so
a download is the old version or the new one, never a mix.

Ranges, for the UI's audio player and seeking: one byte range (``bytes=a-b``,
``a-``, ``-n``) is answered ``206`` with ``Content-Range``; a range starting
past the end ``416 range_not_satisfiable`` (the error shape, ``Content-Range: bytes */<size>``); several ranges or a malformed header are ignored and the
whole file is sent (``200``), as RFC 9110 allows; ``If-Range`` naming another
ETag or date sends the whole file.
"""

from __future__ import annotations

import hashlib
import os
import stat
from email.utils import formatdate
from pathlib import Path
from urllib.parse import quote

import anyio
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.serving.errors import error_response

CHUNK_BYTES = 64 * 1024


class RangeNotSatisfiable(Exception):
    """The one range asked for starts past the end of the file (``416``)."""


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The one byte range a ``Range`` header asks of a ``size``-byte file, as ``(start, end)`` inclusive.

    Returns:
        None when there is no usable single range (absent, malformed, another unit, several ranges):
        the whole file is sent.

    Raises:
        RangeNotSatisfiable: the range starts at or past the end (or asks for the last 0 bytes).
    """
    unit, sep, spec = (header or "").partition("=")
    if not sep or unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    first, last = first.strip(), last.strip()
    if not dash or not _digits(first) or not _digits(last) or first == last == "":
        return None
    if first == "":  # the last N bytes
        if _number(last) == 0 or size == 0:
            raise RangeNotSatisfiable
        return max(0, size - _number(last)), size - 1
    start = _number(first)
    end = size - 1 if last == "" else min(_number(last), size - 1)
    if last != "" and _number(last) < start:
        return None  # invalid: ignored
    if start >= size:
        raise RangeNotSatisfiable
    return start, end


def _digits(text: str) -> bool:
    # ASCII digits only: str.isdigit() also takes "²" (a Latin-1 header can carry it), which int() refuses.
    return text == "" or (text.isascii() and text.isdigit())


def _number(digits: str) -> int:
    # More than 18 digits is past any file; int() of over 4,300 digits raises (CPython's conversion limit).
    return int(digits) if len(digits) <= 18 else 10**18


def _etag(st: os.stat_result) -> str:
    # Inode, size and mtime: a file renamed into place has a new inode, even within one mtime tick.
    key = f"{st.st_ino}-{st.st_size}-{st.st_mtime_ns}".encode()
    return '"' + hashlib.md5(key, usedforsecurity=False).hexdigest() + '"'


def content_disposition(filename: str) -> str:
    """``attachment`` with ``filename`` (RFC 6266; RFC 5987 encoding when it is not plain ASCII)."""
    quoted = quote(filename)
    return f"attachment; filename*=utf-8''{quoted}" if quoted != filename else f'attachment; filename="{filename}"'


class OpenFileResponse(StreamingResponse):
    """Streams bytes ``start``–``end`` (inclusive) of an open file, then closes it.

    Args:
        file: the open file (binary); the response owns it from now on.
        start: the first byte sent.
        end: the last byte sent (``start - 1`` for an empty file).
        status_code: 200 or 206.
        headers: the response headers, ``Content-Length`` among them.
        media_type: the ``Content-Type``.
    """

    def __init__(self, file, start: int, end: int, status_code: int, headers: dict, media_type: str) -> None:
        self._file = file
        super().__init__(self._chunks(start, end), status_code=status_code, headers=headers, media_type=media_type)

    async def _chunks(self, start: int, end: int):
        fd = self._file.fileno()
        try:
            while start <= end:
                chunk = await anyio.to_thread.run_sync(os.pread, fd, min(CHUNK_BYTES, end - start + 1), start)
                if not chunk:  # truncated in place (never by our writers): end short, the server closes
                    return
                start += len(chunk)
                yield chunk
        finally:
            self._file.close()


def _open_regular(path: Path):
    """``path`` opened for reading (no symlink as the last part) and its ``fstat``; None when not a file."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        return None
    return os.fdopen(fd, "rb", buffering=0), st


async def open_file_response(request: Request, path: Path, media_type: str, filename: str) -> Response:
    """The response that downloads ``path``: opened once, sized by ``fstat``, one byte range honoured.

    Args:
        request: the request (its ``Range`` and ``If-Range`` headers).
        path: the file, already checked to lie where it may be served from.
        media_type: its ``Content-Type``.
        filename: the name offered in ``Content-Disposition``.

    Raises:
        E2VError: ``not_found`` when the file vanished or is not a regular file.
    """
    opened = await anyio.to_thread.run_sync(_open_regular, Path(path))
    if opened is None:
        raise E2VError("not_found", "No such run or artifact. / 没有这个运行或文件。")
    file, st = opened
    headers = {
        "accept-ranges": "bytes",
        "etag": _etag(st),
        "last-modified": formatdate(st.st_mtime, usegmt=True),
        "content-disposition": content_disposition(filename),
    }
    start, end, status = 0, st.st_size - 1, 200
    if_range = request.headers.get("if-range")
    if if_range is None or if_range in (headers["etag"], headers["last-modified"]):
        try:
            wanted = byte_range(request.headers.get("range"), st.st_size)
        except RangeNotSatisfiable:
            file.close()
            # The one error shape like every other error (serving/errors.py), with the size a client can retry by.
            return error_response(
                "range_not_satisfiable",
                f"The byte range asked for starts past the end of the file ({st.st_size} bytes). "
                f"/ 请求的字节范围超出了文件末尾（文件共 {st.st_size} 字节）。",
                headers={"content-range": f"bytes */{st.st_size}", "accept-ranges": "bytes"},
            )
        if wanted is not None:
            (start, end), status = wanted, 206
            headers["content-range"] = f"bytes {start}-{end}/{st.st_size}"
    headers["content-length"] = str(end - start + 1)
    return OpenFileResponse(file, start, end, status, headers, media_type)
