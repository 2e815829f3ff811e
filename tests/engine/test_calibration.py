"""Calibration math (engine/calibration.py) and abstention figures (runs/confidence.py), on synthetic logits."""

from __future__ import annotations

import numpy as np
import pytest

from emotion2vec_webui.engine import calibration as cal
from emotion2vec_webui.engine.heads import Head
from emotion2vec_webui.engine.result import EmotionResult, softmax
from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.labels import EMOTIONS
from emotion2vec_webui.runs.confidence import is_uncertain, mark_uncertain, selective


def overconfident(n: int = 600, classes: int = 4, sharpen: float = 5.0, seed: int = 0):
    """Labels drawn from softmax(z) (so z is calibrated), and a model that answers z x ``sharpen``: over-confident."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.0, (n, classes))
    y = np.array([rng.choice(classes, p=p) for p in softmax(z)])
    groups = np.repeat(np.arange(12), int(np.ceil(n / 12)))[:n]  # 12 "speakers"
    return z * sharpen, y, groups


def test_temperature_fit_recovers_the_sharpening():
    logits, y, _ = overconfident(n=3000)
    t, bias = cal.fit(logits, y)
    assert 4.0 < t < 6.0, t  # the model is z x 5: the fitted T undoes it
    assert not bias.any()


def test_held_out_ece_drops_on_an_overconfident_model(capsys):
    logits, y, groups = overconfident()
    cv = cal.cross_validate(logits, y, groups, folds=4)
    before, after = cv["before"], cv["after"]
    print(f"held-out ECE {before['ece']:.4f} -> {after['ece']:.4f}, NLL {before['nll']:.4f} -> {after['nll']:.4f}, "
          f"Brier {before['brier']:.4f} -> {after['brier']:.4f}")  # fmt: skip
    assert cv["grouped_by_speaker"] and cv["folds"] == 4
    assert after["ece"] < before["ece"] / 2
    assert after["nll"] < before["nll"] and after["brier"] < before["brier"]
    assert all(t > 2 for t in cv["fold_temperatures"])


def test_bias_is_kept_only_when_it_pays():
    logits, y, groups = overconfident(n=800, seed=1)
    shifted = logits.copy()
    shifted[:, 0] += 6.0  # the model over-predicts class 0 on this data: a bias repairs it, T alone cannot
    assert cal.cross_validate(shifted, y, groups, folds=4)["with_bias"]
    t, bias = cal.fit(shifted, y, with_bias=True)
    assert bias[0] < bias[1:].min()


def test_ece_brier_nll_by_hand():
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    y = np.array([0, 1, 1, 0])
    # bins of 15: 0.9 → bin 13, 0.8 → bin 12, 0.7 → bin 10, 0.6 → bin 9; each one clip
    expected_ece = (abs(1 - 0.9) + abs(0 - 0.8) + abs(1 - 0.7) + abs(1 - 0.6)) / 4
    assert cal.ece(probs, y) == pytest.approx(expected_ece)
    assert cal.brier(probs, y) == pytest.approx((0.02 + 2 * 0.64 + 2 * 0.09 + 2 * 0.16) / 4)
    assert cal.nll(probs, y) == pytest.approx(-np.mean(np.log([0.9, 0.2, 0.7, 0.6])))


def test_a_head_with_the_calibration_folded_in_equals_calibrated_logits():
    rng = np.random.default_rng(3)
    layers = [(rng.normal(size=(6, 5)), rng.normal(size=5)), (rng.normal(size=(5, 3)), rng.normal(size=3))]
    head = Head("h", ["a", "b", "c"], {}, {"checkpoint_sha256": "x"}, rng.normal(size=6), np.ones(6), layers)
    c = cal.Calibration("c", "h", ("a", "b", "c"), 2.5, np.array([0.3, -0.1, 0.0]), "x", cal.head_fingerprint(head))
    x = rng.normal(size=(7, 6))
    folded = cal.calibrate_head(head, c)
    np.testing.assert_allclose(folded.probs(x), softmax(head.logits(x) / 2.5 + c.bias), atol=1e-12)
    retrained = Head("h", head.labels, {}, head.spec, head.mean + 1, head.scale, layers)
    with pytest.raises(E2VError) as err:
        cal.calibrate_head(retrained, c)
    assert err.value.code == "head_mismatch"


def test_nine_class_result_calibrated_from_its_probabilities():
    rng = np.random.default_rng(4)
    logits = rng.normal(0, 3, 9)
    frame_logits = rng.normal(0, 3, (5, 9)).astype(np.float32)
    result = EmotionResult.from_probs(softmax(logits), "frame", None, frame_logits, 5, 0.0)
    c = cal.Calibration("n", cal.NINE, tuple(EMOTIONS), 3.0, np.linspace(-0.2, 0.2, 9), "x")
    out = cal.calibrate_result(result, c)
    want = softmax(logits / 3.0 + c.bias)
    np.testing.assert_allclose([out.scores[e] for e in EMOTIONS], want, atol=1e-9)
    assert out.emotion == EMOTIONS[int(np.argmax(want))] and out.confidence == pytest.approx(want.max())
    np.testing.assert_allclose(out.frame_logits, frame_logits / 3.0 + c.bias, atol=1e-5)


def test_a_saved_calibration_is_checked_field_by_field():
    good = cal.to_document(cal.Calibration("n", cal.NINE, tuple(EMOTIONS), 2.0, np.zeros(9), "abc"))
    assert cal.build_calibration("n", good).temperature == 2.0
    for change in ({"temperature": float("nan")}, {"temperature": 0}, {"bias": [0] * 8}, {"labels": ["a", "b"]},
                   {"bias": [1e9] * 9}, {"checkpoint_sha256": 5}, {"target": "h"}, {"format": 99}):  # fmt: skip
        with pytest.raises(cal.CalibrationContentError) as err:
            cal.build_calibration("n", {**good, **change})
        assert " / " in str(err.value.error("n").message)


def test_abstention_coverage_and_accuracy_by_hand():
    reference = ["happy", "sad", "sad", "angry", "neutral"]
    predicted = ["happy", "sad", "happy", "angry", "sad"]
    confidences = [0.9, 0.4, 0.8, 0.65, 0.3]
    uncertain = [is_uncertain(c, 0.6) for c in confidences]
    assert uncertain == [False, True, False, False, True]
    s = selective(reference, predicted, uncertain)
    # answered: rows 0, 2, 3 (3 of 5); right among them: rows 0 and 3
    assert s == {"n": 5, "answered": 3, "coverage": 0.6, "accuracy_answered": round(2 / 3, 6), "accuracy_all": 0.6}
    assert selective(reference, predicted, [False] * 5)["coverage"] == 1.0


def test_mark_uncertain_marks_the_result_its_segments_and_head():
    payload = {
        "confidence": 0.5,
        "segments": [{"confidence": 0.7}, {"confidence": 0.2}],
        "turns": None,
        "head": {"confidence": 0.9, "segments": [{"confidence": 0.1}]},
    }
    mark_uncertain(payload, 0.6)
    assert payload["uncertain"] and payload["min_confidence"] == 0.6
    assert [s["uncertain"] for s in payload["segments"]] == [False, True]
    assert payload["head"]["uncertain"] is False and payload["head"]["segments"][0]["uncertain"] is True
    plain = {"confidence": 0.1, "segments": [{"confidence": 0.1}]}
    mark_uncertain(plain, None)
    assert plain["uncertain"] is False and "uncertain" not in plain["segments"][0]
