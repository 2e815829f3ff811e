"""Frame scores and segments: the frame/utterance identity, frame rate, smoothing width, segment tiling."""

from __future__ import annotations

import types

import numpy as np
import pytest

from emotion2vec_webui.audio.signals import noise, tone, write_audio
from emotion2vec_webui.engine.timeline import (
    HOP_S,
    frame_scores,
    segments,
    smooth_logits,
    smoothing_frames,
    softmax,
)
from emotion2vec_webui.labels import EMOTIONS
from emotion2vec_webui.runs.recognize import Recognition, RecognizeOptions


def _wave(seconds: float, seed: int = 0) -> np.ndarray:
    t = tone(seconds, 16000)[:, 0] + noise(seconds, 16000, seed=seed)[:, 0]
    return t.astype(np.float32)


def test_mean_of_frame_logits_gives_the_utterance_scores(engine):
    wave = _wave(3.3)
    frame = engine.recognize(wave, "frame", True)
    utt = engine.recognize(wave, "utterance", True)
    assert frame.scores == pytest.approx(utt.scores, abs=1e-6)
    # The head is linear: mean over frames of head(f) == head(mean over frames of f).
    from_frames = softmax(frame.frame_logits.astype(np.float64).mean(axis=0))
    assert from_frames == pytest.approx(np.array([utt.scores[k] for k in EMOTIONS]), abs=1e-5)
    assert frame.embedding.mean(axis=0) == pytest.approx(utt.embedding, abs=1e-5)
    assert frame.frame_logits.shape == (frame.num_frames, 9)


def test_head_drops_unused_classes_like_funasr_masking(engine):
    """FunASR sets ``unuse`` logits to -inf before the softmax; dropping them gives the same scores."""
    import torch

    from emotion2vec_webui.engine.engine import EmotionEngine

    labels = list(EMOTIONS[:4]) + ["unuse_0"] + list(EMOTIONS[4:]) + ["unuse_1"]
    torch.manual_seed(0)
    proj = torch.nn.Linear(8, len(labels))
    fake = EmotionEngine(types.SimpleNamespace(model=types.SimpleNamespace(proj=proj)), engine.info, labels)
    feats = torch.randn(5, 8)
    ours = torch.softmax(fake.head_logits(feats), dim=-1)
    with torch.no_grad():
        masked = proj(feats)
    for i, lab in enumerate(labels):
        if lab.startswith("unuse"):
            masked[:, i] = -np.inf
    funasr = torch.softmax(masked, dim=-1)[:, [i for i, lab in enumerate(labels) if not lab.startswith("unuse")]]
    assert torch.allclose(ours, funasr, atol=1e-6)


@pytest.mark.parametrize("seconds", [0.5, 2.37, 6.0])
def test_fifty_frames_per_second(engine, seconds):
    wave = _wave(seconds)
    r = engine.recognize(wave, "frame", False)
    assert r.num_frames == (len(wave) - 400) // 320 + 1
    assert abs(r.num_frames - seconds * 50) <= 1


@pytest.mark.parametrize("smoothing_s", [0.0, 0.1, 0.5, 1.0])
def test_smoothing_transition_width_matches_the_window(smoothing_s):
    logits = np.zeros((200, 9))
    logits[:100, 0] = 4.0
    logits[100:, 3] = 4.0
    window = smoothing_frames(smoothing_s)
    assert window % 2 == 1
    smoothed = smooth_logits(logits, window)[:, 0]
    between = np.sum((smoothed > 1e-9) & (smoothed < 4.0 - 1e-9))
    assert between == window - 1
    top = frame_scores(logits, smoothing_s).argmax(axis=1)
    assert set(top[: 100 - window // 2]) == {0} and set(top[100 + window // 2 + 1 :]) == {3}


def test_smoothing_keeps_a_constant_signal():
    logits = np.tile(np.arange(9.0), (30, 1))
    assert np.allclose(smooth_logits(logits, 25), logits)


def _check_tiling(segs, duration, min_s):
    assert segs[0]["start_s"] == 0
    assert segs[-1]["end_s"] == pytest.approx(duration, abs=1e-3)
    for a, b in zip(segs, segs[1:], strict=False):
        assert a["end_s"] == b["start_s"], "gap or overlap"
        assert a["start_s"] < a["end_s"]
        assert a["emotion"] != b["emotion"], "equal neighbours should have been merged"
    if len(segs) > 1:
        assert min(s["end_s"] - s["start_s"] for s in segs) >= min_s - 1e-6
    for s in segs:
        assert s["emotion"] in EMOTIONS and 0 <= s["confidence"] <= 1
        assert s["confidence"] == pytest.approx(s["scores"][s["emotion"]], abs=1e-6)
        assert s["source"] == "frames"


@pytest.mark.parametrize("frames", [1, 7, 50, 3000])
@pytest.mark.parametrize("seed", [0, 1])
def test_segments_tile_the_audio_without_gaps(frames, seed):
    scores = softmax(np.random.default_rng(seed).normal(0, 2, (frames, 9)))
    duration = frames * HOP_S + 0.013
    segs = segments(scores, duration, min_segment_s=0.3)
    _check_tiling(segs, duration, 0.3)


def test_a_short_blip_does_not_split_a_segment():
    scores = np.full((205, 9), 0.01)
    scores[:, 0] = 0.9
    scores[100:105, 0], scores[100:105, 6] = 0.1, 0.8
    segs = segments(scores, 205 * HOP_S)
    assert [s["emotion"] for s in segs] == ["angry"]


def test_long_runs_become_their_own_segments():
    scores = np.full((100, 9), 0.01)
    scores[:50, 3] = 0.9
    scores[50:, 6] = 0.9
    segs = segments(scores, 2.0)
    assert [(s["start_s"], s["end_s"], s["emotion"]) for s in segs] == [(0.0, 1.0, "happy"), (1.0, 2.0, "sad")]


def test_frame_result_has_timeline_covering_the_audio(engine, settings, tmp_path):
    wav = write_audio(tmp_path / "a.wav", _wave(4.0)[:, None], 16000, "wav")
    r = Recognition(settings, RecognizeOptions("frame", False)).run(wav, lambda fn: fn(engine)).result
    assert r["frames"]["hop_s"] == HOP_S and r["frames"]["labels"] == list(EMOTIONS)
    assert abs(len(r["frames"]["scores"]) - 4.0 * 50) <= 1
    _check_tiling(r["segments"], r["audio"]["duration_s"], 0.3)
