"""A regression head's curves in the timeline payload (ui/timeline.py): decoded as timeline.js does, within 16-bit steps."""

from __future__ import annotations

import base64
import zlib

import numpy as np

from emotion2vec_webui.engine.timeline import frame_scores, softmax
from emotion2vec_webui.labels import EMOTIONS
from emotion2vec_webui.ui.timeline import timeline_payload


def result_with_dimensions(n: int, seed: int = 0) -> dict:
    """A frame result with a two-target regression head (arousal in 1..7, valence in -1..1)."""
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((n, 9)) * 3
    t = np.arange(n) * 0.02
    raw = np.stack([4 + 3 * np.sin(t), np.cos(t / 2)], axis=1) + rng.normal(0, 0.05, (n, 2))
    return {
        "frames": {"hop_s": 0.02, "smoothing_s": 0.5, "labels": list(EMOTIONS),
                   "scores": np.round(frame_scores(logits, 0.5), 5).tolist(), "raw_scores": softmax(logits).tolist()},
        "segments": [],
        "audio": {"duration_s": n * 0.02},
        "dimensions": {"name": "dims", "kind": "regression", "targets": ["arousal", "valence"],
                       "targets_zh": ["唤醒度", "valence"], "values": {"arousal": 4.0, "valence": 0.0},
                       "frames": {"hop_s": 0.02, "smoothing_s": 0.5, "targets": ["arousal", "valence"],
                                  "values": np.round(raw * 0.9, 5).tolist(), "raw_values": np.round(raw, 5).tolist()}},
    }  # fmt: skip


def decode_dims(p: dict) -> tuple[np.ndarray, np.ndarray]:
    """What timeline.js decodeDims reads: after the scores and the envelope, [2, K, n] uint16 deltas over [lo, hi]."""
    data = zlib.decompress(base64.b64decode(p["data"]))
    n, k = p["n"], len(p["dims"]["targets"])
    start = 2 * 9 * n * 2 + 2 * p["env_n"]
    q = np.frombuffer(data[start : start + 2 * k * n * 2], dtype=np.uint16).reshape(2, k, n)
    q = np.cumsum(q.astype(np.int64), axis=-1) % 65536
    values = p["dims"]["lo"] + q * (p["dims"]["hi"] - p["dims"]["lo"]) / 65535
    return values[0].T, values[1].T


def test_dimension_curves_survive_the_payload():
    result = result_with_dimensions(3000)
    wave = np.sin(np.arange(60 * 16000) / 16000 * 440).astype(np.float32)
    p = timeline_payload(result, waveform=wave)
    dims = p["dims"]
    assert [t["key"] for t in dims["targets"]] == ["arousal", "valence"] and dims["targets"][0]["zh"] == "唤醒度"
    assert dims["name"] == "dims" and "bytes" not in dims
    smooth, raw = decode_dims(p)
    step = (dims["hi"] - dims["lo"]) / 65535
    np.testing.assert_allclose(smooth, result["dimensions"]["frames"]["values"], atol=step)
    np.testing.assert_allclose(raw, result["dimensions"]["frames"]["raw_values"], atol=step)


def test_no_dimensions_or_a_mismatch_leaves_them_out():
    plain = result_with_dimensions(50)
    plain.pop("dimensions")
    assert timeline_payload(plain)["dims"] is None
    odd = result_with_dimensions(50)
    odd["dimensions"]["frames"]["values"] = odd["dimensions"]["frames"]["values"][:-1]  # not one per frame
    assert timeline_payload(odd)["dims"] is None
