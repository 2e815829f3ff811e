"""The summary block through the one recognise flow: in result.json, valid, equal to a recomputation, renamed.

Random weights: nothing here asserts an emotion; the checks are structure, the schema, and equality between
the stored block and the pure function over the stored turns.
"""

from __future__ import annotations

import json

from emotion2vec_webui.engine.call_summary import arc_at, balance, summary_for_result
from emotion2vec_webui.runs.recognize import Recognition, RecognizeOptions
from emotion2vec_webui.runs.speaker_names import rename_speakers
from tests.spec_check import check_result


def _run(settings, engine, source, **options):
    return Recognition(settings, RecognizeOptions(**options)).run(source, lambda fn: fn(engine))


def test_a_conversation_has_a_summary_equal_to_its_recomputation(settings, engine, stereo_dialogue):
    path, _ = stereo_dialogue
    out = _run(settings, engine, path, speakers="channels")
    r = out.result
    check_result(r)
    summary = r["summary"]
    assert summary["source"] == "turns"
    assert summary == summary_for_result(r)
    assert [s["id"] for s in summary["speakers"]] == [s["id"] for s in r["speakers"]]
    for mine, theirs in zip(summary["speakers"], r["speakers"], strict=True):
        assert mine["turns"] == theirs["turns"] and mine["emotion_share"] == theirs["emotion_share"]
    assert len(summary["arc"]["values"]) == int(r["audio"]["duration_s"] / summary["arc"]["step_s"]) + 1
    assert summary["comparison"] is None
    stored = json.loads((out.run.path / "result.json").read_text("utf-8"))
    assert stored["summary"] == summary
    records = _jsonl(out.run.path)
    assert [x["index"] for x in records] == [t["index"] for t in r["turns"]]
    for x, t in zip(records, r["turns"], strict=True):
        assert (x["speaker"], x["label"], x["start_s"], x["end_s"]) == (
            t["speaker"],
            t["speaker"],
            t["start_s"],
            t["end_s"],
        )
        assert (x["emotion"], x["confidence"], x["text"]) == (t["emotion"], t["confidence"], None)
        assert x["balance"] == round(balance(t["scores"]), 4)
        assert x["arc"] == arc_at(summary, (t["start_s"] + t["end_s"]) / 2)

    renamed = rename_speakers(out.run.path, {"left": "Agent", "right": "Customer"})
    check_result(renamed)
    assert [s["label"] for s in renamed["summary"]["speakers"]] == ["Agent", "Customer"]
    assert renamed["summary"]["comparison"]["agent"] == "left"
    assert renamed["summary"]["comparison"]["customer"] == "right"
    assert json.loads((out.run.path / "result.json").read_text("utf-8"))["summary"] == renamed["summary"]
    assert {x["label"] for x in _jsonl(out.run.path)} == {"Agent", "Customer"}


def _jsonl(folder) -> list[dict]:
    lines = (folder / "turns.jsonl").read_text("utf-8").splitlines()
    return [json.loads(line) for line in lines]


def test_a_single_speaker_file_with_segments_has_a_summary(settings, engine, speech_wav):
    r = _run(settings, engine, speech_wav, granularity="frame").result
    check_result(r)
    summary = r["summary"]
    assert summary["source"] == "segments" and [s["id"] for s in summary["speakers"]] == ["all"]
    assert summary["speakers"][0]["turns"] == len(r["segments"])
    assert summary == summary_for_result(r)


def test_no_summary_without_turns_or_segments(settings, engine, speech_wav):
    r = _run(settings, engine, speech_wav).result
    check_result(r)
    assert r["summary"] is None
