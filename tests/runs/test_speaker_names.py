"""Renaming a saved conversation's speakers: result.json labels, transcript.srt/.vtt and turns.csv follow; ids stay."""

from __future__ import annotations

import csv
import io
import json

import pytest

from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.runs.recognize import Recognition, RecognizeOptions
from emotion2vec_webui.runs.speaker_names import parse_names, rename_speakers
from tests.spec_check import check_result


@pytest.fixture
def call_run(settings, engine, stereo_dialogue):
    out = Recognition(settings, RecognizeOptions(speakers="channels")).run(stereo_dialogue[0], lambda fn: fn(engine))
    return out.run.path, out.result


def _files(folder):
    return {n: (folder / n).read_bytes() for n in ("result.json", "transcript.srt", "transcript.vtt", "turns.csv")}


def test_rename_is_saved_into_the_run(call_run):
    import srt
    import webvtt

    folder, before = call_run
    after = rename_speakers(folder, parse_names("left=Agent 小王, right = Customer"))
    saved = json.loads((folder / "result.json").read_text("utf-8"))
    assert saved == after
    check_result(saved)
    assert [(s["id"], s["label"]) for s in saved["speakers"]] == [("left", "Agent 小王"), ("right", "Customer")]
    assert saved["turns"] == before["turns"]  # turns keep the ids; nothing else moved
    moved = ("speakers", "summary")  # the summary's labels and agent/customer comparison follow the names
    assert {k: v for k, v in saved.items() if k not in moved} == {k: v for k, v in before.items() if k not in moved}
    assert [s["label"] for s in saved["summary"]["speakers"]] == ["Agent 小王", "Customer"]
    assert saved["summary"]["comparison"]["agent"] == "left" and saved["summary"]["comparison"]["customer"] == "right"
    name = {"left": "Agent 小王", "right": "Customer"}
    cues = list(srt.parse((folder / "transcript.srt").read_text("utf-8")))
    assert [c.content.split(" · ")[0] for c in cues] == [f"[{name[t['speaker']]}" for t in saved["turns"]]
    vtt = webvtt.read(str(folder / "transcript.vtt"))
    assert [c.identifier for c in vtt.captions] == [f"turn-{t['index']}" for t in saved["turns"]]
    assert [c.text.split(" · ")[0] for c in vtt.captions] == [f"[{name[t['speaker']]}" for t in saved["turns"]]
    rows = list(csv.DictReader(io.StringIO((folder / "turns.csv").read_text("utf-8"))))
    assert [(r["speaker"], r["speaker_label"]) for r in rows] == [(t["speaker"], name[t["speaker"]]) for t in saved["turns"]]
    assert not [p for p in folder.iterdir() if p.name.startswith(".tmp-")]  # no temporary file left behind

    rename_speakers(folder, {"left": ""})  # an empty name gives the id back; the other name stays
    again = json.loads((folder / "result.json").read_text("utf-8"))
    assert [s["label"] for s in again["speakers"]] == ["left", "Customer"]


def test_a_bad_rename_changes_nothing(call_run, tmp_path):
    folder, _ = call_run
    files = _files(folder)
    with pytest.raises(E2VError) as err:
        rename_speakers(folder, {"S1": "Agent"})  # channels mode has left/right, not S1
    assert err.value.code == "bad_request" and "left" in err.value.message and "/" in err.value.message
    assert _files(folder) == files
    with pytest.raises(E2VError) as err:
        rename_speakers(tmp_path / "outputs_20990101_000000", {"left": "A"})
    assert err.value.code == "not_found"


def test_names_are_one_safe_line():
    from emotion2vec_webui.runs.speaker_names import apply_names

    result = {"speakers": [{"id": "S1", "label": "S1"}], "turns": []}
    out = apply_names(result, {"S1": "Ann\n--> Lee " + "x" * 80})
    assert out["speakers"][0]["label"].startswith("Ann → Lee x") and len(out["speakers"][0]["label"]) == 40
    assert result["speakers"][0]["label"] == "S1"  # the input is not modified
    assert parse_names("a=1；b=2，c=3; bad, =x") == {"a": "1", "b": "2", "c": "3"}
    with pytest.raises(E2VError):
        apply_names({"speakers": None}, {"S1": "x"})


def test_hostile_names_are_stored_clean_and_never_run_as_a_formula():
    """Issue 26: a formula, NUL and RIGHT-TO-LEFT OVERRIDE in a name; turns.csv shows the name as text."""
    from emotion2vec_webui.labels import EMOTIONS
    from emotion2vec_webui.runs.speaker_names import apply_names
    from emotion2vec_webui.runs.transcripts import conversation_files

    scores = {k: 1 / len(EMOTIONS) for k in EMOTIONS}
    turn = {"index": 0, "speaker": "S1", "start_s": 0.0, "end_s": 1.0, "emotion": "sad", "emotion_zh": "难过",
            "confidence": 0.6, "scores": scores}  # fmt: skip
    result = {"speakers": [{"id": "S1", "label": "S1"}, {"id": "S2", "label": "S2"}], "turns": [turn]}
    out = apply_names(result, {"S1": "=cmd|' /C calc'!A0", "S2": "Ann\x00\u202eeeL\x1b[0m"})
    assert [s["label"] for s in out["speakers"]] == ["=cmd|' /C calc'!A0", "AnneeL[0m"]  # stored as given, less controls
    rows = list(csv.DictReader(io.StringIO(conversation_files(out)["turns.csv"])))
    assert rows[0]["speaker_label"] == "'=cmd|' /C calc'!A0"
    assert rows[0]["start_s"] == "0.0" and rows[0]["score_sad"] == str(1 / len(EMOTIONS))  # numbers stay numbers
