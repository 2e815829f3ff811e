"""Running a coroutine from a synchronous test, whatever the main thread holds."""

from __future__ import annotations

import asyncio
import threading


def run_async(coro):
    """``asyncio.run`` on a thread of its own: a browser test earlier in the session (Playwright's sync API)
    can leave an event loop running on the main thread, where ``asyncio.run`` refuses to start."""
    out: dict = {}

    def target():
        try:
            out["value"] = asyncio.run(coro)
        except BaseException as exc:  # raised again on the caller's thread
            out["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in out:
        raise out["error"]
    return out["value"]
