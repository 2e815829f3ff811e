"""Interactive work goes ahead of background jobs, and nothing that is not the model holds the model.

The tiny model is made slow on purpose (a sleep per model call, growing with the audio, as a large model's time
does), so the model dominates each request as it does in production: a 3 s interactive clip costs ~0.6 s of
"model", a 1 s background file ~0.2 s. Under a 50-file batch (the Batch tab's own code) and a training job's
feature extraction, every interactive request (a recognition as REST and the UI send it, and a live window) is
answered within 2x its idle latency, measured in the same test (here 1.2-1.6x). Before the scheduler the queue
was first come, first served and a batch group of four files with its run-folder writes held the worker: the same
probes took 1.5-5.7x their idle latency.

The slowness stays on from the idle measurement to the last probe, so every probe competes with the batch and the
training at production-like model times; once the probes are answered it is switched off, and the rest of the
batch and the training (which the test still waits for and checks) run at the tiny model's own speed: the property
is measured in the probes, the remaining ~10 s of sleeping model calls after them tested nothing.
"""

from __future__ import annotations

import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import numpy as np
import pytest

from emotion2vec_webui.audio.signals import noise, write_audio
from emotion2vec_webui.jobs.train_head import TrainOptions
from emotion2vec_webui.jobs.train_jobs import TrainJobs
from emotion2vec_webui.model import conversation_models
from emotion2vec_webui.runs.inference.service import Service
from emotion2vec_webui.runs.recognize import RecognizeOptions
from tests.head_data import make_set

RATE = 16000


def slow_down(engine, monkeypatch, base_s: float = 0.005, per_audio_s: float = 0.2) -> threading.Event:
    """Every model call of ``engine`` takes ``base_s + per_audio_s x seconds of audio`` longer (the GIL released).

    Returns:
        An event, set: clear it and the calls run at the tiny model's own speed again.
    """
    frame_features, features_batch = engine.frame_features, engine.features_batch
    slow = threading.Event()
    slow.set()

    def slow_frames(w):
        if slow.is_set():
            time.sleep(base_s + per_audio_s * len(w) / RATE)
        return frame_features(w)

    def slow_batch(waves):
        if slow.is_set():
            time.sleep(base_s + per_audio_s * sum(len(w) for w in waves) / RATE)
        return features_batch(waves)

    monkeypatch.setattr(engine, "frame_features", slow_frames)
    monkeypatch.setattr(engine, "features_batch", slow_batch)
    return slow


@pytest.fixture
def service(engine, settings, tmp_path):
    import dataclasses

    svc = Service(dataclasses.replace(settings, heads_dir=tmp_path / "heads"), engine)
    svc.start()
    yield svc
    svc.stop()


def test_interactive_requests_stay_within_twice_their_idle_latency_under_a_batch_and_training(
    engine, service, tmp_path, monkeypatch
):
    from emotion2vec_webui.ui.batch_tab import run_ui_batch

    slow = slow_down(engine, monkeypatch)
    clip = write_audio(tmp_path / "ask.wav", noise(3.0, RATE, amp=0.2, seed=1), RATE, "wav")
    window = noise(3.0, RATE, amp=0.2, seed=2)[:, 0].astype(np.float32)
    (tmp_path / "batch").mkdir()
    files = [str(write_audio(tmp_path / "batch" / f"f{i:02d}.wav", noise(1.0, RATE, seed=10 + i), RATE, "wav"))
             for i in range(50)]  # fmt: skip
    data = make_set(tmp_path / "train-set", per_class=8, seed=3)

    def ask() -> float:
        t0 = time.perf_counter()
        assert service.recognize(clip, options=RecognizeOptions("utterance", False), client="rest").run is not None
        return time.perf_counter() - t0

    def live() -> float:
        t0 = time.perf_counter()
        assert service.live_window(window, client="mic") is not None
        return time.perf_counter() - t0

    for probe in (ask, live):  # warm up both paths
        probe()
    idle = {probe: statistics.median(probe() for _ in range(3)) for probe in (ask, live)}

    jobs = TrainJobs(service)
    rows = threading.Event()

    def progress(done_total, **_):
        if done_total[0] >= 2:  # the batch is classifying
            rows.set()

    with ThreadPoolExecutor(1) as pool:
        batch = pool.submit(run_ui_batch, service, files, "", "utterance", False, progress)
        job = jobs.start(str(data), "background-head", TrainOptions())
        assert rows.wait(120), "the batch never started"
        busy = []
        for i in range(12):
            probe = ask if i % 2 == 0 else live
            busy.append((probe.__name__, probe(), idle[probe], not batch.done()))
            time.sleep(0.05)
        slow.clear()  # the probes are answered: the rest of the batch and the training at the tiny model's speed
        assert batch.result(300)[0]
    assert jobs.wait(job.id, 300).state == "done"
    assert all(running for *_, running in busy), busy  # the batch ran all along
    slow = [(name, round(t, 3), round(2 * base, 3)) for name, t, base, _ in busy if t > 2 * base]
    assert not slow, f"waited more than 2x idle (name, took, bound): {slow}; idle {idle}"


def test_a_slow_asr_load_does_not_delay_a_plain_recognition_sent_right_after(service, speech_wav, tmp_path,
                                                                             monkeypatch):  # fmt: skip
    """The first transcribe request loads the ASR model (slowed on purpose) in its own thread, not on the worker."""
    load_s = 4.0
    asr_dir = tmp_path / "slow-asr"
    asr_dir.mkdir()
    for name in conversation_models.REQUIRED:
        (asr_dir / name).write_bytes(b"")
    loading = threading.Event()

    def slow_load(resolved, device):
        loading.set()
        time.sleep(load_s)
        return SimpleNamespace(generate=lambda input, **kw: [{"text": "<|en|><|NEUTRAL|><|Speech|><|woitn|>hello"}])

    monkeypatch.setattr(conversation_models, "load_conversation_model", slow_load)
    options = RecognizeOptions("utterance", False, speakers="channels", transcribe=True, asr_model=str(asr_dir))
    with ThreadPoolExecutor(1) as pool:
        transcribed = pool.submit(service.recognize, speech_wav, options=options, write=False)
        assert loading.wait(60), "the ASR model was never loaded"
        t0 = time.perf_counter()
        plain = service.recognize(speech_wav, write=False)
        took = time.perf_counter() - t0
        still_loading = not transcribed.done()
        turns = transcribed.result(120).result["turns"]
    assert plain.result["emotion"] and still_loading
    assert took < load_s / 2, f"the plain recognition took {took:.2f} s behind a {load_s:g} s ASR load"
    assert all(t["text"] == "hello" for t in turns)
