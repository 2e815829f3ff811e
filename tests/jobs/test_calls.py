"""Across calls: calls.csv / calls.json / calls_report.html from hand-built conversation runs, and a real batch."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from emotion2vec_webui.engine.call_summary import summary_for_result
from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.jobs import calls as jc
from emotion2vec_webui.labels import EMOTIONS, EMOTIONS_ZH
from emotion2vec_webui.runs.speaker_names import check_names
from emotion2vec_webui.runs.storage import write_run
from tests.engine.test_call_summary import call
from tests.runs.test_report import Page


def conversation_result(rise_at: float | None, name: str) -> dict:
    turns = call(rise_at=rise_at if rise_at is not None else 1e9)
    for t in turns:
        t["emotion_zh"] = EMOTIONS_ZH[t["emotion"]]
    result = {
        "emotion": "neutral", "confidence": 0.5, "scores": {k: 1 / 9 for k in EMOTIONS},
        "audio": {"source_name": name, "duration_s": 120.0}, "turns": turns,
        "speakers": [{"id": "left", "label": "left", "channel": 0}, {"id": "right", "label": "right", "channel": 1}],
    }  # fmt: skip
    result["summary"] = summary_for_result(result)
    return result


@pytest.fixture
def batch(tmp_path):
    """A batch folder: three calls (escalation at 84 s, none, at 60 s), one failed input, one run folder gone."""
    folder = tmp_path / "batch_x"
    folder.mkdir()
    rows = []
    for name, rise in (("calm.wav", None), ("late.wav", 84.0), ("early.wav", 60.0)):
        run = write_run(folder, conversation_result(rise, name), np.zeros(160, np.float32), None, "log\n")
        rows.append({"file": name, "input": f"/in/{name}", "status": "ok", "run_folder": run.run_id})
    rows.append({"file": "bad.wav", "input": "/in/bad.wav", "status": "error", "run_folder": None})
    rows.append({"file": "gone.wav", "input": "/in/gone.wav", "status": "ok", "run_folder": "outputs_20990101_000000"})
    rows.append({"file": "out.wav", "input": "/in/out.wav", "status": "ok", "run_folder": "../../etc"})
    return folder, rows


def test_calls_are_ranked_by_escalation(batch):
    folder, rows = batch
    table = jc.calls_table(folder, rows)
    calls = table["calls"]
    assert [c["file"] for c in calls] == ["early.wav", "late.wav", "calm.wav"]  # 1, 1 (same worst, later), 0
    assert [c["rank"] for c in calls] == [1, 2, 3]
    assert [c["escalations"] for c in calls] == [1, 1, 0]
    assert calls[0]["first_escalation_s"] == 60.0 and calls[1]["first_escalation_s"] == 84.0
    assert calls[2]["first_escalation_s"] is None
    assert calls[0]["worst_arc"] <= calls[1]["worst_arc"] < calls[2]["worst_arc"]
    for c in calls:
        assert c["duration_s"] == 120.0 and c["turns"] == 30 and [s["id"] for s in c["speakers"]] == ["left", "right"]
        assert sum(s["talk_share"] for s in c["speakers"]) == pytest.approx(1.0, abs=1e-3)


def test_label_aggregates_equal_hand_computations(batch):
    folder, rows = batch
    by = {a["label"]: a for a in jc.calls_table(folder, rows)["by_label"]}
    assert set(by) == {"left", "right"}
    left, right = by["left"], by["right"]
    assert left["calls"] == right["calls"] == 3
    assert left["talk_s"] == pytest.approx(3 * 52.5) and left["escalations"] == 0
    assert right["escalations"] == 2 and right["calls_escalated"] == 2
    # right speaks at 4, 12, … 116 s (15 turns of 3.5 s); angry (0.8) from 60 s in "early" (60 … 116: 8 turns),
    # from 84 s in "late" (84 … 116: 5 turns), never in "calm"; 0.1 otherwise
    angry_turns = {"early": 8, "late": 5, "calm": 0}
    angry = sum(angry_turns.values()) * 3.5
    talk = 3 * 52.5
    assert right["mean_negativity"] == pytest.approx((angry * 0.8 + (talk - angry) * 0.1) / talk, abs=1e-3)
    assert right["emotion_share"]["angry"] == pytest.approx(angry / talk, abs=1e-3)


def test_names_given_to_the_batch_group_the_aggregates(batch):
    folder, rows = batch
    assert jc.name_speakers(folder, rows, {"left": "Agent", "right": "Customer", "S3": "nobody"}) == 3
    table = jc.calls_table(folder, rows)
    assert [a["label"] for a in table["by_label"]] == ["Agent", "Customer"]
    assert all([s["label"] for s in c["speakers"]] == ["Agent", "Customer"] for c in table["calls"])


def test_calls_files(batch):
    folder, rows = batch
    table = jc.write_calls(folder, rows)
    assert json.loads((folder / jc.CALLS_JSON).read_text("utf-8")) == table
    assert jc.read_calls_table(folder) == table
    (folder / jc.CALLS_JSON).unlink()  # made from summary.jsonl when calls.json is missing
    (folder / "summary.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + "not json\n", "utf-8")
    assert jc.read_calls_table(folder) == table
    lines = list(csv.DictReader((folder / jc.CALLS_CSV).open(encoding="utf-8", newline="")))
    assert [r["file"] for r in lines] == [c["file"] for c in table["calls"]]
    first = lines[0]
    assert first["rank"] == "1" and first["speakers"] == "left=left; right=right" and first["escalations"] == "1"
    assert float(first["speaker2_talk_share"]) == table["calls"][0]["speakers"][1]["talk_share"]
    assert float(first["speaker2_share_angry"]) == table["calls"][0]["speakers"][1]["emotion_share"]["angry"]
    assert first["first_escalation_s"] == "60.0" and lines[2]["first_escalation_s"] == ""
    assert jc.write_calls(folder, [rows[3]]) is None  # no conversation: no files written over
    jc.write_calls(folder, rows)
    os.utime(folder / jc.CALLS_JSON, (1, 1))  # a run renamed after calls.json was written: made afresh
    from emotion2vec_webui.runs.speaker_names import rename_speakers

    rename_speakers(folder / rows[0]["run_folder"], {"left": "Agent"})
    fresh = jc.read_calls_table(folder)
    assert [s["label"] for c in fresh["calls"] if c["file"] == rows[0]["file"] for s in c["speakers"]] == ["Agent", "right"]


def test_the_batch_report_is_self_contained_and_escaped(batch):
    folder, rows = batch
    evil = '<img src="http://x/y.png">'
    run = folder / rows[0]["run_folder"]
    from emotion2vec_webui.runs.speaker_names import rename_speakers

    rename_speakers(run, {"left": evil})
    rows[0]["file"] = f"{evil}.wav"
    jc.write_calls(folder, rows)
    html = (folder / jc.CALLS_REPORT).read_text("utf-8")
    page = Page()
    page.feed(html)
    assert not [a for tag, a in page.tags if tag == "img" or "src" in a or "href" in a]
    assert evil in "".join(page.text)
    sections = [a["id"] for tag, a in page.tags if tag == "section"]
    assert sections == ["calls", "by-label"]
    ranks = [int(a["data-rank"]) for tag, a in page.tags if tag == "tr" and "data-rank" in a]
    assert ranks == [1, 2, 3]
    assert sum(tag == "polyline" for tag, _ in page.tags) == 3  # one arc per call


def test_speaker_names_are_checked_before_any_work():
    assert check_names("left=Agent, right = Customer") == {"left": "Agent", "right": "Customer"}
    assert check_names(None) == {} and check_names("") == {}
    for bad in ("Agent", "../x=Agent", "left=A," + ",".join(f"S{i}=x" for i in range(1, 80))):
        with pytest.raises(E2VError) as err:
            check_names(bad)
        assert err.value.code == "bad_request" and " / " in err.value.message


def test_a_conversation_batch_writes_calls(engine, settings, stereo_dialogue, conversation_models, tmp_path):
    from emotion2vec_webui.jobs.batch import BatchOptions
    from emotion2vec_webui.jobs.batch_job import prepare_batch
    from emotion2vec_webui.jobs.inputs import discover_inputs
    from emotion2vec_webui.runs.recognize import RecognizeOptions

    inputs = tmp_path / "calls"
    inputs.mkdir()
    for name in ("a.wav", "b.wav"):
        shutil.copy(stereo_dialogue[0], inputs / name)
    s = dataclasses.replace(settings, asr_model=str(conversation_models["sensevoice"]))
    options = BatchOptions(RecognizeOptions(speakers="channels", transcribe=True, extract_embedding=False),
                           speaker_names={"left": "Agent", "right": "Customer"})  # fmt: skip
    batch = prepare_batch(discover_inputs(str(inputs)), s, options, str(inputs), execute=lambda fn: fn(engine))
    report = batch.run()
    folder = report.folder
    table = json.loads((folder / jc.CALLS_JSON).read_text("utf-8"))
    assert sorted(Path(c["file"]).name for c in table["calls"]) == ["a.wav", "b.wav"]
    assert [a["label"] for a in table["by_label"]] == ["Agent", "Customer"]
    assert all(a["calls"] == 2 for a in table["by_label"])
    for c in table["calls"]:  # each call's row equals its run's summary
        result = json.loads((folder / c["run_folder"] / "result.json").read_text("utf-8"))
        assert [s["label"] for s in result["speakers"]] == ["Agent", "Customer"]
        assert c["escalations"] == result["summary"]["escalations"] and c["arc"] == result["summary"]["arc"]
        assert all("text" in t for t in result["turns"])
    assert (folder / jc.CALLS_CSV).is_file() and (folder / jc.CALLS_REPORT).is_file()
    turns = list(csv.DictReader((folder / "turns_summary.csv").open(encoding="utf-8", newline="")))
    assert {r["speaker_label"] for r in turns} == {"Agent", "Customer"}  # named before the turns table
