"""One logging set-up for every entry point: readable text on a terminal, or JSON lines.

``--log-level`` / ``E2V_LOG_LEVEL`` and ``E2V_LOG_FORMAT=json`` choose the
terminal output; the server also keeps a size-capped rotating file of JSON
lines (:func:`log_to_file`, under ``E2V_LOG_DIR``, default ``logs/``).

Every handler we install carries :class:`RedactFilter`: a safety net so that
uploaded audio (base64 bodies, ``data:`` URIs, bytes reprs) never lands in a
log line even if some code logs a request body by mistake.
"""

from __future__ import annotations

import contextvars
import json
import logging
import logging.handlers
import re
import sys
from datetime import datetime
from pathlib import Path

# The id of the request being handled; set by the server's middleware, read by the log formatters.
request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("e2v_request_id", default=None)

_NOISY = ("funasr", "modelscope", "urllib3", "httpx", "matplotlib", "numba", "jieba", "PIL")

# The server's log file, its size cap and the number of rotated files kept (server.log.1 … .5).
SERVER_LOG_NAME = "server.log"
LOG_FILE_MAX_BYTES = 10 * 1024 * 1024
LOG_FILE_BACKUPS = 5

# A log message longer than this is cut (a stray request body must not fill the disk).
MAX_MESSAGE_CHARS = 8000
# Runs of base64/hex-looking characters at least this long are replaced: no word, path or id is that long.
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/_\-]{120,}={0,2}")
_DATA_URI = re.compile(r"data:[\w.+\-]+/[\w.+\-]+(?:;[\w=.+\-]+)*,[^\s\"']{16,}")
# Escaped bytes as Python prints them (b'RIFF\x00\x10…'): 16 or more escapes in a row.
_BYTE_ESCAPES = re.compile(r"(?:\\x[0-9a-fA-F]{2}){16,}")


def redact(text: str) -> str:
    """Replace what looks like encoded or raw audio in a log text, and cap its length.

    Args:
        text: a rendered log message or traceback.

    Returns:
        The text with ``data:`` URIs, long base64/hex runs and long runs of
        ``\\xNN`` escapes replaced by ``<redacted N chars>``, cut to
        ``MAX_MESSAGE_CHARS``.
    """
    if len(text) < 16:
        return text

    def mark(m: re.Match) -> str:
        found = m.group(0)
        if found.count("/") * 24 > len(found):  # a long path, not base64 (which has ~1 '/' in 64)
            return found
        return f"<redacted {len(found)} chars>"

    text = _DATA_URI.sub(mark, text)
    text = _BASE64_RUN.sub(mark, text)
    text = _BYTE_ESCAPES.sub(mark, text)
    if len(text) > MAX_MESSAGE_CHARS:
        text = f"{text[:MAX_MESSAGE_CHARS]}… <cut {len(text) - MAX_MESSAGE_CHARS} chars>"
    return text


class RedactFilter(logging.Filter):
    """Renders each record's message (and traceback) once, redacted, before any handler formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_e2v_redacted", False):
            return True
        try:
            message = record.getMessage()
        except Exception:  # a bad %-format: keep logging's own error path
            return True
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        record._e2v_redacted = True
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id when known."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created).astimezone().isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or request_id_var.get()
        if request_id:
            entry["request_id"] = request_id
        if record.exc_info or record.exc_text:
            entry["exc_info"] = record.exc_text or self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``HH:MM:SS LEVEL logger: message [request id]`` for people at a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        request_id = getattr(record, "request_id", None) or request_id_var.get()
        return f"{text} [{request_id}]" if request_id else text


class _DropFunasrChatter(logging.Filter):
    """FunASR logs routine notices (e.g. ``trust_remote_code: False``) as root WARNINGs."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR and "/funasr/" in (record.pathname or ""):
            return record.levelno >= logging.WARNING and not record.getMessage().startswith("trust_remote_code")
        return True


def _own(handler: logging.Handler, kind: str) -> logging.Handler:
    handler._e2v = kind  # type: ignore[attr-defined]
    handler.addFilter(_DropFunasrChatter())
    handler.addFilter(RedactFilter())
    return handler


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of each record (it may be swapped, e.g. by pytest)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def setup_logging(level: str = "INFO", fmt: str = "text", stream=None) -> None:
    """Configure the root logger once (idempotent: replaces our previous terminal handler).

    Args:
        level: DEBUG, INFO, WARNING or ERROR.
        fmt: ``text`` (readable) or ``json`` (one object per line).
        stream: where to write (default stderr).
    """
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_e2v", None) == "stream" or h.__class__ is logging.NullHandler:
            root.removeHandler(h)
    handler = _own(logging.StreamHandler(stream) if stream is not None else _StderrHandler(), "stream")
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    for name in _NOISY:
        logging.getLogger(name).setLevel(max(root.level, logging.WARNING))


def rotating_file_handler(
    path: Path, max_bytes: int = LOG_FILE_MAX_BYTES, backups: int = LOG_FILE_BACKUPS
) -> logging.handlers.RotatingFileHandler:
    """A size-capped JSON-lines file handler with our filters (the file holds at most ``max_bytes``).

    Args:
        path: the log file; its folder is created.
        max_bytes: size at which the file rotates to ``path.1`` (… ``path.N``).
        backups: rotated files kept; older ones are deleted.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.handlers.RotatingFileHandler(
        path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8", delay=True
    )
    handler.setFormatter(JsonFormatter())
    return _own(handler, "file")


def log_to_file(log_dir: Path, name: str = SERVER_LOG_NAME) -> Path | None:
    """Also write every log record to ``log_dir/name`` (rotating, 10 MB × 5, JSON lines).

    Idempotent: a second call replaces the previous file handler. A folder
    that cannot be written (read-only container) is logged, not fatal.

    Args:
        log_dir: the folder (``E2V_LOG_DIR``; default ``logs``).
        name: the file name.

    Returns:
        The path of the log file, or None when it cannot be written.
    """
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_e2v", None) == "file":
            root.removeHandler(h)
            h.close()
    path = Path(log_dir) / name
    try:
        handler = rotating_file_handler(path)
        handler._open().close()  # fail here, not on the first record
    except OSError as exc:
        logging.getLogger(__name__).warning(
            "cannot write the log file %s (%s); logging to the terminal only", path, exc
        )
        return None
    root.addHandler(handler)
    logging.getLogger(__name__).info("logging to %s (JSON lines, rotated at %d MB)", path, handler.maxBytes >> 20)
    return path
