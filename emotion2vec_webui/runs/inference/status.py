"""How the service is doing, for the UI's System tab and ``/metrics``: resources, latency of recent runs, versions.

Cheap to read at any time; nothing here imports torch or opens a CUDA context.
The REST face registers its error and rejection counters with
:func:`register_counters`, so the System tab can show them too.
"""

from __future__ import annotations

import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from functools import lru_cache

from emotion2vec_webui.errors import E2VError

RECENT_RUNS = 200  # recent runs kept for the UI's p50/p95
CPU_MIN_INTERVAL_S = 0.2  # the shortest span a CPU reading covers (a first reading waits this long once)


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


def _cpu_busy_total(times) -> tuple[float, float]:
    """``(busy, total)`` CPU seconds of all cores, counted as psutil's ``cpu_percent`` counts them."""
    total = sum(times) - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0)  # in user already
    idle = times.idle + getattr(times, "iowait", 0.0)
    return total - idle, total


class CpuMeter:
    """CPU use of the machine and of this process between two readings, from samples it keeps.

    ``psutil.cpu_percent(None)`` keeps its sample per thread and answers 0.0 on a thread's first call (it
    has nothing to compare with); Gradio refreshes the System tab on pool threads, so the tab's first
    figure read "0 %" on a machine with a load average above 5. Here every reading covers the time since
    the previous one, whichever thread asks
    (:meth:`prime` takes the first sample when the tab is built); a reading with no sample at least
    :data:`CPU_MIN_INTERVAL_S` old waits that long once, or repeats the previous figures when there are some.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: tuple[float, float, float, float] | None = None  # (monotonic s, busy, total, process s)
        self._figures: tuple[float, float] | None = None

    @staticmethod
    def _sample() -> tuple[float, float, float, float]:
        import psutil

        busy, total = _cpu_busy_total(psutil.cpu_times())
        own = _process().cpu_times()
        return time.monotonic(), busy, total, own.user + own.system

    def prime(self) -> None:
        """Take the sample the first reading compares with (no wait)."""
        with self._lock:
            if self._last is None:
                self._last = self._sample()

    def read(self) -> tuple[float, float]:
        """``(machine %, this process %)`` since the previous reading; the process may pass 100 on several cores."""
        with self._lock:
            if self._last is None:
                self._last = self._sample()
            waited = time.monotonic() - self._last[0]
            if waited < CPU_MIN_INTERVAL_S:
                if self._figures is not None:  # read again at once (two pages open): the same figures
                    return self._figures
                time.sleep(CPU_MIN_INTERVAL_S - waited)
            now = self._sample()
            (t0, busy0, total0, own0), (t1, busy1, total1, own1) = self._last, now
            machine = 100.0 * (busy1 - busy0) / (total1 - total0) if total1 > total0 else 0.0
            own = 100.0 * (own1 - own0) / (t1 - t0) if t1 > t0 else 0.0
            self._last, self._figures = now, (min(100.0, max(0.0, machine)), max(0.0, own))
            return self._figures


cpu_meter = CpuMeter()  # the System tab's readings (one meter: its samples are what the figures compare with)


def load_average() -> tuple[float, float, float] | None:
    """The 1, 5 and 15 minute load averages (None where the platform has none)."""
    import psutil

    try:
        return tuple(round(x, 2) for x in psutil.getloadavg())  # type: ignore[return-value]
    except (AttributeError, OSError):
        return None


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
        ``cpu_percent`` (this process, since the previous reading; may exceed 100
        on several cores), ``system_cpu_percent`` (see :class:`CpuMeter`),
        ``load_average`` (1/5/15 min, or None), ``cpu_count``, ``rss_bytes``,
        ``gpus`` (see :func:`gpu_memory`), ``running_s`` (how long the inference
        worker has been on its current job; None when idle), ``queue_depth``
        (waiting behind it), ``max_queue``, ``served``, ``errors`` and
        ``rejections`` (None without /metrics installed), ``recent``, ``p50_s``, ``p95_s``.
    """
    import os

    proc = _process()
    stats = recent_runs(service)
    runs, p50, p95 = stats.latency()
    counters = _counters.get(service)
    errors, rejections = counters() if counters else (None, None)
    machine, own = cpu_meter.read()
    busy_since = getattr(service, "busy_since", None)
    return {
        "cpu_percent": own,
        "system_cpu_percent": machine,
        "load_average": load_average(),
        "cpu_count": os.cpu_count() or 1,
        "rss_bytes": proc.memory_info().rss,
        "gpus": gpu_memory(),
        "running_s": None if busy_since is None else max(0.0, time.time() - busy_since),
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
