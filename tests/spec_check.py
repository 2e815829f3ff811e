"""Check a result.json object against SPEC.md (shared by the tests)."""

from __future__ import annotations

import math
from datetime import datetime

from emotion2vec_webui.labels import EMOTIONS, EMOTIONS_ZH
from emotion2vec_webui.runs.schema import validate_result

TOP_KEYS = {
    "emotion", "emotion_zh", "confidence", "scores", "granularity", "timestamp", "audio", "model",
    "embedding", "frames", "segments", "warnings", "processing_time_s",
}


def check_result(r: dict, granularity: str | None = None) -> None:
    """Assert ``r`` is a SPEC-conforming result.json object (and valid against the shipped JSON Schema)."""
    validate_result(r)
    missing = TOP_KEYS - r.keys()
    assert not missing, f"missing keys {missing}"
    assert list(r["scores"]) == list(EMOTIONS)
    assert abs(sum(r["scores"].values()) - 1) <= 1e-4
    assert all(0 <= v <= 1 for v in r["scores"].values())
    assert r["emotion"] == max(r["scores"], key=r["scores"].get)
    assert math.isclose(r["confidence"], r["scores"][r["emotion"]], abs_tol=1e-6)
    assert r["emotion_zh"] == EMOTIONS_ZH[r["emotion"]]
    assert r["granularity"] in ("utterance", "frame")
    if granularity:
        assert r["granularity"] == granularity
    ts = datetime.fromisoformat(r["timestamp"])
    assert ts.utcoffset() is not None, "timestamp needs a UTC offset"
    a = r["audio"]
    assert {"source_name", "duration_s", "original_sample_rate", "original_channels", "sample_rate"} <= a.keys()
    assert a["sample_rate"] == 16000 and a["duration_s"] > 0
    m = r["model"]
    assert {"name", "hub", "device", "dtype", "random_weights"} <= m.keys()
    assert isinstance(m["random_weights"], bool)
    assert isinstance(r["warnings"], list)
    assert r["processing_time_s"] >= 0
    if r["embedding"] is not None:
        assert r["embedding"]["file"] == "embedding.npy"
        assert len(r["embedding"]["shape"]) == (2 if r["granularity"] == "frame" else 1)
    if r["granularity"] == "frame":
        f = r["frames"]
        assert f is not None and f["hop_s"] == 0.02 and f["labels"] == list(EMOTIONS)
        assert len(f["scores"]) > 0 and all(len(row) == 9 for row in f["scores"])
        assert all(abs(sum(row) - 1) < 1e-3 for row in f["scores"])
        if "raw_scores" in f:  # runs written before raw scores were kept lack it
            assert len(f["raw_scores"]) == len(f["scores"]) and all(len(row) == 9 for row in f["raw_scores"])
            assert all(abs(sum(row) - 1) < 1e-3 for row in f["raw_scores"])
        assert r["segments"], "frame granularity needs segments"
    else:
        assert r["frames"] is None
    segs = r["segments"] or []
    for s0, s1 in zip(segs, segs[1:], strict=False):
        assert s0["start_s"] < s0["end_s"] <= s1["start_s"], "segments are ordered and do not overlap"
    if segs and segs[0].get("source", "frames") == "frames":
        # Frame segments tile the audio; VAD segments cover speech only (gaps allowed).
        assert segs[0]["start_s"] == 0
        for s0, s1 in zip(segs, segs[1:], strict=False):
            assert s0["end_s"] == s1["start_s"]
        assert math.isclose(segs[-1]["end_s"], a["duration_s"], abs_tol=0.05)
    for seg in segs:
        assert seg["emotion"] in EMOTIONS and 0 <= seg["confidence"] <= 1
