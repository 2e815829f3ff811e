"""The VAD on silero's ONNX graph (issue 33): the same speech segments as silero's own torch path."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

from emotion2vec_webui.engine import vad
from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.model import silero_onnx

TOLERANCE_S = 0.04  # at each boundary: a frame (32 ms) and a little


@pytest.fixture(scope="module")
def silero_torch():
    """silero's TorchScript model and ``get_speech_timestamps``; torch's thread count put back (silero sets 1)."""
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    try:
        from silero_vad import get_speech_timestamps, get_speech_timestamps_from_probs, load_silero_vad

        model = load_silero_vad()
    finally:
        torch.set_num_threads(threads)
    return model, get_speech_timestamps, get_speech_timestamps_from_probs


@pytest.fixture(scope="module")
def waves(speech_wav, stereo_dialogue):
    """16 kHz speech fixtures: a sentence, each channel of the stereo call, its mix, and the mix under noise."""
    import soundfile as sf
    import soxr

    data, rate = sf.read(speech_wav, dtype="float32")
    sentence = soxr.resample(data, rate, 16000).astype(np.float32)
    stereo, rate = sf.read(stereo_dialogue[0], dtype="float32")
    assert rate == 16000
    mix = stereo.mean(axis=1).astype(np.float32)
    noisy = mix + np.random.default_rng(0).normal(0, 0.02, len(mix)).astype(np.float32)
    return {"sentence": sentence, "left": stereo[:, 0].copy(), "right": stereo[:, 1].copy(), "mix": mix, "noisy": noisy}


@contextlib.contextmanager
def _one_torch_thread():
    """silero's own setting: its 32 ms steps only slow down on more threads (18x on a loaded 2-core machine)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            yield torch
    finally:
        torch.set_num_threads(threads)


def _torch_segments(silero_torch, wave):
    model, get_speech_timestamps, _ = silero_torch
    with _one_torch_thread() as torch:
        stamps = get_speech_timestamps(
            torch.from_numpy(wave),
            model,
            threshold=vad.THRESHOLD,
            sampling_rate=16000,
            min_speech_duration_ms=int(vad.MIN_SPEECH_S * 1000),
            min_silence_duration_ms=int(vad.MIN_SILENCE_S * 1000),
            speech_pad_ms=int(vad.PAD_S * 1000),
        )
    return [(s["start"] / 16000, s["end"] / 16000) for s in stamps]


@pytest.mark.parametrize("name", ["sentence", "left", "right", "mix", "noisy"])
def test_onnx_segments_equal_the_torch_path(silero_torch, waves, name):
    """Each boundary within 40 ms of silero's TorchScript path (measured: equal to the sample)."""
    wave = waves[name]
    ours = vad.speech_segments(wave, max_segment_s=None)
    theirs = _torch_segments(silero_torch, wave)
    assert theirs and len(ours) == len(theirs), (ours, theirs)
    worst = max(max(abs(a - c), abs(b - d)) for (a, b), (c, d) in zip(ours, theirs, strict=True))
    assert worst <= TOLERANCE_S, (name, worst, ours, theirs)


def test_both_graphs_give_the_torch_probabilities(silero_torch, waves):
    """The sequence graph and the frame-by-frame graph: silero's per-frame probabilities within 1e-3."""
    model, _, _ = silero_torch
    wave = waves["sentence"]
    with _one_torch_thread() as torch:
        want = model.audio_forward(torch.from_numpy(wave), 16000).numpy().reshape(-1)
    folder = silero_onnx.graph_file().parent
    for graph in (silero_onnx.SEQUENCE_GRAPH, silero_onnx.STREAMING_GRAPH):
        if not (folder / graph).is_file():
            continue  # an older silero-vad ships only silero_vad.onnx
        got = silero_onnx.speech_probabilities(wave, folder / graph)
        assert got.shape == want.shape and np.abs(got - want).max() < 1e-3, graph


def test_spans_follow_silero_state_machine(silero_torch):
    """:func:`vad.speech_spans` against silero's ``get_speech_timestamps_from_probs`` on random probabilities."""
    _, _, from_probs = silero_torch
    rng = np.random.default_rng(3)
    for trial in range(200):
        frames = int(rng.integers(1, 400))
        # runs of speech-like and silence-like values, with values between the two thresholds now and then
        probs = np.repeat(rng.choice([0.05, 0.4, 0.9], size=frames // 8 + 1, p=[0.45, 0.1, 0.45]), 8)[:frames]
        probs = np.clip(probs + rng.normal(0, 0.08, frames), 0, 1).astype(np.float32)
        total = frames * 512 - int(rng.integers(0, 512))
        want = from_probs(probs.tolist(), sampling_rate=16000, threshold=0.5, min_speech_duration_ms=250,
                          min_silence_duration_ms=300, speech_pad_ms=50, audio_length_samples=total)  # fmt: skip
        got = vad.speech_spans(probs, total, 512, 0.5, 4000.0, 4800.0, 800.0)
        assert got == [(s["start"], s["end"]) for s in want], trial


def test_vad_needs_silero_graph_says_what_to_install(monkeypatch):
    monkeypatch.setattr(silero_onnx, "graph_file", lambda: None)
    with pytest.raises(E2VError) as err:
        vad.speech_segments(np.zeros(16000, np.float32))
    assert err.value.code == "bad_request"
    message = str(err.value)
    assert "pip install --no-deps 'silero-vad" in message and " / " in message and "语音检测" in message


def test_short_and_empty_waveforms():
    assert silero_onnx.speech_probabilities(np.zeros(0, np.float32)).shape == (0,)
    assert silero_onnx.speech_probabilities(np.zeros(513, np.float32)).shape == (2,)
    assert vad.speech_segments(np.zeros(100, np.float32)) == []
