"""The inference scheduler's decisions, on a stand-in engine (no model): priorities, each client's share, stale
live windows, length buckets, the CPU default (no wait: what is already queued, close lengths only), the wait
for companions, one at a time when told, and the per-device policy (GPU branches exercised by passing CUDA
device strings and memory figures)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from types import SimpleNamespace

import numpy as np
import pytest

from emotion2vec_webui.engine import batching
from emotion2vec_webui.engine.result import result_from_features
from emotion2vec_webui.runs.inference.scheduler import (
    BatchPolicy,
    InferenceRequest,
    QueuedEngine,
    Scheduler,
    StaleWindow,
    batch_policy,
)

RATE = 16000
BATCHING = BatchPolicy(wait_s=0.05, max_batch=8, max_audio_s=100.0, max_padding=0.25, background_batches=False)


class FakeEngine:
    """Runs nothing: each clip's first sample is its tag; every model call is recorded as the tags it held."""

    info = SimpleNamespace(device="cpu", dtype="float32", embedding_dim=4, name="fake")
    batchable = True

    def __init__(self) -> None:
        self.calls: list[list[int]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.fail_batches = False
        self.delay = 0.0  # seconds per model call

    @staticmethod
    def head_logits(x):
        return np.zeros((*x.shape[:-1], 9))

    def _features(self, w):
        if float(w[0]) < 0:
            raise ValueError("a bad clip")
        return np.full((len(w) // 320, 4), float(w[0]), np.float32)

    def features_batch(self, waves):
        self.entered.set()
        self.gate.wait(10)
        self.calls.append([int(w[0]) for w in waves])
        time.sleep(self.delay)
        if self.fail_batches and len(waves) > 1:
            raise RuntimeError("the padded call failed")
        return [self._features(w) for w in waves]

    def recognize(self, w, granularity="utterance", embedding=True, window_s=30.0):
        (feats,) = self.features_batch([w])
        return result_from_features(self.head_logits, feats, granularity, embedding, 0.0)


def clip(tag: int, seconds: float = 1.0) -> np.ndarray:
    w = np.zeros(int(seconds * RATE), np.float32)
    w[0] = tag
    return w


@pytest.fixture
def rig():
    engine = FakeEngine()
    scheduler = Scheduler(lambda: engine, BATCHING)
    scheduler.start()
    yield engine, scheduler
    engine.gate.set()
    scheduler.stop()


def hold(engine, scheduler) -> Future:
    """Occupy the worker with a request that waits on ``engine.gate``; returns its future."""
    engine.gate.clear()
    engine.entered.clear()
    fut = scheduler.submit(InferenceRequest(clip(999, 0.5), priority="live", client="holder"))
    assert engine.entered.wait(5)
    return fut


def test_higher_priorities_run_first_whatever_the_order_they_came_in(rig):
    engine, scheduler = rig
    scheduler.policy = BatchPolicy()  # one at a time: the order is the point
    held = hold(engine, scheduler)
    futures = [scheduler.submit(InferenceRequest(clip(tag), priority=p, client=p))
               for tag, p in ((1, "background"), (2, "interactive"), (3, "live"), (4, "background"), (5, "interactive"))]  # fmt: skip
    engine.gate.set()
    held.result(5)
    for f in futures:
        f.result(5)
    assert engine.calls[1:] == [[3], [2], [5], [1], [4]]


def test_each_client_gets_its_turn_whatever_one_client_queued(rig):
    engine, scheduler = rig
    scheduler.policy = BatchPolicy()
    held = hold(engine, scheduler)
    big = [scheduler.submit(InferenceRequest(clip(100 + i), priority="background", client="batch-A"))
           for i in range(10)]  # fmt: skip
    small = scheduler.submit(InferenceRequest(clip(7), priority="background", client="train-B"))
    engine.gate.set()
    held.result(5)
    small.result(5)
    for f in big:
        f.result(5)
    order = [tags[0] for tags in engine.calls[1:]]
    assert order.index(7) <= 1, order  # B's one request went second, not after A's ten


def test_a_batch_is_filled_one_request_per_client_per_pass(rig):
    engine, scheduler = rig
    held = hold(engine, scheduler)
    a = [scheduler.submit(InferenceRequest(clip(10 + i), client="A")) for i in range(10)]
    b = [scheduler.submit(InferenceRequest(clip(20 + i), client="B")) for i in range(2)]
    engine.gate.set()
    held.result(5)
    for f in a + b:
        f.result(5)
    first = engine.calls[1]
    assert len(first) == BATCHING.max_batch and {20, 21} <= set(first), engine.calls


def test_stale_live_windows_are_dropped_never_queued(rig):
    engine, scheduler = rig
    held = hold(engine, scheduler)
    old = scheduler.submit(InferenceRequest(clip(1), priority="live", client="mic", max_age_s=30))
    new = scheduler.submit(InferenceRequest(clip(2), priority="live", client="mic", max_age_s=30))
    with pytest.raises(StaleWindow):
        old.result(5)  # a newer window of the same client replaced it
    aged = scheduler.submit(InferenceRequest(clip(3), priority="live", client="other-mic", max_age_s=0.05))
    time.sleep(0.2)
    engine.gate.set()
    held.result(5)
    assert new.result(5) is not None
    with pytest.raises(StaleWindow):
        aged.result(5)  # not started within its max age
    assert all(3 not in tags and 1 not in tags for tags in engine.calls) and scheduler.stats["stale"] == 2


def test_a_stale_live_window_is_dropped_while_the_worker_is_busy_so_a_fresher_one_is_next(rig):
    """Dropped at its age, not when the worker frees up: its client's next window is then already waiting."""
    engine, scheduler = rig
    held = hold(engine, scheduler)
    t0 = time.perf_counter()
    stale = scheduler.submit(InferenceRequest(clip(1), priority="live", client="mic", max_age_s=0.2))
    with pytest.raises(StaleWindow):
        stale.result(5)
    assert time.perf_counter() - t0 < 1.0 and not engine.gate.is_set()  # the worker is still busy
    fresh = scheduler.submit(InferenceRequest(clip(2), priority="live", client="mic", max_age_s=5.0))
    queued = scheduler.submit(InferenceRequest(clip(3), client="rest"))
    engine.gate.set()
    held.result(5)
    fresh.result(5), queued.result(5)
    assert [tags[0] for tags in engine.calls[1:]] == [2, 3]


def test_requests_are_bucketed_by_length_within_the_audio_budget(rig):
    engine, scheduler = rig
    scheduler.policy = BatchPolicy(0.05, 8, max_audio_s=6.0, max_padding=0.25)
    held = hold(engine, scheduler)
    lengths = {1: 1.0, 2: 1.1, 3: 5.0, 4: 5.2, 5: 1.05, 6: 3.0}
    futures = [scheduler.submit(InferenceRequest(clip(t, s), client=f"c{t}")) for t, s in lengths.items()]
    engine.gate.set()
    held.result(5)
    for f in futures:
        f.result(5)
    groups = [sorted(tags) for tags in engine.calls[1:]]
    assert sorted(map(tuple, groups)) == [(1, 2, 5), (3,), (4,), (6,)], groups  # 5 s + 5.2 s padded > 6 s
    for tags in engine.calls[1:]:
        longest = max(lengths[t] for t in tags)
        assert len(tags) * longest <= 6.0 and longest - min(lengths[t] for t in tags) <= 0.25 * longest


def test_wait_zero_runs_one_request_at_a_time(rig):
    engine, scheduler = rig
    scheduler.policy = batch_policy("cpu", "float32", wait_ms=0)
    held = hold(engine, scheduler)
    futures = [scheduler.submit(InferenceRequest(clip(i), client=f"c{i}")) for i in range(6)]
    engine.gate.set()
    held.result(5)
    for f in futures:
        f.result(5)
    assert all(len(tags) == 1 for tags in engine.calls), engine.calls


CPU_DEFAULT = batch_policy("cpu", "float32")  # E2V_BATCH_WAIT_MS unset: no wait, what is queued, a tight bucket


def test_the_cpu_default_batches_what_is_queued_with_close_lengths_and_runs_far_lengths_alone(rig):
    engine, scheduler = rig
    scheduler.policy = CPU_DEFAULT
    held = hold(engine, scheduler)
    lengths = {1: 3.0, 2: 3.1, 3: 2.95, 4: 3.05, 5: 6.0, 6: 1.5, 7: 3.6}  # 7: 3.6 s is 17 % longer than 3.0 s
    futures = [scheduler.submit(InferenceRequest(clip(t, s), client=f"c{t}")) for t, s in lengths.items()]
    engine.gate.set()
    held.result(5)
    for f in futures:
        f.result(5)
    groups = sorted(tuple(sorted(tags)) for tags in engine.calls[1:])
    assert groups == [(1, 2, 3, 4), (5,), (6,), (7,)], groups
    for tags in engine.calls[1:]:  # padding waste within the policy's bound
        longest = max(lengths[t] for t in tags)
        assert longest - min(lengths[t] for t in tags) <= CPU_DEFAULT.max_padding * longest


def test_the_cpu_default_fills_a_batch_up_to_its_size_and_audio_budget(rig):
    engine, scheduler = rig
    scheduler.policy = CPU_DEFAULT
    held = hold(engine, scheduler)
    threes = [scheduler.submit(InferenceRequest(clip(10 + i, 3.0), client=f"a{i}")) for i in range(12)]
    engine.gate.set()
    held.result(5)
    for f in threes:
        f.result(5)
    sizes = [len(tags) for tags in engine.calls[1:]]
    assert sizes == [CPU_DEFAULT.max_batch, 12 - CPU_DEFAULT.max_batch], sizes

    engine.calls.clear()
    held = hold(engine, scheduler)
    eights = [scheduler.submit(InferenceRequest(clip(30 + i, 8.0), client=f"b{i}")) for i in range(5)]
    engine.gate.set()
    held.result(5)
    for f in eights:
        f.result(5)
    per_call = int(CPU_DEFAULT.max_audio_s // 8.0)  # 24 s of padded audio: three 8 s clips a call
    assert [len(tags) for tags in engine.calls[1:]] == [per_call, 5 - per_call], engine.calls


def test_a_lone_request_is_picked_at_once_under_the_cpu_default_even_when_companions_are_expected():
    """Picked directly (no worker thread): with a job busy elsewhere and a recent burst of requests, a waiting
    policy holds the lone request back for companions; the CPU default runs it now."""
    engine = FakeEngine()
    for policy, runs_now in ((CPU_DEFAULT, True), (BatchPolicy(wait_s=30.0, max_batch=8, wait_share=None), False)):
        scheduler = Scheduler(lambda: engine, policy)  # not started: nothing takes the request but _pick
        with scheduler.job():  # busy decoding elsewhere: its request is expected soon
            for i in range(3):  # a burst a moment ago: three in flight at once
                scheduler.submit(InferenceRequest(clip(i), client=f"c{i}"))
            with scheduler._cond:
                for lane in scheduler._queues["interactive"].values():
                    for item in list(lane):
                        lane.remove(item)
                        scheduler._release(item)
            lone = scheduler.submit(InferenceRequest(clip(7), client="solo"))
            with scheduler._cond:
                group, sleep = scheduler._pick(time.monotonic())
        if runs_now:
            assert [it.future for it in group] == [lone] and sleep == 0.0
        else:
            assert group == [] and sleep > 0  # the contrast: a wait policy would hold it


def test_background_is_batched_on_a_gpu_but_not_on_a_cpu(rig):
    engine, scheduler = rig
    for policy, batched in ((BATCHING, False), (BatchPolicy(0.05, 8, 100.0, 0.25, background_batches=True), True)):
        scheduler.policy = policy
        engine.calls.clear()
        held = hold(engine, scheduler)
        futures = [scheduler.submit(InferenceRequest(clip(i), priority="background", client="b")) for i in range(4)]
        engine.gate.set()
        held.result(5)
        for f in futures:
            f.result(5)
        assert max(len(tags) for tags in engine.calls[1:]) == (4 if batched else 1), engine.calls


def test_a_lone_job_never_waits_for_companions_and_a_busy_one_is_waited_for(rig):
    engine, scheduler = rig
    scheduler.policy = BatchPolicy(wait_s=3.0, max_batch=8, max_audio_s=100.0, wait_share=None)
    t0 = time.perf_counter()
    with scheduler.job() as job:
        QueuedEngine(engine, scheduler, client="solo", job=job).recognize(clip(1))
    assert time.perf_counter() - t0 < 1.5  # nobody else could send one: no 3 s wait

    engine.calls.clear()
    scheduler.policy = BatchPolicy(wait_s=1.0, max_batch=8, max_audio_s=100.0, wait_share=None)
    with scheduler.job() as busy_elsewhere:  # a second job, still decoding: its request comes soon
        first = scheduler.submit(InferenceRequest(clip(1), client="a"))
        time.sleep(0.2)
        second = scheduler.submit(InferenceRequest(clip(2), client="b"), busy_elsewhere)
        first.result(5), second.result(5)
    assert engine.calls == [[1, 2]]


def test_after_a_burst_a_request_waits_for_as_many_as_were_in_flight_and_no_longer(rig):
    """Clients that send again as soon as they are answered (REST, UI): the next round is waited for, briefly."""
    engine, scheduler = rig
    scheduler.policy = BatchPolicy(wait_s=3.0, max_batch=8, max_audio_s=100.0, wait_share=None)
    held = hold(engine, scheduler)
    burst = [scheduler.submit(InferenceRequest(clip(i), client=f"c{i}")) for i in (1, 2, 3)]
    engine.gate.set()
    held.result(5)
    for f in burst:
        f.result(5)
    engine.calls.clear()
    t0 = time.perf_counter()
    first = scheduler.submit(InferenceRequest(clip(4), client="c1"))
    time.sleep(0.3)
    rest = [scheduler.submit(InferenceRequest(clip(t), client=f"c{t}")) for t in (5, 6)]
    for f in [first, *rest]:
        f.result(5)
    assert engine.calls == [[4, 5, 6]]  # one call: the first waited for the other two
    assert time.perf_counter() - t0 < 2.0  # and not for the whole 3 s: all three were in


def test_no_wait_while_requests_of_other_lengths_are_queued(rig):
    """Waiting could only add companions to this batch; the worker has other work now: it runs at once."""
    engine, scheduler = rig
    scheduler.policy = BatchPolicy(wait_s=3.0, max_batch=8, max_audio_s=100.0, max_padding=0.1, wait_share=None)
    with scheduler.job():  # a job busy elsewhere: a companion is expected
        held = hold(engine, scheduler)
        short = scheduler.submit(InferenceRequest(clip(1, 1.0), client="a"))
        long = scheduler.submit(InferenceRequest(clip(2, 8.0), client="b"))
        t0 = time.perf_counter()
        engine.gate.set()
        held.result(5), short.result(5)
        assert time.perf_counter() - t0 < 1.5  # not held back for a companion: the long one was waiting
        long.result(10)  # alone in the queue now, it may wait for the expected companion (up to wait_s)
    assert engine.calls[1:] == [[1], [2]]


def test_the_wait_is_capped_at_a_share_of_the_last_model_calls_time(rig):
    engine, scheduler = rig
    engine.delay = 0.2
    scheduler.policy = BatchPolicy(wait_s=3.0, max_batch=8, max_audio_s=100.0, wait_share=0.25)
    scheduler.submit(InferenceRequest(clip(1), client="a")).result(5)  # a 0.2 s call: waits of 0.05 s at most
    with scheduler.job():  # another job busy elsewhere: a companion is expected, but never comes
        t0 = time.perf_counter()
        scheduler.submit(InferenceRequest(clip(2), client="b")).result(5)
        assert time.perf_counter() - t0 < 1.0


def test_a_failure_in_picking_never_stops_the_worker(rig, monkeypatch):
    engine, scheduler = rig

    def broken(*args):
        raise TypeError("a bug in the pick")

    monkeypatch.setattr(scheduler, "_gather", broken)
    futures = [scheduler.submit(InferenceRequest(clip(i), client=f"c{i}")) for i in (1, 2, 3)]
    assert all(f.result(5).num_frames == 50 for f in futures)  # each ran alone, oldest first
    assert engine.calls == [[1], [2], [3]] and scheduler._inflight["interactive"] == 0


def test_a_failed_batch_is_run_one_by_one_so_a_bad_clip_fails_alone(rig):
    engine, scheduler = rig
    engine.fail_batches = True
    held = hold(engine, scheduler)
    good = [scheduler.submit(InferenceRequest(clip(i), client=f"c{i}")) for i in (1, 2)]
    bad = scheduler.submit(InferenceRequest(clip(-5), client="bad"))
    engine.gate.set()
    held.result(5)
    assert all(f.result(5).num_frames == 50 for f in good)
    with pytest.raises(ValueError):
        bad.result(5)


def test_cancelled_requests_never_run_and_a_jobs_segments_count_once(rig):
    engine, scheduler = rig
    held = hold(engine, scheduler)
    with scheduler.job() as job:
        segments = [scheduler.submit(InferenceRequest(clip(i), client="vad"), job) for i in range(5)]
        lone = scheduler.submit(InferenceRequest(clip(50), client="rest"))
        assert scheduler.depth == 2
        assert lone.cancel()
        engine.gate.set()
        held.result(5)
        for f in segments:
            f.result(5)
    assert all(50 not in tags for tags in engine.calls)
    assert scheduler._inflight["interactive"] == 0  # the cancelled request left no count behind


def test_queued_engine_runs_long_audio_window_by_window_each_its_own_request(rig):
    engine, scheduler = rig
    queued = QueuedEngine(engine, scheduler, client="long")
    seen = []
    result = queued.recognize(clip(3, 9.0), "frame", True, window_s=2.0, on_window=lambda k, n: seen.append((k, n)))
    n = seen[-1][1]
    assert n >= 4 and seen == [(k, n) for k in range(1, n + 1)] and len(engine.calls) == n
    assert result.embedding.shape[0] == result.num_frames == (9 * RATE - 400) // 320 + 1


def test_the_policy_per_device_and_precision():
    cpu32 = batch_policy("cpu", "float32")
    assert cpu32.batching and not cpu32.background_batches and cpu32.max_batch == 8
    assert cpu32.wait_s == 0 and cpu32.max_padding <= 0.15 and cpu32.max_audio_s <= 8 * 3.0  # no wait, tight bucket
    assert batch_policy("cpu", "float32", wait_ms=50).wait_s == pytest.approx(0.05)  # a wait asked for
    for policy in (cpu32, batch_policy("cuda:0", "bfloat16", free_bytes=1 << 30), batch_policy("cpu", "int8")):
        assert isinstance(policy.wait_share, float) and isinstance(policy.reason, str) and policy.reason
    for dtype in ("int8", "bfloat16"):
        assert not batch_policy("cpu", dtype).batching  # measured (int8) or not shown (bf16) to pay on CPU
    assert batch_policy("cpu", "int8", wait_ms=10).batching  # asked for explicitly
    assert not batch_policy("cpu", "onnx-float32", batchable=False).batching
    gpu = batch_policy("cuda:0", "bfloat16", free_bytes=60 << 30, embedding_dim=1024)
    assert gpu.batching and gpu.background_batches and gpu.wait_s == pytest.approx(0.005)
    assert gpu.max_audio_s > batch_policy("cuda:0", "bfloat16", free_bytes=4 << 30).max_audio_s
    assert batch_policy("cuda:1", "float16", max_audio_s=77).max_audio_s == 77
    for device, dtype in (("cpu", "float32"), ("cuda:0", "bfloat16")):
        assert not batch_policy(device, dtype, wait_ms=0).batching  # E2V_BATCH_WAIT_MS=0: as before batching


def test_bucket_sizes_follow_device_memory():
    gib = 1 << 30
    small, large = batching.bucket_audio_s(8 * gib), batching.bucket_audio_s(70 * gib)
    assert 30.0 <= small < large <= 1200.0
    assert batching.bucket_audio_s(8 * gib, dtype="bfloat16") == pytest.approx(2 * small)
    assert batching.bucket_audio_s(8 * gib, embedding_dim=768) > small  # a narrower model: more audio per batch
    assert batching.bucket_audio_s(0) == 30.0 and batching.bucket_audio_s(10**15) == 1200.0
    assert batching.device_free_bytes("cpu") is None


def test_batches_bound_for_cuda_are_staged_in_pinned_memory_and_copied_without_blocking():
    class Tensor:
        def __init__(self):
            self.moves = []

        def to(self, device, non_blocking=False):
            self.moves.append((device, non_blocking))
            return self

    assert batching.pinned("cuda:0") and batching.pinned("cuda") and not batching.pinned("cpu")
    t = Tensor()
    assert batching.to_device(t, "cuda:0") is t and t.moves == [("cuda:0", True)]
    assert batching.to_device(t, "cpu") is t and t.moves == [("cuda:0", True)]  # CPU: no copy at all
