"""Metrics, label mapping, input discovery and the summary files: no model needed."""

from __future__ import annotations

import csv
import json

import pytest

from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.jobs.evaluation import confusion_csv, evaluate, map_label, parse_label_map, write_evaluation
from emotion2vec_webui.jobs.inputs import BatchItem, discover_inputs, label_from_filename
from emotion2vec_webui.jobs.summary import SUMMARY_FIELDS, BatchSummary, error_row, item_request_id, ok_row
from emotion2vec_webui.labels import EMOTIONS


def test_metrics_match_hand_computed_values():
    # 8 items; classes angry (3), happy (3), sad (2).
    ref = ["angry", "angry", "angry", "happy", "happy", "happy", "sad", "sad"]
    pred = ["angry", "angry", "happy", "happy", "happy", "sad", "sad", "neutral"]
    m = evaluate(ref, pred)
    # right: angry×2, happy×2, sad×1 → 5/8
    assert m.accuracy == pytest.approx(5 / 8)
    # angry: P=2/2, R=2/3, F1=0.8;  happy: P=2/3, R=2/3, F1=2/3;  sad: P=1/2, R=1/2, F1=0.5;  neutral: 0 (support 0)
    per = {c.label: c for c in m.per_class}
    assert per["angry"].f1 == pytest.approx(0.8)
    assert per["happy"].f1 == pytest.approx(2 / 3)
    assert per["sad"].f1 == pytest.approx(0.5)
    assert per["neutral"].f1 == 0 and per["neutral"].support == 0
    assert m.weighted_f1 == pytest.approx((3 * 0.8 + 3 * 2 / 3 + 2 * 0.5) / 8)
    assert m.macro_f1 == pytest.approx((0.8 + 2 / 3 + 0.5 + 0) / 4)
    assert m.labels == ["angry", "happy", "neutral", "sad"]  # EMOTIONS order, only classes that occur
    assert m.confusion == [[2, 1, 0, 0], [0, 2, 0, 1], [0, 0, 0, 0], [0, 0, 1, 1]]
    assert confusion_csv(m).splitlines()[1] == "angry,2,1,0,0"


def test_metrics_agree_with_scikit_learn():
    sklearn = pytest.importorskip("sklearn.metrics")
    ref = ["sad", "happy", "angry", "neutral", "happy", "sad", "fearful", "angry", "happy"]
    pred = ["sad", "angry", "angry", "neutral", "happy", "happy", "sad", "angry", "surprised"]
    m = evaluate(ref, pred)
    assert m.accuracy == pytest.approx(sklearn.accuracy_score(ref, pred))
    assert m.weighted_f1 == pytest.approx(sklearn.f1_score(ref, pred, average="weighted", zero_division=0))
    assert m.confusion == sklearn.confusion_matrix(ref, pred, labels=m.labels).tolist()


def test_label_mapping():
    assert map_label("calm") == "neutral"
    assert map_label("ANG") == "angry" and map_label(" Disgust ") == "disgusted"
    assert map_label("surprise") == "surprised" and map_label("happy") == "happy"
    assert map_label("boredom") is None
    extra = parse_label_map("boredom=other, calm = sad")
    assert extra == {"boredom": "other", "calm": "sad"}
    assert map_label("boredom", extra) == "other" and map_label("calm", extra) == "sad"
    for bad in ("calm", "calm=relaxed", "=neutral"):
        with pytest.raises(E2VError) as err:
            parse_label_map(bad)
        assert err.value.code == "bad_request"


def test_dataset_file_names_give_labels():
    assert label_from_filename("x/03-01-02-01-01-01-12.wav") == "calm"
    assert label_from_filename("03-01-07-02-02-02-01.wav") == "disgust"
    assert label_from_filename("1001_DFA_ANG_XX.wav") == "angry"
    assert label_from_filename("1091_WSI_NEU_XX.flac") == "neutral"
    assert label_from_filename("interview_001.wav") is None
    assert label_from_filename("03-01-09-01-01-01-12.wav") is None  # no such RAVDESS emotion


def test_discover_folder_glob_and_lists(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for rel in ("a/1.wav", "a/b/2.flac", "a/b/03-01-05-01-01-01-01.wav", "a/notes.txt", "a/.hidden/x.wav"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    folder = discover_inputs(tmp_path / "a")
    assert [it.file.split("/a/")[1] for it in folder] == ["1.wav", "b/03-01-05-01-01-01-01.wav", "b/2.flac"]
    assert [it.label for it in folder] == [None, "angry", None]
    assert [it.file for it in discover_inputs(f"{tmp_path}/a/**/*.wav")] == [folder[0].file, folder[1].file]

    (tmp_path / "list.txt").write_text("# comment\na/1.wav\n\n" + str(tmp_path / "a/b/2.flac") + "\na/1.wav\n")
    listed = discover_inputs(tmp_path / "list.txt")
    assert [it.file for it in listed] == [folder[0].file, folder[2].file]  # relative to the list, deduplicated

    (tmp_path / "list.csv").write_text("path,label\na/1.wav,calm\na/b/2.flac,\n")
    labelled = discover_inputs(tmp_path / "list.csv")
    assert [(it.file, it.label) for it in labelled] == [(folder[0].file, "calm"), (folder[2].file, None)]

    (tmp_path / "bad.csv").write_text("file,label\na/1.wav,calm\n")
    for spec in (tmp_path / "bad.csv", tmp_path / "missing", f"{tmp_path}/*.mp3"):
        with pytest.raises(E2VError) as err:
            discover_inputs(spec)
        assert err.value.code == "bad_request"


def test_write_evaluation_files(tmp_path):
    m = evaluate(["angry", "sad", "sad"], ["angry", "sad", "happy"])
    write_evaluation(tmp_path, m, {"labelled_inputs": 3})
    assert json.loads((tmp_path / "metrics.json").read_text())["labelled_inputs"] == 3
    assert (tmp_path / "confusion_matrix.csv").read_text().startswith("reference\\predicted,angry,happy,sad")
    assert (tmp_path / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*.tmp"))


def _result(emotion: str) -> dict:
    scores = dict.fromkeys(EMOTIONS, 0.0) | {emotion: 1.0}
    return {"emotion": emotion, "confidence": 1.0, "scores": scores, "audio": {"duration_s": 1.5}}


def test_summary_append_resume_finalize(tmp_path):
    items = [BatchItem(f"/data/{i}.wav", "happy" if i % 2 else None) for i in range(4)]
    s = BatchSummary(tmp_path)
    (tmp_path / "outputs_20260101_000000").mkdir()
    (tmp_path / "outputs_20260101_000000" / "result.json").write_text("{}")
    s.append(ok_row(items[0], _result("sad"), "outputs_20260101_000000"))
    s.append(ok_row(items[1], _result("sad"), "outputs_20260101_000001"))  # its run folder is missing
    s.append(error_row(items[2], "audio_undecodable", "bad"))
    s.close()
    with s.jsonl.open("a") as fh:
        fh.write('{"file": "/data/torn')  # a kill mid-write
    assert set(BatchSummary(tmp_path).done()) == {items[0].file}

    # A run that landed without its row (killed in between) is adopted, not redone.
    orphan = tmp_path / "outputs_20260101_000002"
    orphan.mkdir()
    rid = item_request_id(tmp_path.name, items[3].file)
    (orphan / "result.json").write_text(json.dumps(_result("happy") | {"request_id": rid}))
    s2 = BatchSummary(tmp_path)
    adopted = s2.adopt_orphans(items[1:])
    assert [r["file"] for r in adopted] == [items[3].file]
    s2.append(ok_row(items[2], _result("angry"), "outputs_20260101_000000"))  # the retry of the failed one
    rows = s2.finalize(items)
    assert [r["file"] for r in rows] == [items[0].file, items[1].file, items[2].file, items[3].file]
    assert rows[2]["status"] == "ok"  # the latest row wins
    lines = s2.jsonl.read_text().splitlines()
    assert len(lines) == 4 and all(json.loads(line) for line in lines)
    with s2.csv.open() as fh:
        table = list(csv.DictReader(fh))
    assert list(table[0]) == list(SUMMARY_FIELDS) and len(table) == 4
    assert table[3]["emotion"] == "happy" and table[3]["run_folder"] == orphan.name


def test_confusion_csv_cells_never_start_a_formula():
    from emotion2vec_webui.jobs.evaluation import Metrics

    m = Metrics(count=2, accuracy=0.5, weighted_f1=0.5, macro_f1=0.5, labels=["+calm", "-x"], confusion=[[1, 0], [1, 0]],
                per_class=[])  # fmt: skip
    assert confusion_csv(m).splitlines() == ["reference\\predicted,'+calm,'-x", "'+calm,1,0", "'-x,1,0"]
