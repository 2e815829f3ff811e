"""How the service is doing, for the UI's System tab and ``/metrics``: resources, latency of recent runs, versions.

Cheap to read at any time; nothing here imports torch or opens a CUDA context.
The REST face registers its error and rejection counters with
:func:`register_counters`, so the System tab can show them too.
"""

from __future__ import annotations

import sys
import threading
import weakref
from collections import deque
from collections.abc import Callable
from functools import lru_cache

from emotion2vec_webui.errors import E2VError

RECENT_RUNS = 200  # recent runs kept for the UI's p50/p95


def outcome_of(event) -> str:
    """``ok`` for a RunOutcome, else the error code (``internal_error`` for anything unexpected)."""
    if isinstance(event, E2VError):
        return event.code
    if isinstance(event, BaseException):
        return "internal_error"
    return "ok"


# -- recent runs (the UI's live view) -----------------------------------------------


class RecentRuns:
    """Count and processing times of the service's latest recognitions (a service observer)."""

    def __init__(self, size: int = RECENT_RUNS) -> None:
        self._times: deque[float] = deque(maxlen=size)
        self._lock = threading.Lock()
        self.served = 0  # recognitions that produced a result

    def __call__(self, event) -> None:
        if outcome_of(event) != "ok":
            return
        with self._lock:
            self.served += 1
            self._times.append(float(event.result.get("processing_time_s", 0.0)))

    def latency(self) -> tuple[int, float | None, float | None]:
        """``(runs, p50, p95)`` of the processing times kept (nearest rank; None when empty)."""
        with self._lock:
            times = sorted(self._times)
        if not times:
            return 0, None, None

        def rank(q: float) -> float:
            return times[min(len(times) - 1, max(0, int(q * len(times) + 0.999999) - 1))]

        return len(times), rank(0.50), rank(0.95)


_recent: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_counters: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # service → () → (errors, rejections)
_recent_lock = threading.Lock()


def recent_runs(service) -> RecentRuns:
    """The :class:`RecentRuns` observing ``service`` (attached on first use)."""
    with _recent_lock:
        stats = _recent.get(service)
        if stats is None:
            stats = _recent[service] = RecentRuns()
            service.observers.append(stats)
        return stats


# -- resources ----------------------------------------------------------------------


@lru_cache(maxsize=1)
def _process():
    import psutil

    return psutil.Process()


def gpu_memory() -> list[dict]:
    """Per CUDA device: allocated, reserved and peak bytes; empty without CUDA in use.

    Reads torch only when something else already imported it and CUDA is
    initialised, so scraping never imports torch or opens a CUDA context.
    """
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return []
    return [
        {
            "device": f"cuda:{i}",
            "allocated": torch.cuda.memory_allocated(i),
            "reserved": torch.cuda.memory_reserved(i),
            "peak": torch.cuda.max_memory_allocated(i),
        }
        for i in range(torch.cuda.device_count())
    ]


def resources(service) -> dict:
    """A snapshot for the system tab: CPU, memory, GPU memory, queue, runs served, latency.

    Returns:
        ``cpu_percent`` (this process, since the previous call; may exceed 100
        on several cores), ``system_cpu_percent``, ``rss_bytes``, ``gpus``
        (see :func:`gpu_memory`), ``queue_depth``, ``max_queue``, ``served``,
        ``errors`` and ``rejections`` (None without /metrics installed),
        ``recent``, ``p50_s``, ``p95_s``.
    """
    import psutil

    proc = _process()
    stats = recent_runs(service)
    runs, p50, p95 = stats.latency()
    counters = _counters.get(service)
    errors, rejections = counters() if counters else (None, None)
    return {
        "cpu_percent": proc.cpu_percent(None),
        "system_cpu_percent": psutil.cpu_percent(None),
        "rss_bytes": proc.memory_info().rss,
        "gpus": gpu_memory(),
        "queue_depth": service.queue_depth,
        "max_queue": service.settings.max_queue,
        "served": stats.served,
        "errors": errors,
        "rejections": rejections,
        "recent": runs,
        "p50_s": p50,
        "p95_s": p95,
    }


@lru_cache(maxsize=1)
def versions() -> dict[str, str]:
    """Versions of the app, Python and the main libraries (``-`` when not installed)."""
    from importlib import metadata

    from emotion2vec_webui import __version__

    found = {"app": __version__, "python": sys.version.split()[0]}
    for name in ("torch", "funasr", "gradio", "fastapi"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "-"
    return found


def register_counters(service, read: Callable[[], tuple[float, float]]) -> None:
    """Let :func:`resources` report ``(errors, rejections)`` totals kept elsewhere (the /metrics counters)."""
    _counters[service] = read
