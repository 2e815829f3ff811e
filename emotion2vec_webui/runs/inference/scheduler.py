"""The inference scheduler: typed requests in, length-bucketed padded batches on the one inference worker, results out.

One concept: what runs on the model, when, and together with what. It is the
only code that runs on the inference worker thread; everything else (decode,
heads, assembly, conversation models, writing run folders, training's
bookkeeping) runs in the callers' threads and reaches the model through
:class:`QueuedEngine`, which turns each model call into an
:class:`InferenceRequest`. Kept in one module because the pick (priority,
per-client share, length bucket, wait) and the execution (padded batch, split
back, fall back one by one) are one decision.

- **Priorities**: ``live`` (the Live tab's rolling windows), then
  ``interactive`` (UI, REST), then ``background`` (batch jobs, training
  features): the worker always takes the highest class waiting.
- **Per-client share**: within a class, clients take turns (round robin) and
  a batch is filled one request per client per pass, so one client's
  1,000-file batch cannot hold the model.
- **Stale live windows** are dropped, never queued: a newer window of the same
  client replaces a queued one, and a window not started within its
  ``max_age_s`` is dropped (:class:`StaleWindow`).
- **Batches**: requests of one class whose lengths are within ``max_padding``
  of each other share one padded, masked call (``engine.features_batch``,
  equal to one-by-one calls, see ``engine/batching.py``) under ``max_batch``
  clips and ``max_audio_s`` seconds of padded audio. Two ways to form them:

  - **no wait** (``wait_s = 0``, ``max_batch > 1``; a CPU's fp32 default): a
    request never waits for companions; when the worker is free it takes what
    is *already* queued and batches only clips of close lengths (a tight
    bucket), so a lone request starts at once and mixed lengths mostly run one
    by one, losing nothing. Batches form only while the worker is busy, which
    is when they pay (the continuous batching of vLLM or TGI, on arrival).
  - **a short wait** (``wait_s > 0``; a GPU's default, or ``E2V_BATCH_WAIT_MS``):
    the first request waits at most ``wait_s`` for companions, and only while
    more are expected: a job of its class is busy elsewhere (decoding,
    assembling), or fewer of its class are in flight than were in the last few
    seconds (clients that send again as soon as they are answered); the wait
    ends as soon as they are in, and never starts while requests of other
    lengths wait (the worker has work). A lone client never waits.

  ``max_batch = 1`` (``E2V_BATCH_WAIT_MS=0``) is one request at a time, as
  before batching.
- **Per device and precision** (:func:`batch_policy`), from measurements on
  the large model (issue 28; ``benchmarks/serving_throughput.md``): a 2-core
  CPU in fp32 ran batches of 4/8/16 equal 3 s clips 1.16x/1.20x/1.09x faster
  than one by one, in int8 0.99x/0.97x/0.75x; through HTTP, waiting for
  companions (100-200 ms) gave 0.89-1.17x on 3 s clips and lost on mixed
  lengths (0.86-0.90x). So a CPU in fp32 does not wait: it batches what is
  queued, lengths within 10 %, up to 8 clips / 24 s of padded audio (8 x 3 s,
  the largest batch measured to pay); int8, bf16 (not measured to pay) and
  ONNX run one at a time; and a CPU never batches background work (a batch's
  time grows with its size, and an interactive request arriving meanwhile
  would wait for all of it). CUDA waits a few ms and batches everything,
  sized from the device's free memory.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from emotion2vec_webui.audio.format import SAMPLE_RATE
from emotion2vec_webui.engine.result import EmotionResult, check_waveforms, result_from_features

log = logging.getLogger(__name__)

PRIORITIES = ("live", "interactive", "background")  # served in this order
LIVE_MAX_AGE_S = 2.0  # a live window not started within this is dropped (the next one is newer)
CUDA_WAIT_MS = 5.0  # a GPU's wait: a few ms, as Triton's dynamic batcher is usually set
CPU_FP32_MAX_BATCH = 8  # 8 clips paid best on the 2-core CPU (1.20x); 16 less (1.09x)
CPU_MAX_AUDIO_S = 24.0  # padded audio per CPU batch: 8 x 3 s, the largest batch measured to pay in fp32
CPU_MAX_PADDING = 0.10  # a CPU batches clips within 10 % of the longest's length: padding costs what batching gains
CUDA_MAX_BATCH = 128
WAIT_SHARE = 0.25  # the wait for companions is at most this share of the last model call's time
PEAK_MEMORY_S = 2.0  # how long requests in flight at once are remembered (from their arrival, and their answer)


class StaleWindow(Exception):
    """A live window dropped unanswered: a newer one of its client arrived, or it waited past ``max_age_s``."""


@dataclass(eq=False)
class InferenceRequest:
    """One model call: a 16 kHz mono float32 waveform and what is wanted from it."""

    waveform: np.ndarray
    granularity: str = "utterance"  # utterance | frame (per-frame logits and a [T, D] embedding)
    embedding: bool = True  # return the embedding
    frames: bool = False  # return the frame features [T, D] themselves (a long recording's window), not a result
    window_s: float = 30.0  # longer audio runs in windows (alone on the worker; QueuedEngine splits it first)
    priority: str = "interactive"  # live | interactive | background
    client: str = ""  # whose share (a REST client, a UI session, a batch, a training job)
    max_age_s: float | None = None  # live: dropped when not started within this many seconds

    def __post_init__(self) -> None:
        if self.priority not in PRIORITIES:
            raise ValueError(f"priority must be one of {', '.join(PRIORITIES)}, not {self.priority!r}")

    @property
    def samples(self) -> int:
        return int(self.waveform.size)

    @property
    def windowed(self) -> bool:
        return self.window_s > 0 and self.samples > self.window_s * SAMPLE_RATE


@dataclass(frozen=True)
class BatchPolicy:
    """How the scheduler groups requests on one device and precision."""

    wait_s: float = 0.0  # how long the first request waits for companions (0: none, only what is already queued)
    max_batch: int = 1  # most clips per padded call (1: one request at a time)
    max_audio_s: float = 40.0  # most padded audio per call (clips x longest), seconds
    max_padding: float = 0.25  # most padding in a batch, as a fraction of its longest clip
    background_batches: bool = False  # background requests share batches too (GPU), or run one at a time (CPU)
    wait_share: float | None = WAIT_SHARE  # the wait is at most this share of the last model call's time (None: no cap)
    reason: str = ""  # why, for the log

    @property
    def batching(self) -> bool:
        return self.max_batch > 1


def batch_policy(
    device: str,
    dtype: str,
    batchable: bool = True,
    wait_ms: float | None = None,
    max_audio_s: float | None = None,
    free_bytes: int | None = None,
    embedding_dim: int = 1024,
) -> BatchPolicy:
    """The policy for ``device`` (``cpu``, ``cuda:N``) and ``dtype`` (``EmotionEngine.info.dtype``).

    Args:
        batchable: the engine runs padded batches (False for ONNX paths: one at a time).
        wait_ms: ``E2V_BATCH_WAIT_MS`` (None: per device and precision — CPU fp32 batches what is queued without
            waiting, CUDA waits a few ms, CPU int8/bf16 one at a time; 0: one request at a time; more: that wait).
        max_audio_s: ``E2V_BATCH_MAX_AUDIO_S`` (None: per device; on CUDA from ``free_bytes``).
        free_bytes: the device's free memory (CUDA), for the bucket size.
        embedding_dim: the model's width (the activations per second of audio grow with it).
    """
    from emotion2vec_webui.engine.batching import bucket_audio_s

    cuda = str(device).startswith("cuda")
    if wait_ms is not None and wait_ms <= 0:
        return BatchPolicy(reason="E2V_BATCH_WAIT_MS=0: one request at a time")
    if not batchable:
        return BatchPolicy(reason=f"{dtype} (ONNX Runtime) runs clip by clip: one request at a time")
    if cuda:
        audio = max_audio_s if max_audio_s else bucket_audio_s(free_bytes or 0, embedding_dim, dtype)
        wait = CUDA_WAIT_MS if wait_ms is None else wait_ms
        return BatchPolicy(wait_s=wait / 1000, max_batch=CUDA_MAX_BATCH, max_audio_s=audio, background_batches=True,
                           reason=f"{device} {dtype}: batches up to {CUDA_MAX_BATCH} clips / {audio:.0f} s of audio")
    audio = max_audio_s if max_audio_s else CPU_MAX_AUDIO_S
    if wait_ms is None and dtype != "float32":
        return BatchPolicy(reason=f"cpu {dtype}: batches measured no faster than one by one (int8 0.75-0.99x); "
                                  "one request at a time (E2V_BATCH_WAIT_MS sets a wait to batch anyway)")  # fmt: skip
    if wait_ms is None:
        return BatchPolicy(wait_s=0.0, max_batch=CPU_FP32_MAX_BATCH, max_audio_s=audio, max_padding=CPU_MAX_PADDING,
                           background_batches=False,
                           reason=f"cpu {dtype}: no wait; what is already queued is batched when its lengths are "
                           f"within {CPU_MAX_PADDING:.0%}, up to {CPU_FP32_MAX_BATCH} clips / {audio:.0f} s of audio "
                           "(fp32 measured 1.16-1.20x on equal clips); background one at a time")  # fmt: skip
    return BatchPolicy(wait_s=wait_ms / 1000, max_batch=CPU_FP32_MAX_BATCH, max_audio_s=audio,
                       max_padding=CPU_MAX_PADDING, background_batches=False,
                       reason=f"cpu {dtype}: E2V_BATCH_WAIT_MS={wait_ms:g}: interactive batches wait up to "
                       f"{wait_ms:g} ms for companions, lengths within {CPU_MAX_PADDING:.0%}, up to "
                       f"{CPU_FP32_MAX_BATCH} clips / {audio:.0f} s of audio; background one at a time")  # fmt: skip


def policy_for(engine, settings) -> BatchPolicy:
    """:func:`batch_policy` for a loaded engine and the ``E2V_BATCH_*`` settings."""
    from emotion2vec_webui.engine.batching import device_free_bytes

    info = engine.info
    return batch_policy(
        info.device, info.dtype, bool(getattr(engine, "batchable", False)),
        getattr(settings, "batch_wait_ms", None), getattr(settings, "batch_max_audio_s", None),
        device_free_bytes(info.device), int(info.embedding_dim or 1024),
    )  # fmt: skip


@dataclass(eq=False)
class _Item:
    future: Future
    request: InferenceRequest | None = None  # a model call, or
    call: Callable | None = None  # the escape hatch: ``call(engine)`` alone on the worker
    priority: str = "interactive"
    client: str = ""
    job: int | None = None  # the QueuedEngine job it belongs to
    arrival: float = field(default_factory=time.monotonic)


class Scheduler:
    """The queue in front of the model and the one worker thread that drains it.

    Args:
        engine: ``engine()`` gives the loaded :class:`engine.EmotionEngine`.
        policy: how to batch (:func:`batch_policy`); may be replaced later (:attr:`policy`).
    """

    def __init__(self, engine: Callable[[], object], policy: BatchPolicy = BatchPolicy()) -> None:
        self._engine = engine
        self.policy = policy
        self._cond = threading.Condition()
        self._queues: dict[str, collections.OrderedDict[str, collections.deque[_Item]]] = {
            p: collections.OrderedDict() for p in PRIORITIES
        }
        self._jobs: dict[int, str] = {}  # active job → its priority
        self._busy: collections.Counter[int] = collections.Counter()  # job → its items queued or running
        self._inflight: collections.Counter[str] = collections.Counter()  # priority → its items queued or running
        self._peaks = {p: collections.deque() for p in PRIORITIES}  # priority → (time, items in flight) samples
        self._last_call_s = 0.0  # how long the last model call took (a wait longer than a share of it cannot pay)
        self._job_ids = itertools.count(1)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.busy_since: float | None = None  # wall clock when the worker took what it runs (None: idle)
        self.stats = collections.Counter()  # calls, requests, batched (requests in batches of 2+), stale

    # -- the worker -------------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="e2v-inference", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if not self._stop.is_set():
            st = self.stats
            log.info("scheduler: %d model calls for %d requests (%d of them in batches), %d stale live windows dropped",
                     st["calls"], st["requests"], st["batched"], st["stale"])  # fmt: skip
        self._stop.set()
        with self._cond:
            self._cond.notify_all()

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                group = self._next()
            except Exception:  # a bug in picking must never stop the worker: run the oldest request alone
                log.exception("scheduler: picking the next batch failed; running one request alone")
                group = self._oldest()
                if not group:
                    time.sleep(0.05)
                    continue
            if group is None:
                return
            live = [it for it in group if it.future.set_running_or_notify_cancel()]  # drop the cancelled
            self.busy_since = time.time() if live else None  # the System tab shows what runs, not only what waits
            try:
                if live:
                    self._execute(live)
            finally:
                self.busy_since = None
                self._done(group)

    def _next(self) -> list[_Item] | None:
        """Wait for the next group to run (None: stopping)."""
        with self._cond:
            group, sleep = self._pick(time.monotonic())
            while not group:
                if self._stop.is_set():
                    return None
                self._cond.wait(sleep)
                group, sleep = self._pick(time.monotonic())
            return group

    def _oldest(self) -> list[_Item]:
        """The longest-waiting item, taken off its queue (after a failed pick)."""
        with self._cond:
            items = [(it.arrival, lanes, it) for lanes in self._queues.values() for lane in lanes.values() for it in lane]
            if not items:
                return []
            _, lanes, item = min(items, key=lambda x: x[0])
            lanes[item.client].remove(item)
            return [item]

    def _done(self, group: list[_Item]) -> None:
        with self._cond:
            now = time.monotonic()
            for priority in {it.priority for it in group}:  # how many were in flight as they were answered:
                self._peaks[priority].append((now, self._inflight[priority]))  # as many may come straight back
            for it in group:
                self._release(it)

    # -- submitting -------------------------------------------------------------------------------
    def submit(self, request: InferenceRequest, job: int | None = None) -> Future:
        """Queue one model call; its future gives an :class:`EmotionResult` (or the ``[T, D]`` features)."""
        return self._put(_Item(Future(), request=request, priority=request.priority, client=request.client, job=job))

    def submit_call(self, fn: Callable, priority: str = "interactive", client: str = "", job: int | None = None):
        """The escape hatch: ``fn(engine)`` runs on the worker itself, alone, in its turn."""
        if priority not in PRIORITIES:
            raise ValueError(f"priority must be one of {', '.join(PRIORITIES)}, not {priority!r}")
        return self._put(_Item(Future(), call=fn, priority=priority, client=client, job=job))

    def _put(self, item: _Item) -> Future:
        with self._cond:
            lane = self._queues[item.priority].setdefault(item.client, collections.deque())
            if item.priority == "live" and item.request is not None:  # a newer window replaces a queued one
                for old in list(lane):
                    if old.request is not None and old.future.set_running_or_notify_cancel():
                        old.future.set_exception(StaleWindow("a newer live window arrived"))
                        self.stats["stale"] += 1
                        lane.remove(old)
                        self._release(old)
            lane.append(item)
            if item.job is not None:
                self._busy[item.job] += 1
            self._inflight[item.priority] += 1
            self._peaks[item.priority].append((time.monotonic(), self._inflight[item.priority]))
            self._cond.notify_all()
        if item.request is not None and item.request.max_age_s is not None:
            # dropped when it goes stale even while the worker is busy: its client can send a fresher window at once,
            # which is then waiting when the worker is free (a check at that moment only would starve live windows)
            timer = threading.Timer(item.request.max_age_s, self._expire, args=(item,))
            timer.daemon = True
            timer.start()
        return item.future

    def _expire(self, item: _Item) -> None:
        with self._cond:
            lane = self._queues[item.priority].get(item.client)
            if lane is None or item not in lane:
                return  # already running, answered or replaced
            lane.remove(item)
            self._release(item)
        if item.future.set_running_or_notify_cancel():
            item.future.set_exception(StaleWindow(f"not started within {item.request.max_age_s:g} s"))
            self.stats["stale"] += 1

    def _release(self, item: _Item) -> None:  # under the lock: an item is answered, or leaves without running
        self._inflight[item.priority] -= 1
        if item.job is not None:
            self._busy[item.job] -= 1
            if self._busy[item.job] <= 0:
                del self._busy[item.job]

    @contextlib.contextmanager
    def job(self, priority: str = "interactive"):
        """Register a job (one recognition, one batch group …) while it runs: while it is busy off the worker,
        a request of its class may wait up to ``wait_s`` for its next model call. Yields the job's id."""
        with self._cond:
            job = next(self._job_ids)
            self._jobs[job] = priority
        try:
            yield job
        finally:
            with self._cond:
                self._jobs.pop(job, None)
                self._cond.notify_all()

    @property
    def depth(self) -> int:
        """Jobs (and lone requests) with something waiting for the worker; a job's many segments count once."""
        with self._cond:
            waiting = {it.job if it.job is not None else id(it) for q in self._queues.values()
                       for lane in q.values() for it in lane}  # fmt: skip
        return len(waiting)

    # -- picking ----------------------------------------------------------------------------------
    def _expect_more(self, priority: str, now: float) -> bool:
        """Whether another request of ``priority`` is likely to come soon: a job of that class is busy off the
        worker (decoding, assembling), or fewer of its requests are in flight than were lately (clients that
        send again as soon as they are answered: REST, the UI). A lone client never sees either, never waits."""
        if any(p == priority and not self._busy.get(j) for j, p in self._jobs.items()):
            return True
        return self._recent_peak(priority, now) > self._inflight[priority]

    def _recent_peak(self, priority: str, now: float) -> int:
        """Most requests of ``priority`` in flight at once in the last :data:`PEAK_MEMORY_S` (counted as they
        arrive and as they are answered: a closed-loop client comes back soon after its answer)."""
        samples = self._peaks[priority]
        horizon = now - PEAK_MEMORY_S
        while samples and samples[0][0] < horizon:
            samples.popleft()
        return max((n for _, n in samples), default=0)

    def _next_stale(self, now: float) -> float:
        """Seconds until the next live window goes stale (0.5 when none is queued)."""
        due = [0.5]
        for q in self._queues.values():
            for lane in q.values():
                due += [it.arrival + it.request.max_age_s - now for it in lane
                        if it.request is not None and it.request.max_age_s is not None]  # fmt: skip
        return min(due)

    def _drop_stale(self, now: float) -> None:
        for q in self._queues.values():
            for lane in q.values():
                for it in [it for it in lane if it.request is not None and it.request.max_age_s is not None
                           and now - it.arrival > it.request.max_age_s]:  # fmt: skip
                    lane.remove(it)
                    self._release(it)
                    if it.future.set_running_or_notify_cancel():
                        it.future.set_exception(StaleWindow(f"not started within {it.request.max_age_s:g} s"))
                        self.stats["stale"] += 1

    def _pick(self, now: float) -> tuple[list[_Item], float]:
        """The next group to run (under the lock), taken off the queues; or ``[]`` and how long to sleep first."""
        self._drop_stale(now)
        policy = self.policy
        for priority in PRIORITIES:
            lanes = self._queues[priority]
            for client in [c for c, lane in lanes.items() if not lane]:
                del lanes[client]
            if not lanes:
                continue
            first_client = next(iter(lanes))
            first = lanes[first_client][0]
            group = [first]
            if first.call is None and not first.request.windowed and policy.batching and (
                policy.background_batches or priority != "background"
            ):
                group = self._gather(lanes, first, policy)  # what is already queued and fits
                if policy.wait_s > 0 and self._should_wait(policy, lanes, group, priority, now):
                    # wait for companions: until the wait ends, or a request (or a job's end) wakes the worker;
                    # never while other requests of the class wait (lengths that do not fit): the worker has work
                    due = min(it.arrival for it in group) + self._wait_s(policy)
                    return [], max(0.001, min(due - now, self._next_stale(now)))
            for it in group:
                lanes[it.client].remove(it)
            lanes.move_to_end(first_client)  # the next turn starts with the next client
            return group, 0.0
        return [], max(0.001, self._next_stale(now))

    def _wait_s(self, policy: BatchPolicy) -> float:
        if policy.wait_share is not None and self._last_call_s:
            return min(policy.wait_s, policy.wait_share * self._last_call_s)
        return policy.wait_s

    def _should_wait(self, policy: BatchPolicy, lanes, group: list[_Item], priority: str, now: float) -> bool:
        """Whether ``group`` waits for companions: room is left, nothing else of its class is queued, its wait
        has not ended, and more are expected."""
        due = min(it.arrival for it in group) + self._wait_s(policy)
        queued = sum(len(lane) for lane in lanes.values())
        return len(group) < policy.max_batch and len(group) == queued and now < due and self._expect_more(priority, now)

    @staticmethod
    def _gather(lanes, first: _Item, policy: BatchPolicy) -> list[_Item]:
        """``first`` and the requests that may share its padded call: one per client per pass (the share)."""
        group, lo, hi = [first], first.request.samples, first.request.samples
        budget = policy.max_audio_s * SAMPLE_RATE
        queues = [list(lane) for lane in lanes.values()]
        for k in range(max(len(q) for q in queues)):
            for q in queues:
                if len(group) >= policy.max_batch:
                    return group
                if k >= len(q) or q[k] is first or q[k].call is not None or q[k].request.windowed:
                    continue
                n = q[k].request.samples
                new_lo, new_hi = min(lo, n), max(hi, n)
                if new_hi - new_lo > policy.max_padding * new_hi or (len(group) + 1) * new_hi > budget:
                    continue
                group.append(q[k])
                lo, hi = new_lo, new_hi
        return group

    # -- running ----------------------------------------------------------------------------------
    def _execute(self, group: list[_Item]) -> None:
        t_call = time.perf_counter()
        try:
            self._run(group)
        finally:
            self._last_call_s = time.perf_counter() - t_call

    def _run(self, group: list[_Item]) -> None:
        engine = self._engine()
        self.stats["calls"] += 1
        self.stats["requests"] += len(group)
        if len(group) > 1:
            self.stats["batched"] += len(group)
            try:
                t0 = time.perf_counter()
                feats = engine.features_batch([it.request.waveform for it in group])
                share = (time.perf_counter() - t0) / len(group)
                answers = [self._answer(engine, it.request, f, share) for it, f in zip(group, feats, strict=True)]
            except Exception as exc:  # one bad input must not fail its neighbours: one by one
                log.warning("batched call failed (%s: %s); running its %d requests one by one",
                            type(exc).__name__, exc, len(group))  # fmt: skip
            else:
                for it, answer in zip(group, answers, strict=True):
                    it.future.set_result(answer)
                return
        for it in group:
            try:
                it.future.set_result(self._one(engine, it))
            except BaseException as exc:  # delivered to the caller, never kills the worker
                it.future.set_exception(exc)

    @staticmethod
    def _one(engine, item: _Item):
        if item.call is not None:
            return item.call(engine)
        r = item.request
        if r.frames:
            return engine.features_batch([r.waveform])[0]
        return engine.recognize(r.waveform, r.granularity, r.embedding, r.window_s)

    @staticmethod
    def _answer(engine, request: InferenceRequest, feats, seconds: float):
        if request.frames:  # not a view: the batch's tensor can go
            return feats.copy() if isinstance(feats, np.ndarray) else feats.clone()
        return result_from_features(engine.head_logits, feats, request.granularity, request.embedding, seconds)


class QueuedEngine:
    """What a job's code sees as the engine: its model calls become :class:`InferenceRequest` s for the scheduler.

    ``recognize``, ``recognize_batch`` and ``frame_features`` queue requests (a batch's clips all at once, so
    they share padded calls) and wait in the caller's thread; audio longer than ``window_s`` is cut into windows
    here and each window queued on its own, so a long recording never holds the worker and other requests go
    between its windows. Everything else (``info``, ``head_logits``, ``head_only`` …) is the engine's own.
    """

    def __init__(self, engine, scheduler: Scheduler, priority: str = "interactive", client: str = "",
                 job: int | None = None) -> None:  # fmt: skip
        self._engine = engine
        self._scheduler = scheduler
        self.priority = priority
        self.client = client
        self.job = job

    def __getattr__(self, name: str):
        return getattr(self._engine, name)

    @property
    def engine(self):
        """The engine itself (for code that must run on the worker: ``Service.call_on_worker``)."""
        return self._engine

    def _submit(self, waveform: np.ndarray, **want) -> Future:
        request = InferenceRequest(waveform, priority=self.priority, client=self.client, **want)
        return self._scheduler.submit(request, self.job)

    def frame_features(self, waveform: np.ndarray):
        return self._submit(waveform, frames=True, window_s=0.0).result()  # a window: never cut again

    def recognize(self, waveform: np.ndarray, granularity: str = "utterance", extract_embedding: bool = True,
                  window_s: float = 30.0, on_window: Callable[[int, int], None] | None = None) -> EmotionResult:  # fmt: skip
        check_waveforms([waveform], granularity)
        if window_s > 0 and waveform.size > window_s * SAMPLE_RATE:
            from emotion2vec_webui.engine.longform import recognize_windowed

            return recognize_windowed(self, waveform, granularity, extract_embedding, window_s, on_window)
        return self._submit(waveform, granularity=granularity, embedding=extract_embedding, window_s=window_s).result()

    def recognize_batch(self, waveforms: Sequence[np.ndarray], granularity: str = "utterance",
                        extract_embedding: bool = True, max_batch: int | None = None,
                        window_s: float = 30.0) -> list[EmotionResult]:  # fmt: skip
        """Every short clip queued at once (the scheduler batches them by length), long ones windowed here."""
        check_waveforms(waveforms, granularity)
        long = [window_s > 0 and w.size > window_s * SAMPLE_RATE for w in waveforms]
        futures = {i: self._submit(w, granularity=granularity, embedding=extract_embedding, window_s=window_s)
                   for i, w in enumerate(waveforms) if not long[i]}  # fmt: skip
        out = [None if not long[i] else self.recognize(w, granularity, extract_embedding, window_s)
               for i, w in enumerate(waveforms)]  # fmt: skip
        for i, fut in futures.items():
            out[i] = fut.result()
        return out
