"""The session's configured servers started ahead of their first use, one at a time, on a background thread.

A full run's pytest process keeps about one of this machine's two cores busy (1.2-1.5 cores in all, sampled
from /proc/stat over a fresh-clone run); a server start is ~8 s of CPU in imports and the model load. Started
early, in the order the collected tests first ask for them, the starts run beside the first tests instead of
in the setup of the test that needs them. A server fixture asks :meth:`EarlyServers.get` for its server by
name: it waits for an early start under way, or starts the server itself when none was queued (a run of one
module, or ``E2V_TEST_EARLY_SERVERS=0``). Every server stops at the end of the session, taken or not.

Which servers: :data:`PLANS` maps a server fixture's name to ``plan(request) → (name, start)``; the plan runs
on the main thread (fixtures, folders, settings); ``start(early)`` starts the server through
:meth:`EarlyServers.enter` and waits until it is ready, on the background thread. What ``start`` returns is
what the fixture gets: a server, or something that runs beside the suite on a thread of its own once its
server is up (test_stream's 60 s take at real time). Plans marked ``lead`` (:data:`LEAD`) are queued right after
the first server, whatever their tests' place in the run, so that a long wait in real time begins early.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Callable

# server fixture name → plan(request) → (name, start(early) → the ready server)
PLANS: dict[str, Callable] = {}
# plans queued right after the first server wanted, whatever their tests' order: a long wait in real time
# (test_stream's 60 s take) started early runs beside most of the suite
LEAD: set[str] = set()


def plan(fixture_name: str, lead: bool = False):
    """Register the decorated ``plan(request)`` for the server fixture ``fixture_name`` (``lead``: see LEAD)."""

    def register(fn):
        PLANS[fixture_name] = fn
        if lead:
            LEAD.add(fixture_name)
        return fn

    return register


def in_start_order(wanted: list[str]) -> list[str]:
    """``wanted`` (plan names in the order the tests first ask for them) with the LEAD plans second."""
    rest = wanted[1:]
    return wanted[:1] + [n for n in rest if n in LEAD] + [n for n in rest if n not in LEAD]


def plan_start(fixture_name: str, start, fixtures=("tiny_model_dir", "tmp_path_factory")) -> None:
    """Register the plan of a server that ``start(*the values of fixtures)`` prepares (folders, settings)."""
    PLANS[fixture_name] = lambda request: (fixture_name, start(*map(request.getfixturevalue, fixtures)))


def enabled() -> bool:
    return os.environ.get("E2V_TEST_EARLY_SERVERS", "1") != "0"


class EarlyServers:
    """Servers started in the background, handed to their fixtures on request; all stopped by :meth:`close`."""

    def __init__(self) -> None:
        self._stack = contextlib.ExitStack()
        self._done: dict[str, threading.Event] = {}
        self._result: dict[str, object] = {}
        self._error: dict[str, BaseException] = {}
        self._jobs: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._current = None  # the server being started in the background (stopped at once by close)
        self._entered: list = []
        self._thread: threading.Thread | None = None

    def queue(self, name: str, start: Callable) -> None:
        """Start ``start`` under ``name`` in the background, after those queued before it."""
        with self._lock:
            if name in self._done:
                return
            self._done[name] = threading.Event()
        self._jobs.put((name, start))
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="e2v-early-servers", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._closing.is_set():
            try:
                name, start = self._jobs.get(timeout=0.5)
            except queue.Empty:
                continue
            self._start(name, start)

    def _start(self, name: str, start: Callable) -> None:
        try:
            if self._closing.is_set():
                raise RuntimeError("the session ended before this server was started")
            self._result[name] = start(self)
        except BaseException as exc:  # raised in the fixture that asks for it
            self._error[name] = exc
        finally:
            self._current = None
            self._done[name].set()

    def enter(self, server):
        """For ``start`` functions: enter ``server`` (start it, wait for it) on the session's stack."""
        self._current = server
        self._entered.append(server)
        return self._stack.enter_context(server)

    def get(self, name: str, start: Callable[[], Callable]):
        """The server ``name``: the early start's (waited for), or started now by ``start()(self)``."""
        with self._lock:
            queued = name in self._done
            if not queued:
                self._done[name] = threading.Event()
        if not queued:
            self._start(name, start())
        self._done[name].wait()
        if name in self._error:
            raise self._error[name]
        return self._result[name]

    def planned(self, fixture_name: str, request):
        """The server of the plan registered for ``fixture_name``: started early, or now."""
        return self.get(fixture_name, lambda: PLANS[fixture_name](request)[1])

    def close(self) -> None:
        self._closing.set()
        current = self._current
        if current is not None and getattr(current, "proc", None) is not None:
            with contextlib.suppress(Exception):
                current.proc.terminate()  # a start under way ends at once (its wait sees the process gone)
        if self._thread is not None:
            self._thread.join(60)
        from tests.server_util import ServerProcess

        for server in self._entered:  # all told to stop at once (~0.5 s each, a dozen of them), then waited for
            if isinstance(server, ServerProcess) and server.alive():
                with contextlib.suppress(Exception):
                    server.proc.terminate()
        self._stack.close()
