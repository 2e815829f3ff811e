"""Benchmark label sets (label_sets.py, jobs/label_set_scoring.py): mappings, and UA/WA/F1 against a hand computation."""

from __future__ import annotations

import json

import pytest

from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.jobs.label_set_scoring import report_lines, score_batch_label_set, score_label_set
from emotion2vec_webui.label_sets import LABEL_SETS, PUBLISHED, label_set
from emotion2vec_webui.labels import EMOTIONS


def row(label: str, status: str = "ok", **scores: float) -> dict:
    full = {e: 0.0 for e in EMOTIONS} | scores
    return {"label": label, "status": status, "emotion": max(full, key=full.get), **full}


def test_sets_follow_emobox_spellings():
    iemocap = LABEL_SETS["iemocap4"]
    assert iemocap.classes == ("angry", "happy", "neutral", "sad")
    assert [iemocap.reference(x) for x in ("neu", "HAP", "exc", "excited", "ang", "sad", "fru", "xxx", None)] == [
        "neutral", "happy", "happy", "happy", "angry", "sad", None, None, None]  # fmt: skip
    ravdess8, ravdess4 = LABEL_SETS["ravdess8"], LABEL_SETS["ravdess4"]
    assert ravdess8.classes == ("angry", "disgusted", "fearful", "happy", "neutral", "sad", "surprised", "calm")
    assert ravdess8.reference("calm") == "calm" and ravdess4.reference("calm") is None  # not folded into neutral
    assert ravdess8.reference("disgust") == "disgusted" and ravdess8.reference("surprised") == "surprised"
    cremad = LABEL_SETS["cremad6"]
    assert cremad.classes == ("angry", "disgusted", "fearful", "happy", "neutral", "sad")
    assert [cremad.reference(x) for x in ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD", "surprise")] == [
        "angry", "disgusted", "fearful", "happy", "neutral", "sad", None]  # fmt: skip
    assert LABEL_SETS["tess7"].reference("ps") == "surprised" and LABEL_SETS["meld7"].reference("joy") == "happy"
    assert LABEL_SETS["iemocap4"].reference("frustrated", {"frustrated": "angry"}) == "angry"  # --label-map first
    # Every 4-class primary set has its published row; the full sets have none.
    assert set(PUBLISHED) == {n for n in LABEL_SETS if n.endswith("4")}
    assert label_set(" IEMOCAP4 ") is iemocap and label_set(None) is None and label_set("") is None
    with pytest.raises(E2VError, match="iemocap4") as err:
        label_set("iemocap5")
    assert err.value.code == "bad_request" and " / " in err.value.message


def test_prediction_is_the_top_score_inside_the_set():
    ravdess8 = LABEL_SETS["ravdess8"]
    assert ravdess8.predicted(row("x", other=0.9, calm=1.0, neutral=0.05, sad=0.04)) == "neutral"  # calm never wins
    assert LABEL_SETS["iemocap4"].predicted(row("x", surprised=0.8, angry=0.1, happy=0.05)) == "angry"


ROWS = [
    row("ang", angry=0.6, happy=0.1),
    row("ang", happy=0.5, angry=0.3),
    row("hap", happy=0.7),
    row("exc", neutral=0.5, happy=0.2),
    row("neu", other=0.9, neutral=0.05, sad=0.03),  # the unrestricted answer is outside the set
    row("sad", sad=0.8),
    row("fru", angry=0.9),  # dropped: IEMOCAP-4 has no frustrated
    row("xxx", neutral=0.9),  # dropped
    row("sad", status="failed"),  # in the set, not classified
    {"label": None, "status": "ok", "emotion": "happy", **{e: 0.1 for e in EMOTIONS}},  # unlabelled: ignored
]


def test_scores_on_a_small_confusion_by_hand():
    scores, metrics = score_label_set(ROWS, LABEL_SETS["iemocap4"])
    # reference → predicted: angry→angry, angry→happy, happy→happy, happy→neutral, neutral→neutral, sad→sad
    assert metrics.labels == ["angry", "happy", "neutral", "sad"]
    assert metrics.confusion == [[1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 0], [0, 0, 0, 1]]
    assert metrics.accuracy == pytest.approx(4 / 6)  # WA
    assert metrics.ua == pytest.approx((1 / 2 + 1 / 2 + 1 + 1) / 4)  # mean recall = 0.75
    f1 = [2 * 1 * 0.5 / 1.5, 0.5, 2 * 0.5 * 1 / 1.5, 1.0]  # precision 1, .5, .5, 1; recall .5, .5, 1, 1
    assert metrics.macro_f1 == pytest.approx(sum(f1) / 4)
    assert metrics.weighted_f1 == pytest.approx((2 * f1[0] + 2 * f1[1] + f1[2] + f1[3]) / 6)
    assert (scores["scored"], scores["dropped"], scores["failed"], scores["top_outside_set"]) == (6, 2, 1, 1)
    assert scores["dropped_labels"] == {"fru": 1, "xxx": 1}
    assert scores["published"]["ua"] == 70.7 and scores["metrics"]["ua"] == pytest.approx(0.75)
    text = "\n".join(report_lines(scores))
    assert "UA 75.0%, WA 66.7%" in text and "2 dropped" in text and "fru 1" in text and "70.7" in text


def test_written_beside_the_other_metrics(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps({"accuracy": 0.5}), "utf-8")
    scores = score_batch_label_set(tmp_path, ROWS, "iemocap4", {})
    saved = json.loads((tmp_path / "metrics.json").read_text("utf-8"))
    assert saved["accuracy"] == 0.5 and saved["label_set"] == json.loads(json.dumps(scores))
    assert (tmp_path / "label_set_confusion_matrix.csv").read_text("utf-8").splitlines()[1] == "angry,1,1,0,0"
    assert (tmp_path / "label_set_confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"
    assert score_batch_label_set(tmp_path, ROWS, None, {}) is None
    nothing, metrics = score_label_set([row("fru")], LABEL_SETS["iemocap4"])
    assert metrics is None and nothing["metrics"] is None and nothing["dropped"] == 1
