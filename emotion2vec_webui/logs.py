"""One logging set-up for every entry point: readable text on a terminal, or JSON lines.

``--log-level`` / ``E2V_LOG_LEVEL`` and ``E2V_LOG_FORMAT=json``.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from datetime import datetime

# The id of the request being handled; set by the server's middleware, read by the log formatters.
request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("e2v_request_id", default=None)

_NOISY = ("funasr", "modelscope", "urllib3", "httpx", "matplotlib", "numba", "jieba", "PIL")


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
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class _DropFunasrChatter(logging.Filter):
    """FunASR logs routine notices (e.g. ``trust_remote_code: False``) as root WARNINGs."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR and "/funasr/" in (record.pathname or ""):
            return record.levelno >= logging.WARNING and not record.getMessage().startswith("trust_remote_code")
        return True


def setup_logging(level: str = "INFO", fmt: str = "text", stream=None) -> None:
    """Configure the root logger once (idempotent: replaces our previous handler)."""
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_e2v", False) or isinstance(h, logging.NullHandler):
            root.removeHandler(h)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler._e2v = True  # type: ignore[attr-defined]
    handler.addFilter(_DropFunasrChatter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S"))
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    for name in _NOISY:
        logging.getLogger(name).setLevel(max(root.level, logging.WARNING))
