"""result.json's ``stream`` block (runs saved by /api/v1/stream) against the shipped result schema.

The block's ``intervals`` and ``utterances`` are the messages the client got
(docs/streaming.md), so their schemas are the message schemas without
``type``, and its settings take the ``start`` message's values; a real take's
block is validated in tests/runs/test_live_stream.py and
tests/serving/test_stream_tickets.py.
"""

from __future__ import annotations

import copy
import json
from importlib import resources

import jsonschema
import pytest

from emotion2vec_webui.labels import EMOTIONS
from emotion2vec_webui.runs.schema import result_schema, validate_result


def _message_schema(name: str) -> dict:
    root = resources.files("emotion2vec_webui.serving").joinpath("stream_schemas")
    return json.loads(root.joinpath(f"{name}.schema.json").read_text("utf-8"))


def _scores(top: str) -> dict:
    return {k: (0.92 if k == top else 0.01) for k in EMOTIONS}


def _result(stream: dict) -> dict:
    scores = _scores("neutral")
    return {
        "emotion": "neutral", "emotion_zh": "中立", "confidence": 0.92, "scores": scores, "granularity": "utterance",
        "timestamp": "2026-12-06T10:15:02+00:00", "audio": {"source_name": "stream.wav", "container": "stream",
        "duration_s": 3.0, "original_sample_rate": 48000, "original_channels": 1, "sample_rate": 16000},
        "model": {"name": "tiny", "hub": None, "device": "cpu", "dtype": "float32", "random_weights": True}, "embedding": None, "frames": None, "segments": None, "warnings": [],
        "processing_time_s": 0.1, "stream": stream,
    }  # fmt: skip


BLOCK = {
    "encoding": "f32le", "sample_rate": 48000, "channels": 1, "speakers": "none", "interval_s": 1.0, "window_s": 3.0,
    "segmentation": "vad", "received_s": 3.0, "truncated": False, "skipped_intervals": 1, "max_lag_s": 0.42,
    "intervals": [
        {"index": 1, "start_s": 0.0, "end_s": 1.0, "emotion": "happy", "emotion_zh": "开心", "confidence": 0.92,
         "scores": _scores("happy"), "head": None},
        {"index": 3, "start_s": 0.0, "end_s": 3.0, "emotion": "sad", "emotion_zh": "难过", "confidence": 0.92,
         "scores": _scores("sad"), "head": None},
    ],
    "utterances": [
        {"index": 0, "start_s": 0.4, "end_s": 2.1, "speaker": None, "emotion": "sad", "emotion_zh": "难过",
         "confidence": 0.92, "scores": _scores("sad"), "head": None, "tag": "[sad 0.92 · 0.4–2.1 s]"},
        {"index": 1, "start_s": 2.3, "end_s": 2.9, "speaker": None, "emotion": None, "emotion_zh": None,
         "confidence": None, "scores": None, "head": None},  # its analysis failed: told without scores
    ],
}  # fmt: skip


def test_a_stream_block_validates():
    validate_result(_result(copy.deepcopy(BLOCK)))
    del_stream = _result(BLOCK)
    del del_stream["stream"]
    validate_result(del_stream)  # other runs have none


@pytest.mark.parametrize(
    "change",
    [
        lambda b: b.pop("intervals"),
        lambda b: b.update(encoding="mp3"),
        lambda b: b.update(sample_rate=96000),
        lambda b: b.update(skipped_intervals=-1),
        lambda b: b.update(extra=1),
        lambda b: b["intervals"][0].update(type="interval"),  # kept without its type
        lambda b: b["intervals"][0].update(emotion="bored"),
        lambda b: b["intervals"][0]["scores"].pop("angry"),
        lambda b: b["utterances"][0].update(confidence=1.5),
        lambda b: b["utterances"][0].pop("speaker"),
    ],
)
def test_a_malformed_stream_block_is_refused(change):
    block = copy.deepcopy(BLOCK)
    change(block)
    with pytest.raises(jsonschema.ValidationError):
        validate_result(_result(block))


def test_the_block_follows_the_message_schemas():
    stream = result_schema()["properties"]["stream"]["properties"]
    start = _message_schema("start")["properties"]
    for field in ("encoding", "speakers", "segmentation"):
        assert stream[field]["enum"] == start[field]["enum"], field
    for field in ("sample_rate", "channels"):
        assert (stream[field]["minimum"], stream[field]["maximum"]) == (start[field]["minimum"], start[field]["maximum"])
    for key, message in (("intervals", "interval"), ("utterances", "utterance_end")):
        schema = _message_schema(message)
        assert set(stream[key]["items"]["properties"]) == set(schema["properties"]) - {"type"}, key
        assert stream[key]["items"]["required"] == [r for r in schema["required"] if r != "type"], key
