"""Length-bucketed batches give the same results as one-by-one calls (upstream emotion2vec #37)."""

from __future__ import annotations

import numpy as np
import pytest

from emotion2vec_webui.engine import batching
from emotion2vec_webui.engine.batching import plan_buckets, recognize_batch

LENGTHS = [16000, 17000, 8000, 16500, 24000, 25500, 8400]


def _clips():
    rng = np.random.default_rng(11)
    t = np.arange(max(LENGTHS)) / 16000
    return [
        (0.2 * np.sin(2 * np.pi * (150 + 40 * i) * t[:n]) + 0.05 * rng.standard_normal(n)).astype(np.float32)
        for i, n in enumerate(LENGTHS)
    ]


def test_buckets_cover_every_clip_once_within_limits():
    lengths = [5, 100, 98, 50, 51, 52, 99, 7, 6, 100, 100]
    buckets = plan_buckets(lengths, max_batch=3, max_padding=0.1)
    flat = sorted(i for b in buckets for i in b)
    assert flat == list(range(len(lengths)))
    for b in buckets:
        assert 1 <= len(b) <= 3
        assert [lengths[i] for i in b] == sorted(lengths[i] for i in b)
        assert max(lengths[i] for i in b) - min(lengths[i] for i in b) <= 0.1 * max(lengths[i] for i in b)
    exact = plan_buckets(lengths, max_batch=8, max_padding=0.0)
    assert all(len({lengths[i] for i in b}) == 1 for b in exact)


@pytest.mark.parametrize(
    ("granularity", "encoder"), [("utterance", "ours"), ("frame", "ours"), ("utterance", "funasr")]
)
def test_batched_equals_unbatched(engine, granularity, encoder):
    """CPU runs fastpath.PosConv (masked by its ``padding``); GPUs run FunASR's convolutions (masked by hooks)."""
    audio = engine.module.modality_encoders["AUDIO"]
    fast = audio.relative_positional_encoder
    if encoder == "funasr":
        audio.relative_positional_encoder = fast.reference
    try:
        _check_batched_equals_unbatched(engine, granularity)
    finally:
        audio.relative_positional_encoder = fast


def _check_batched_equals_unbatched(engine, granularity):
    clips = _clips()
    batched = recognize_batch(engine, clips, granularity, extract_embedding=True, max_batch=8, max_padding=0.7)
    assert len(batched) == len(clips)
    for clip, got in zip(clips, batched, strict=True):
        want = engine.recognize(clip, granularity, extract_embedding=True)
        assert got.num_frames == want.num_frames
        assert got.emotion == want.emotion
        for key, value in want.scores.items():
            assert abs(got.scores[key] - value) <= 1e-4
        assert got.embedding.shape == want.embedding.shape
        np.testing.assert_allclose(got.embedding, want.embedding, atol=1e-4)
        if granularity == "frame":
            np.testing.assert_allclose(got.frame_logits, want.frame_logits, atol=1e-4)


def test_unmasked_positional_convolution_would_differ(engine, monkeypatch):
    """The check above can fail: without the positional-conv masking, padding leaks into the results."""
    monkeypatch.setattr(batching, "_mask_positional_encoder", lambda module, mask: lambda: None)
    clips = _clips()
    batched = recognize_batch(engine, clips, "utterance", extract_embedding=True, max_batch=8, max_padding=0.7)
    worst = max(
        float(np.abs(got.embedding - engine.recognize(clip, "utterance").embedding).max())
        for clip, got in zip(clips, batched, strict=True)
    )
    assert worst > 1e-3


def test_engine_method_keeps_order_and_equality(engine):
    clips = _clips()[:3]
    got = engine.recognize_batch(clips, "utterance", extract_embedding=False, max_batch=4)
    for clip, result in zip(clips, got, strict=True):
        want = engine.recognize(clip, "utterance", extract_embedding=False)
        assert result.embedding is None
        assert max(abs(result.scores[k] - want.scores[k]) for k in want.scores) <= 1e-4


@pytest.mark.parametrize("max_batch", [1, 4])
def test_batches_honour_the_window(engine, max_batch):
    """E2V_WINDOW_S reaches every clip of a batch: each equals a windowed one-by-one call, not a single pass."""
    rng = np.random.default_rng(5)
    t = np.arange(3 * 16000) / 16000
    clips = [
        (0.3 * np.sin(2 * np.pi * (120 + 90 * i) * t * (1 + t)) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
        for i in range(2)
    ]
    got = engine.recognize_batch(clips, "frame", extract_embedding=False, max_batch=max_batch, window_s=1.0)
    for clip, result in zip(clips, got, strict=True):
        windowed = engine.recognize(clip, "frame", extract_embedding=False, window_s=1.0)
        single_pass = engine.recognize(clip, "frame", extract_embedding=False, window_s=0)
        np.testing.assert_allclose(result.frame_logits, windowed.frame_logits, atol=1e-5)
        assert np.abs(result.frame_logits - single_pass.frame_logits).max() > 1e-4  # the window made a difference
