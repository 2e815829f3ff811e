"""Batch's turns_summary.csv: every turn of every conversation run, with the input in front."""

from __future__ import annotations

import csv

from emotion2vec_webui.jobs.turns_summary import TURNS_SUMMARY, write_turns_summary
from emotion2vec_webui.labels import EMOTIONS
from emotion2vec_webui.runs.transcripts import TURN_COLUMNS, conversation_files


def _turn(i, speaker, start):
    scores = {k: (0.6 if k == "sad" else 0.05) for k in EMOTIONS}
    return {"index": i, "speaker": speaker, "start_s": start, "end_s": start + 1.0, "emotion": "sad",
            "emotion_zh": "难过", "confidence": 0.6, "scores": scores, "text": "a, \"quoted\"\nline"}  # fmt: skip


def test_joins_the_runs_turns(tmp_path):
    rows = []
    for n, name in enumerate(("a.wav", "b.wav")):
        run = tmp_path / f"run{n}"
        run.mkdir()
        for fname, text in conversation_files({"turns": [_turn(0, "left", 0.5), _turn(1, "right", 2.0)]}).items():
            (run / fname).write_text(text, "utf-8")
        rows.append({"file": name, "status": "ok", "run_folder": run.name})
    rows.append({"file": "bad.wav", "status": "error", "run_folder": None})
    path = write_turns_summary(tmp_path, rows)
    assert path == tmp_path / TURNS_SUMMARY
    table = list(csv.DictReader(path.open(encoding="utf-8", newline="")))
    assert list(table[0]) == ["file", "run_folder", *TURN_COLUMNS]
    assert [(r["file"], r["speaker"]) for r in table] == [("a.wav", "left"), ("a.wav", "right"), ("b.wav", "left"),
                                                          ("b.wav", "right")]  # fmt: skip
    assert table[0]["text"] == 'a, "quoted" line'  # one line: newlines in a transcript never split a row


def test_no_conversations_no_file(tmp_path):
    assert write_turns_summary(tmp_path, [{"file": "x", "status": "ok", "run_folder": "missing"}]) is None
    assert not (tmp_path / TURNS_SUMMARY).exists()


def test_cells_never_start_a_formula(tmp_path):
    """Names, file names and transcripts that look like formulas are quoted; a turns.csv from before is quoted too."""
    run = tmp_path / "run0"
    run.mkdir()
    turn = {**_turn(0, "left", 0.5), "text": "-1+1 said the caller"}
    files = conversation_files({"turns": [turn], "speakers": [{"id": "left", "label": "@SUM(A1)"}]})
    (run / "turns.csv").write_text(files["turns.csv"], "utf-8")
    old = tmp_path / "run1"  # a run written before cells were quoted
    old.mkdir()
    (old / "turns.csv").write_text(files["turns.csv"].replace("'@SUM(A1)", "=HYPERLINK(\"x\")"), "utf-8")
    rows = [{"file": "=evil.wav", "status": "ok", "run_folder": "run0"}, {"file": "b.wav", "status": "ok", "run_folder": "run1"}]
    table = list(csv.DictReader(write_turns_summary(tmp_path, rows).open(encoding="utf-8", newline="")))
    assert [(r["file"], r["speaker_label"], r["text"]) for r in table] == [
        ("'=evil.wav", "'@SUM(A1)", "'-1+1 said the caller"),  # quoted once, not twice
        ("b.wav", "'=HYPERLINK(\"x\")", "'-1+1 said the caller"),
    ]
    assert table[0]["start_s"] == "0.5" and table[0]["confidence"] == "0.6"
