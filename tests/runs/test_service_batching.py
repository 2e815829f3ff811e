"""Through the service, every path that now batches gives what one call at a time gives: concurrent clips of
mixed lengths (both granularities), VAD segments, conversation turns, long recordings' windows; and only the
model runs on the inference worker (the run-folder write does not)."""

from __future__ import annotations

import dataclasses
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from emotion2vec_webui.audio.signals import noise, write_audio
from emotion2vec_webui.runs import recognize as recognize_module
from emotion2vec_webui.runs.inference.scheduler import BatchPolicy
from emotion2vec_webui.runs.inference.service import Service
from emotion2vec_webui.runs.recognize import Recognition, RecognizeOptions
from tests.engine.test_vad import phrases  # noqa: F401  (a fixture)

SCORE_TOL = 1e-5  # fp32, batched against one at a time
WIDE = BatchPolicy(wait_s=0.05, max_batch=8, max_audio_s=200.0, max_padding=1.0)  # any lengths may share a call


@pytest.fixture
def service(engine, settings):
    svc = Service(settings, engine)
    svc.start()
    svc.scheduler.policy = WIDE
    yield svc
    svc.stop()


def held_worker(service):
    """Hold the inference worker (the escape hatch, on the worker itself) until the returned event is set."""
    gate, entered = threading.Event(), threading.Event()

    def hold(_engine):
        entered.set()
        gate.wait(30)

    threading.Thread(target=service.call_on_worker, args=(hold,), daemon=True).start()
    assert entered.wait(10)
    return gate


def assert_same(got, want, frames: bool = False) -> None:
    assert got.num_frames == want.num_frames and got.emotion == want.emotion
    assert max(abs(got.scores[k] - want.scores[k]) for k in want.scores) <= SCORE_TOL
    np.testing.assert_allclose(got.embedding, want.embedding, atol=1e-4)
    if frames:
        np.testing.assert_allclose(got.frame_logits, want.frame_logits, atol=1e-4)


@pytest.mark.parametrize("granularity", ["utterance", "frame"])
def test_concurrent_clips_of_mixed_lengths_batched_equal_one_at_a_time(engine, service, granularity):
    rng = np.random.default_rng(4)
    clips = [(0.1 * rng.standard_normal(int(16000 * s))).astype(np.float32) for s in rng.uniform(1, 10, 12)]
    want = [engine.recognize(c, granularity, True) for c in clips]
    gate = held_worker(service)  # everything queues, then the scheduler groups it
    with ThreadPoolExecutor(len(clips)) as pool:
        futures = [pool.submit(service.classify, c, granularity=granularity, embedding=True, client=f"c{i}")
                   for i, c in enumerate(clips)]  # fmt: skip
        while service.queue_depth < len(clips):
            threading.Event().wait(0.01)
        gate.set()
        got = [f.result(60) for f in futures]
    for g, w in zip(got, want, strict=True):
        assert_same(g, w, frames=granularity == "frame")
    stats = service.scheduler.stats
    assert stats["batched"] >= 4 and stats["calls"] < stats["requests"], stats


def test_the_cpu_default_batches_close_lengths_and_equals_one_at_a_time(engine, settings):
    """E2V_BATCH_WAIT_MS unset on a CPU in fp32: no wait; the clips queued while the worker was busy share padded
    calls when their lengths are close (here 2.0-2.2 s), the far ones run alone; every answer equals one at a time."""
    assert settings.batch_wait_ms is None
    rng = np.random.default_rng(7)
    seconds = [*rng.uniform(2.0, 2.2, 6), 0.9, 5.0]
    clips = [(0.1 * rng.standard_normal(int(16000 * s))).astype(np.float32) for s in seconds]
    want = [engine.recognize(c, "utterance", True) for c in clips]
    svc = Service(settings, engine)
    svc.start()
    try:
        policy = svc.scheduler.policy
        assert policy.batching and policy.wait_s == 0, policy  # the default, from the engine and the settings
        gate = held_worker(svc)
        with ThreadPoolExecutor(len(clips)) as pool:
            futures = [pool.submit(svc.classify, c, granularity="utterance", embedding=True, client=f"c{i}")
                       for i, c in enumerate(clips)]  # fmt: skip
            while svc.queue_depth < len(clips):
                threading.Event().wait(0.01)
            gate.set()
            got = [f.result(60) for f in futures]
        stats = svc.scheduler.stats
    finally:
        svc.stop()
    for g, w in zip(got, want, strict=True):
        assert_same(g, w)
    assert stats["batched"] == 6 and stats["calls"] == 1 + 3, stats  # the hold, one batch of six, two alone


def test_vad_segments_are_batched_and_equal_one_at_a_time(engine, settings, service, phrases, tmp_path):  # noqa: F811
    wave, spans = phrases
    wav = write_audio(tmp_path / "phrases.wav", wave, 16000, "wav")
    options = RecognizeOptions("utterance", False, segmentation="vad")
    want = Recognition(settings, options, write=False).run(wav, lambda fn: fn(engine)).result["segments"]
    got = service.recognize(wav, options=options, write=False).result["segments"]
    assert len(got) == len(want) == len(spans)
    for g, w in zip(got, want, strict=True):
        assert (g["start_s"], g["end_s"]) == (w["start_s"], w["end_s"])
        assert max(abs(g["scores"][k] - w["scores"][k]) for k in w["scores"]) <= SCORE_TOL
    assert service.scheduler.stats["batched"] >= len(spans)  # the segments shared one padded call


def test_conversation_turns_are_batched_and_equal_one_at_a_time(engine, settings, service, stereo_dialogue):
    path, _ = stereo_dialogue
    options = RecognizeOptions("utterance", False, speakers="channels")
    want = Recognition(settings, options, write=False).run(path, lambda fn: fn(engine)).result["turns"]
    got = service.recognize(path, options=options, write=False).result["turns"]
    assert len(got) == len(want) >= 3
    for g, w in zip(got, want, strict=True):
        assert (g["speaker"], g["start_s"], g["end_s"]) == (w["speaker"], w["start_s"], w["end_s"])
        assert max(abs(g["scores"][k] - w["scores"][k]) for k in w["scores"]) <= SCORE_TOL
    assert service.scheduler.stats["batched"] >= 2


def test_a_long_recording_goes_window_by_window_and_equals_the_engines_windowed_pass(engine, settings, tmp_path):
    settings = dataclasses.replace(settings, window_s=2.0)
    wav = write_audio(tmp_path / "long.wav", noise(9.0, 16000, seed=3), 16000, "wav")
    options = RecognizeOptions("frame", True)
    want = Recognition(settings, options, write=False).run(wav, lambda fn: fn(engine))
    svc = Service(settings, engine)
    svc.start()
    try:
        got = svc.recognize(wav, options=options, write=False)
        windows = svc.scheduler.stats["requests"]
    finally:
        svc.stop()
    assert windows >= 4  # each window was its own request: others can go between them
    assert_same(got.engine_result, want.engine_result, frames=True)


def test_only_the_model_runs_on_the_inference_worker(service, speech_wav, monkeypatch):
    """Assembly and the run-folder write run in the caller's thread; the worker only runs model calls."""
    threads = []
    real_write = recognize_module.write_run

    def write_run(*args, **kwargs):
        threads.append(threading.current_thread().name)
        return real_write(*args, **kwargs)

    monkeypatch.setattr(recognize_module, "write_run", write_run)
    outcome = service.recognize(speech_wav, options=RecognizeOptions("utterance", True))
    assert outcome.run is not None and threads == [threading.current_thread().name] != ["e2v-inference"]
    future = service.submit(lambda engine: Recognition(service.settings).finish(outcome_decoded(speech_wav), engine))
    assert future.result(60).run is not None and threads[-1].startswith("e2v-job")


def outcome_decoded(path):
    from emotion2vec_webui.audio.decode import decode_audio

    return decode_audio(path)


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_reduced_precisions_batch_close_to_one_at_a_time(tiny_model_dir, precision):
    """bf16 runs the batch under autocast (the GPU's path, here on CPU); int8's dynamic quantisation scales each
    batch's activations together. Measured on the tiny model: bf16 ~1e-6, int8 ~6e-5 on scores; the large model's
    figures are in benchmarks/serving_throughput.md."""
    from emotion2vec_webui.engine.engine import EmotionEngine
    from emotion2vec_webui.engine.result import result_from_features

    engine = EmotionEngine.load(str(tiny_model_dir), device="cpu", precision=precision)
    rng = np.random.default_rng(9)
    # 1-4 s: lengths differ within each batch of 4 (so padding is exercised) at a third of 1-10 s's compute
    clips = sorted(((0.1 * rng.standard_normal(int(16000 * s))).astype(np.float32) for s in rng.uniform(1, 4, 8)),
                   key=len)  # fmt: skip
    single = [engine.recognize(c, "utterance", False) for c in clips]
    batched = [result_from_features(engine.head_logits, f, "utterance", False, 0.0)
               for group in (clips[:4], clips[4:]) for f in engine.features_batch(group)]  # fmt: skip
    worst = max(max(abs(a.scores[k] - b.scores[k]) for k in a.scores) for a, b in zip(batched, single, strict=True))
    assert worst <= 1e-3, worst
