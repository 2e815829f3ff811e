"""The timeline payload (ui/timeline.py): lossless to 0.01 %, small for 10 minutes, the envelope, the static files."""

from __future__ import annotations

import base64
import html
import json
import re
import zlib

import numpy as np

from emotion2vec_webui.engine.timeline import frame_scores, segments, softmax
from emotion2vec_webui.labels import EMOTIONS
from emotion2vec_webui.ui.timeline import (
    SCORE_SCALE,
    STATIC_DIR,
    envelope,
    head_html,
    run_timeline_html,
    timeline_html,
    timeline_payload,
)


def _result(n: int, seed: int = 0) -> dict:
    logits = np.random.default_rng(seed).standard_normal((n, 9)) * 4  # as noisy as random weights
    smooth = frame_scores(logits, 0.5)
    return {
        "frames": {
            "hop_s": 0.02,
            "smoothing_s": 0.5,
            "labels": list(EMOTIONS),
            "scores": np.round(smooth, 5).tolist(),
            "raw_scores": softmax(logits).tolist(),
        },
        "segments": segments(smooth, n * 0.02),
        "audio": {"duration_s": n * 0.02},
    }


def _decode(payload: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """What timeline.js does: inflate, undo the deltas modulo 2^16, split smoothed / raw / envelope."""
    raw = zlib.decompress(base64.b64decode(payload["data"]))
    n = payload["n"]
    deltas = np.frombuffer(raw, dtype="<u2", count=2 * 9 * n).reshape(2, 9, n)
    values = np.cumsum(deltas, axis=2, dtype=np.uint64) % 65536
    env = None
    if payload["env_n"]:
        env = np.frombuffer(raw, dtype=np.int8, offset=2 * 9 * n * 2).reshape(2, payload["env_n"])
    return values[0].T / SCORE_SCALE, values[1].T / SCORE_SCALE, env


def test_payload_carries_every_frame_to_a_hundredth_of_a_percent():
    result = _result(1500)
    wave = (np.sin(np.arange(16000 * 30) / 50) * 20000).astype(np.int16)
    payload = timeline_payload(result, audio_url="gradio_api/file=/x.wav", waveform=wave, run_id="r")
    smooth, raw, env = _decode(payload)
    assert smooth.shape == raw.shape == (1500, 9)  # every frame: decimation is for drawing only
    np.testing.assert_allclose(smooth, result["frames"]["scores"], atol=0.5 / SCORE_SCALE + 1e-12)
    np.testing.assert_allclose(raw, result["frames"]["raw_scores"], atol=0.5 / SCORE_SCALE + 1e-12)
    assert payload["has_raw"] and payload["duration"] == 30.0 and payload["n"] == 1500
    assert env is not None and env.shape == (2, 3000)  # 100 buckets per second
    assert (env[0] <= env[1]).all() and env[1].max() >= 70 and env[0].min() <= -70
    assert [s["k"] for s in payload["segments"]] == [s["emotion"] for s in result["segments"]]
    assert [lab["key"] for lab in payload["labels"]] == list(EMOTIONS)


def test_ten_minutes_fit_in_two_megabytes():
    result = _result(30_000)  # 10 minutes of frames, as noisy as random weights (barely compressible)
    wave = (np.random.default_rng(1).standard_normal(16000 * 600) * 3000).astype(np.int16)
    page = timeline_html(result, audio_url="gradio_api/file=/x.wav", waveform=wave)
    assert len(page.encode()) < 2_000_000
    data = json.loads(html.unescape(re.search(r'data-timeline="([^"]*)"', page).group(1)))
    smooth, raw, _ = _decode(data)
    assert smooth.shape == (30_000, 9) and raw.shape == (30_000, 9)


def test_old_runs_without_raw_scores_and_utterance_runs():
    result = _result(100)
    del result["frames"]["raw_scores"]
    payload = timeline_payload(result)
    assert payload["has_raw"] is False and payload["env_n"] == 0 and payload["audio"] is None
    assert timeline_payload({"frames": None}) is None
    assert run_timeline_html({"granularity": "utterance", "frames": None}) == ""
    assert run_timeline_html(None) == ""


def test_envelope_of_float_and_int_signals():
    x = np.zeros(16000, np.float32)
    x[8000] = 1.0
    x[4000] = -0.5
    lo, hi = envelope(x, 16000)
    assert len(lo) == len(hi) == 100
    assert hi[50] == 127 and lo[25] == -64 and hi[:50].max() == 0
    lo16, hi16 = envelope((x * 32767).astype(np.int16), 16000)
    np.testing.assert_allclose(lo16, lo, atol=1)  # int16 full scale is 32768: one step of rounding apart
    np.testing.assert_allclose(hi16, hi, atol=1)
    assert len(envelope(np.zeros(0, np.float32), 16000)[0]) == 0


def test_the_page_loads_only_files_shipped_in_the_package():
    head = head_html()
    refs = re.findall(r'(?:src|href)="([^"]+)"', head)
    assert len(refs) == 4 and not any("//" in r for r in refs)  # relative: served by the app, no CDN
    for ref in refs:
        assert (STATIC_DIR / ref.split("e2v-static/timeline/", 1)[1]).is_file()
    assert (STATIC_DIR / "vendor" / "uplot" / "LICENSE").read_text().startswith("The MIT License")
