"""Relaying a run's progress to Gradio's bar from the thread Gradio gave the event.

Gradio's ``gr.Progress`` finds its page through a context variable of the event's own
thread; called from any other thread (the service's inference worker, which reports
"window k of n") it silently does nothing. :func:`relay_progress` runs the work on a
helper thread, keeps the latest step it reports, and passes each new one on from the
event's thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
POLL_S = 0.2  # how often the event's thread looks for a new step


def relay_progress(
    work: Callable[[Callable[[float, str], None]], T],
    show: Callable[[float, str], object],
    poll_s: float = POLL_S,
) -> T:
    """Run ``work(step)`` on a helper thread; each new ``step(fraction, text)`` reaches ``show`` from this thread.

    Args:
        work: the job; it reports through the ``step`` it is given, from any thread.
        show: the page's bar (``gr.Progress``), called only from the calling thread.
        poll_s: the longest a step waits before it is shown.

    Returns:
        What ``work`` returned (its exception is raised here).
    """
    latest: list[tuple[float, str]] = []
    changed = threading.Event()
    lock = threading.Lock()

    def step(fraction: float, text: str) -> None:
        with lock:
            latest[:] = [(fraction, text)]
        changed.set()

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="e2v-ui-run") as pool:
        future = pool.submit(work, step)
        shown = None
        while True:
            done = future.done()
            changed.wait(poll_s)
            changed.clear()
            with lock:
                now = latest[0] if latest else None
            if now is not None and now != shown:
                shown = now
                try:
                    show(*now)
                except Exception:  # a closed page never fails the run
                    pass
            if done:
                return future.result()
