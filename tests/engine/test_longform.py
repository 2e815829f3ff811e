"""Long recordings: window planning, stitching, and a 10-minute file end to end."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from emotion2vec_webui.audio.signals import espeak_available, noise, speech, tone, write_audio
from emotion2vec_webui.engine.longform import HOP, num_frames, pause_profile, plan_windows
from emotion2vec_webui.engine.timeline import softmax
from emotion2vec_webui.labels import EMOTIONS


def _check_plan(windows, num_samples, window_s):
    total = num_frames(num_samples)
    assert windows[0].keep_from == 0 and windows[-1].keep_to == total
    for a, b in zip(windows, windows[1:], strict=False):
        assert a.keep_to == b.keep_from, "kept frames must tile the file"
    for w in windows:
        assert w.start % HOP == 0
        assert w.end - w.start < window_s * 16000 + 400
        assert w.start // HOP <= w.keep_from < w.keep_to <= w.start // HOP + num_frames(w.end - w.start)


@pytest.mark.parametrize("seconds", [30.0, 30.02, 61.3, 600.0])
@pytest.mark.parametrize("window_s", [10.0, 30.0])
def test_windows_tile_the_frames(seconds, window_s):
    n = int(seconds * 16000)
    windows = plan_windows(n, window_s)
    _check_plan(windows, n, window_s)
    if seconds <= window_s + 0.02:
        assert len(windows) == 1
    else:
        assert len(windows) >= seconds / window_s
    for w in windows[1:]:
        assert w.keep_from - w.start // HOP == 50, "1 s of context before the kept frames"
    for w in windows[:-1]:
        assert w.start // HOP + num_frames(w.end - w.start) - w.keep_to == 50, "1 s of context after"


def test_cuts_fall_in_pauses():
    rng = np.random.default_rng(0)
    wave = (0.3 * rng.standard_normal(16000 * 100)).astype(np.float32)
    pauses = [(26.0, 26.6), (52.5, 53.0), (78.0, 78.4)]
    for a, b in pauses:
        wave[int(a * 16000) : int(b * 16000)] = 0
    windows = plan_windows(len(wave), 30.0, quietness=pause_profile(wave))
    _check_plan(windows, len(wave), 30.0)
    cuts = [w.keep_to * HOP / 16000 for w in windows[:-1]]
    assert len(cuts) == 3
    for cut, (a, b) in zip(cuts, pauses, strict=True):
        assert a <= cut <= b, f"cut at {cut} s, pause at {a}–{b} s"


def test_windowed_result_is_consistent(engine):
    wave = (tone(25.0, 16000)[:, 0] + noise(25.0, 16000)[:, 0]).astype(np.float32)
    single = engine.recognize(wave, "frame", True, window_s=0)
    frame = engine.recognize(wave, "frame", True, window_s=8.0)
    utt = engine.recognize(wave, "utterance", True, window_s=8.0)
    assert frame.num_frames == single.num_frames == num_frames(len(wave))
    assert frame.frame_logits.shape == (single.num_frames, 9) and frame.embedding.shape == single.embedding.shape
    # The utterance result comes from all windows' stitched features.
    assert frame.scores == pytest.approx(utt.scores, abs=1e-6)
    from_frames = softmax(frame.frame_logits.astype(np.float64).mean(axis=0))
    assert from_frames == pytest.approx([utt.scores[k] for k in EMOTIONS], abs=1e-5)
    assert frame.embedding.mean(axis=0) == pytest.approx(utt.embedding, abs=1e-5)
    # Frames far from any cut see the same context either way, nearly.
    assert np.corrcoef(frame.frame_logits.ravel(), single.frame_logits.ravel())[0, 1] > 0.9


@pytest.fixture(scope="module")
def ten_minute_wav(tmp_path_factory):
    """600 s of alternating speech (espeak-ng), tones, noise and silence."""
    parts = []
    if espeak_available():
        import soxr

        data, rate = speech("I have been waiting here for an hour. Nobody told me anything at all.")
        parts.append(soxr.resample(data, rate, 16000).astype(np.float32))
    parts += [tone(3.0, 16000, freq=180)[:, 0], np.zeros(8000, np.float32), noise(2.0, 16000)[:, 0]]
    block = np.concatenate(parts + [np.zeros(4000, np.float32)])
    wave = np.tile(block, int(np.ceil(600 * 16000 / len(block))))[: 600 * 16000]
    return write_audio(tmp_path_factory.mktemp("long") / "long.wav", wave, 16000, "wav")


@pytest.mark.slow
def test_ten_minute_file_through_the_cli(ten_minute_wav, tiny_model_dir, tmp_path, capsys, monkeypatch):
    from tests.cli.test_cli import run_main  # the CLI's entry point in-process (the process is not under test)

    proc = run_main(
        capsys, monkeypatch, "recognize", str(ten_minute_wav), "--granularity", "frame", "--json",
        env={"E2V_MODEL": str(tiny_model_dir), "E2V_DEVICE": "cpu", "E2V_OUTPUT_DIR": str(tmp_path / "o")},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert r["audio"]["duration_s"] == pytest.approx(600.0)
    assert len(r["frames"]["scores"]) == num_frames(600 * 16000)  # 29,999 frames: 50 per second
    assert r["segments"][0]["start_s"] == 0 and r["segments"][-1]["end_s"] == pytest.approx(600.0)
    emb = np.load(os.path.join(r["run_dir"], "embedding.npy"), mmap_mode="r")
    assert emb.shape[0] == len(r["frames"]["scores"])
