"""The server-side service shared by the UI and the REST API.

It loads the model in the background (the page and ``/healthz`` answer at
once) and owns the one inference worker per device, fed by the scheduler
(:mod:`scheduler`): typed :class:`InferenceRequest` s, batched by length,
interactive work ahead of background jobs, each client its share. Only the
model runs on the worker; a job's other work (decode, heads, assembly,
conversation models, the run-folder write, training's bookkeeping) runs in
the caller's thread (:meth:`Service.call`, :meth:`Service.recognize`) or a job
thread (:meth:`Service.submit`), reaching the model through a
:class:`QueuedEngine`. Beyond ``E2V_MAX_QUEUE`` jobs waiting for the worker a
new job fails at once with ``overloaded`` instead of piling up.

The escape hatch, for code that must hold the engine itself (a closure
``fn(engine)`` that calls the module directly): :meth:`Service.call_on_worker`
runs it on the worker, alone, in its priority's turn. No face needs it today.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from emotion2vec_webui.audio.decoder_pool import prestart
from emotion2vec_webui.config import Settings
from emotion2vec_webui.engine.engine import EmotionEngine
from emotion2vec_webui.engine.result import EmotionResult
from emotion2vec_webui.errors import E2VError, ModelUnavailableError, OverloadedError
from emotion2vec_webui.model.resolve import ModelInfo
from emotion2vec_webui.runs.inference.scheduler import (
    LIVE_MAX_AGE_S,
    PRIORITIES,
    InferenceRequest,
    QueuedEngine,
    Scheduler,
    StaleWindow,
    policy_for,
)
from emotion2vec_webui.runs.live.stream_tickets import StreamTickets
from emotion2vec_webui.runs.recognize import Recognition, RecognizeOptions, RunOutcome

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class ModelStatus:
    state: str  # "loading", "ready" or "unavailable"
    message: str  # what a person reads (the reason and fix when unavailable)
    info: ModelInfo | None = None  # set when ready


class Service:
    """Model lifecycle, the scheduler in front of the model, and the jobs that use it.

    Args:
        settings: the server's settings (``E2V_MAX_QUEUE``, ``E2V_BATCH_*``).
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
        self.scheduler = Scheduler(lambda: self.engine)
        if engine is not None:
            self.scheduler.policy = policy_for(engine, settings)
        self._loader: threading.Thread | None = None
        self._started = False
        self._jobs = ThreadPoolExecutor(max_workers=max(4, settings.max_queue + 2), thread_name_prefix="e2v-job")
        self._jobs_waiting = 0  # submitted jobs not yet started (they count in the queue)
        self._count_lock = threading.Lock()
        self.started_at = time.time()
        # Metrics and UI stats: told of every RunOutcome a job produces (whoever started it),
        # and of the exception when recognize() fails.
        self.observers: list[Callable[[RunOutcome | BaseException], None]] = []
        self.stream_tickets = StreamTickets()  # the Live tab's passes to /api/v1/stream (runs/live/stream_tickets.py)

    # -- lifecycle -------------------------------------------------------
    def start(self) -> None:
        """Start the inference worker, the decode workers and, if needed, load the model in the background."""
        prestart()  # the decode workers start in the background, so the first request does not wait for them
        if not self._started:
            self._started = True
            self.scheduler.start()
            if self._engine is not None:
                log.info("batching: %s", self.scheduler.policy.reason)
        if self._engine is None and self._loader is None:
            self._loader = threading.Thread(target=self._load, name="e2v-model-loader", daemon=True)
            self._loader.start()

    def stop(self) -> None:
        self.scheduler.stop()
        self._jobs.shutdown(wait=False, cancel_futures=True)

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
        self.scheduler.policy = policy_for(engine, s)
        log.info("batching: %s", self.scheduler.policy.reason)
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
        """Jobs waiting for the worker: queued model calls (a job's many segments count once) and jobs not started."""
        return self.scheduler.depth + self._jobs_waiting

    @property
    def busy_since(self) -> float | None:
        """When the inference worker took what it runs now (wall clock; None when idle), for the System tab."""
        return self.scheduler.busy_since

    def _admit(self) -> None:
        """Raise ``overloaded`` when ``E2V_MAX_QUEUE`` jobs already wait (a job's own later calls never do)."""
        if self.queue_depth >= max(1, self.settings.max_queue):
            raise OverloadedError()

    def engine_for(self, priority: str = "interactive", client: str | None = None, job: int | None = None):
        """A :class:`QueuedEngine`: the engine as a job sees it, its model calls queued at ``priority``."""
        if priority not in PRIORITIES:
            raise ValueError(f"priority must be one of {', '.join(PRIORITIES)}, not {priority!r}")
        return QueuedEngine(self.engine, self.scheduler, priority, client or f"{priority}:{threading.get_ident()}", job)

    def infer(self, request: InferenceRequest) -> Future:
        """Queue one typed model call; the future gives its :class:`EmotionResult` (features when ``frames``).

        Raises:
            ModelUnavailableError: the model is not ready.
            OverloadedError: the queue is full (answer 503 at once).
        """
        _ = self.engine
        self._admit()
        return self.scheduler.submit(request)

    def classify(self, waveform: np.ndarray, *, granularity: str = "utterance", embedding: bool = False,
                 priority: str = "interactive", client: str | None = None) -> EmotionResult:  # fmt: skip
        """One waveform's result through the queue (long audio in windows, each its own request)."""
        _ = self.engine
        self._admit()
        with self.scheduler.job(priority) as job:
            engine = self.engine_for(priority, client, job)
            return engine.recognize(waveform, granularity, embedding, self.settings.window_s)

    def live_window(self, waveform: np.ndarray, *, client: str, max_age_s: float = LIVE_MAX_AGE_S):
        """A live window's utterance result, ahead of everything else; None when it was dropped as stale (a newer
        window of ``client`` arrived, or it was not started within ``max_age_s``): the next round takes a newer one.

        Raises:
            E2VError: ``model_unavailable``, ``audio_too_short``.
        """
        _ = self.engine
        request = InferenceRequest(waveform, "utterance", False, window_s=self.settings.window_s, priority="live",
                                   client=client, max_age_s=max_age_s)  # fmt: skip
        try:
            return self.scheduler.submit(request).result()
        except StaleWindow:
            return None

    def call(self, fn: Callable[..., T], *, priority: str = "interactive", client: str | None = None) -> T:
        """Run ``fn(engine)`` here, in the caller's thread; only its model calls go to the worker (queued at
        ``priority`` for ``client``'s share, see :class:`QueuedEngine`). A :class:`RunOutcome` it returns is
        told to the observers.

        Raises:
            ModelUnavailableError: the model is not ready.
            OverloadedError: ``E2V_MAX_QUEUE`` jobs already wait.
        """
        _ = self.engine
        self._admit()
        return self._run_job(fn, priority, client)

    def submit(self, fn: Callable[..., T], *, priority: str = "interactive", client: str | None = None) -> Future:
        """:meth:`call` on a job thread: the future gives ``fn(engine)``'s result; cancelling it before the job
        starts drops the job (a client that went away)."""
        _ = self.engine
        self._admit()
        with self._count_lock:
            self._jobs_waiting += 1
        started = threading.Event()

        def job():
            with self._count_lock:
                self._jobs_waiting -= 1
            started.set()
            return self._run_job(fn, priority, client)

        try:
            future = self._jobs.submit(job)
        except RuntimeError:  # shut down
            with self._count_lock:
                self._jobs_waiting -= 1
            raise OverloadedError() from None
        future.add_done_callback(lambda f: self._uncount(f, started))
        return future

    def _uncount(self, future: Future, started: threading.Event) -> None:
        if future.cancelled() and not started.is_set():
            with self._count_lock:
                self._jobs_waiting -= 1

    def _run_job(self, fn: Callable[..., T], priority: str, client: str | None) -> T:
        with self.scheduler.job(priority) as job:
            result = fn(self.engine_for(priority, client, job))
        if isinstance(result, RunOutcome):
            self._notify(result)  # before the caller wakes: its next /metrics read sees this run
        return result

    @contextlib.contextmanager
    def job_engine(self, priority: str = "background", client: str | None = None):
        """A long job's engine (a training job's feature extraction): admitted once (``overloaded`` only here),
        registered while the block runs; its model calls are queued at ``priority`` for ``client``'s share."""
        _ = self.engine
        self._admit()
        with self.scheduler.job(priority) as job:
            yield self.engine_for(priority, client, job)

    def call_on_worker(self, fn: Callable[[EmotionEngine], T], *, priority: str = "interactive",
                       client: str | None = None) -> T:  # fmt: skip
        """The escape hatch: ``fn(engine)`` on the inference worker itself, alone, in its priority's turn.

        For code that must hold the engine (its module, its lock) rather than make model calls; everything it
        does holds the model, so keep it short. No face uses it today.
        """
        _ = self.engine
        self._admit()
        return self.scheduler.submit_call(fn, priority, client or f"{priority}:{threading.get_ident()}").result()

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
        priority: str = "interactive",
        client: str | None = None,
    ) -> RunOutcome:
        """Decode (in a decode worker, see :mod:`decoder_pool`), classify (its model calls on the worker),
        assemble and write the run folder (here).

        ``progress(fraction, step)`` hears of each step (decoded, writing), for a UI's progress bar.

        Raises:
            E2VError: audio errors, ``model_unavailable``, ``overloaded``.
        """
        flow = Recognition(self.settings, options, request_id=request_id, write=write)
        flow.progress = progress
        try:
            _ = self.engine  # fail fast (model_unavailable) before decoding
            outcome = flow.run(source, functools.partial(self.call, priority=priority, client=client), source_name)
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


__all__ = ["E2VError", "InferenceRequest", "ModelStatus", "Service"]
