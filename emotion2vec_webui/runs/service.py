"""The server-side service shared by the UI and the REST API.

It loads the model in the background (the page and ``/healthz`` answer at
once), and runs every model call on one inference worker per device, fed by
a bounded queue: beyond ``E2V_MAX_QUEUE`` waiting jobs a call fails at once
with ``overloaded`` instead of piling up.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TypeVar

from emotion2vec_webui.audio.decoder_pool import prestart
from emotion2vec_webui.config import Settings
from emotion2vec_webui.engine.engine import EmotionEngine
from emotion2vec_webui.errors import E2VError, ModelUnavailableError, OverloadedError
from emotion2vec_webui.model.resolve import ModelInfo
from emotion2vec_webui.runs.recognize import Recognition, RecognizeOptions, RunOutcome

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class ModelStatus:
    state: str  # "loading", "ready" or "unavailable"
    message: str  # what a person reads (the reason and fix when unavailable)
    info: ModelInfo | None = None  # set when ready


class Service:
    """Model lifecycle plus the bounded inference queue.

    Args:
        settings: the server's settings.
        engine: an already loaded engine (tests); when None, :meth:`start` loads one.
    """

    def __init__(self, settings: Settings, engine: EmotionEngine | None = None) -> None:
        self.settings = settings
        self._engine = engine
        self._status = (
            ModelStatus("ready", "model ready", engine.info)
            if engine
            else ModelStatus("loading", f"loading model {settings.model} …")
        )
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, settings.max_queue))
        self._worker: threading.Thread | None = None
        self._loader: threading.Thread | None = None
        self._stop = threading.Event()
        self.started_at = time.time()
        # Metrics and UI stats: told of every RunOutcome the worker produces (whoever queued it),
        # and of the exception when recognize() fails.
        self.observers: list[Callable[[RunOutcome | BaseException], None]] = []

    # -- lifecycle -------------------------------------------------------
    def start(self) -> None:
        """Start the inference worker, the decode workers and, if needed, load the model in the background."""
        prestart()  # the decode workers start in the background, so the first request does not wait for them
        if self._worker is None:
            self._worker = threading.Thread(target=self._work, name="e2v-inference", daemon=True)
            self._worker.start()
        if self._engine is None and self._loader is None:
            self._loader = threading.Thread(target=self._load, name="e2v-model-loader", daemon=True)
            self._loader.start()

    def stop(self) -> None:
        self._stop.set()

    def _load(self) -> None:
        s = self.settings
        try:
            engine = EmotionEngine.from_settings(s)
        except ModelUnavailableError as exc:
            log.error("model unavailable: %s", exc.message)
            self._status = ModelStatus("unavailable", exc.message)
            return
        except Exception as exc:  # a broken install must not kill the server
            log.exception("model failed to load")
            self._status = ModelStatus("unavailable", f"The model failed to load: {type(exc).__name__}: {exc}")
            return
        self._engine = engine
        self._status = ModelStatus("ready", "model ready", engine.info)

    def wait_ready(self, timeout: float | None = None) -> ModelStatus:
        """Block until the model is ready or unavailable (tests, CLI)."""
        if self._loader is not None:
            self._loader.join(timeout)
        return self._status

    @property
    def status(self) -> ModelStatus:
        return self._status

    @property
    def engine(self) -> EmotionEngine:
        """The loaded engine; raises ``model_unavailable`` while loading or after a failure."""
        if self._engine is None:
            st = self._status
            if st.state == "loading":
                raise ModelUnavailableError("The model is still loading; try again in a few seconds.")
            raise ModelUnavailableError(st.message)
        return self._engine

    # -- the queue ---------------------------------------------------------
    @property
    def queue_depth(self) -> int:
        return self._queue.qsize()

    def submit(self, fn: Callable[[EmotionEngine], T]) -> Future:
        """Queue ``fn(engine)`` for the inference worker.

        Raises:
            ModelUnavailableError: the model is not ready.
            OverloadedError: the queue is full (answer 503 at once).
        """
        engine = self.engine
        fut: Future = Future()
        try:
            self._queue.put_nowait((fn, engine, fut))
        except queue.Full:
            raise OverloadedError() from None
        return fut

    def call(self, fn: Callable[[EmotionEngine], T]) -> T:
        """Run ``fn(engine)`` on the worker and wait for its result (re-raising its error)."""
        return self.submit(fn).result()

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                fn, engine, fut = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            if not fut.set_running_or_notify_cancel():
                continue  # cancelled while waiting (e.g. the client went away)
            try:
                result = fn(engine)
            except BaseException as exc:  # delivered to the caller, never kills the worker
                fut.set_exception(exc)
                continue
            if isinstance(result, RunOutcome):
                self._notify(result)  # before the caller wakes: its next /metrics read sees this run
            fut.set_result(result)

    # -- the common operation ---------------------------------------------
    def recognize(
        self,
        source,
        *,
        source_name: str | None = None,
        options: RecognizeOptions = RecognizeOptions(),
        request_id: str | None = None,
        write: bool = True,
        progress: Callable[[float, str], None] | None = None,
    ) -> RunOutcome:
        """Decode (in a decode worker, see :mod:`decoder_pool`), classify (on the worker), write the run folder.

        ``progress(fraction, step)`` hears of each step (decoded, writing), for a UI's progress bar.

        Raises:
            E2VError: audio errors, ``model_unavailable``, ``overloaded``.
        """
        flow = Recognition(self.settings, options, request_id=request_id, write=write)
        flow.progress = progress
        try:
            _ = self.engine  # fail fast (model_unavailable) before decoding
            outcome = flow.run(source, self.call, source_name)
        except Exception as exc:
            self._notify(exc)
            raise
        return outcome

    def _notify(self, event: RunOutcome | BaseException) -> None:
        for observer in list(self.observers):
            try:
                observer(event)
            except Exception:  # an observer must never fail a request
                log.exception("service observer failed")


__all__ = ["E2VError", "ModelStatus", "Service"]
