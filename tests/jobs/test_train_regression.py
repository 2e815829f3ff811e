"""Regression (dimensional) heads: the cross-validated fit on synthetic features, CCC by hand, the export's numbers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from emotion2vec_webui.engine.dimensions import apply_dimensions
from emotion2vec_webui.engine.heads import build_head
from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.jobs.train_regression import (
    _Fitted,
    ccc,
    cross_validate,
    fit_regression,
    read_targets,
    regression_scores,
)


def synthetic(n=120, dim=32, speakers=12, seed=0):
    """Features with one known column driving two targets (plus noise), and a speaker per clip."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dim))
    arousal = 2.0 * x[:, 3] + rng.normal(scale=0.4, size=n) + 5.0
    valence = -0.5 * x[:, 3] + 0.5 * x[:, 7] + rng.normal(scale=0.15, size=n)
    groups = np.array([f"s{i % speakers}" for i in range(n)])
    return x, np.stack([arousal, valence], axis=1), groups


def test_ccc_by_hand():
    x = np.array([1.0, 2.0, 3.0, 4.0])
    assert ccc(x, x) == pytest.approx(1.0)
    # y = x + 1: cov = var = 1.25, (mean difference)^2 = 1 → 2*1.25 / (1.25 + 1.25 + 1) = 2.5/3.5
    assert ccc(x, x + 1) == pytest.approx(2.5 / 3.5)
    assert ccc(x, 5 - x) == pytest.approx(-1.0)  # same mean, mirrored
    assert ccc(x, np.full(4, 2.5)) == 0.0  # a constant prediction agrees with nothing
    s = regression_scores(x[:, None], (x + 1)[:, None], ["a"])
    assert s["targets"]["a"] == {"ccc": pytest.approx(2.5 / 3.5, abs=1e-6), "pearson": pytest.approx(1.0), "mae": 1.0}


@pytest.mark.parametrize("kind", ["ridge", "mlp"])
def test_cv_learns_a_known_feature_and_not_shuffled_targets(kind):
    x, y, groups = synthetic()
    predicted, k = cross_validate(kind, x, y, groups, folds=5)
    scores = regression_scores(y, predicted, ["arousal", "valence"])
    print(kind, "CCC", {t: v["ccc"] for t, v in scores["targets"].items()})
    assert k == 5 and scores["targets"]["arousal"]["ccc"] >= 0.8 and scores["targets"]["valence"]["ccc"] >= 0.8
    shuffled = y[np.random.default_rng(1).permutation(len(y))]
    predicted, _ = cross_validate(kind, x, shuffled, groups, folds=5)
    noise = regression_scores(shuffled, predicted, ["arousal", "valence"])
    print(kind, "shuffled CCC", {t: v["ccc"] for t, v in noise["targets"].items()})
    assert all(v["ccc"] <= 0.2 for v in noise["targets"].values())


def test_folds_keep_speakers_apart():
    from emotion2vec_webui.jobs.train_regression import _splits

    _, _, groups = synthetic(n=40, speakers=5)
    splits, k = _splits(40, groups, 10, 0)  # cut to the 5 speakers
    assert k == 5
    for train, test in splits:
        assert not set(groups[train]) & set(groups[test])


def test_exported_arrays_give_the_fitted_predictions():
    x, y, groups = synthetic(n=60)
    fields, _ = fit_regression(x, y, ["arousal", "valence"], groups, "ridge", folds=3, say=lambda *_: None)
    assert (
        fields["kind"] == "regression" and fields["classifier"] == "ridge" and list(fields["candidates"]) == ["ridge"]
    )
    assert fields["cv_ccc"] == fields["cv"]["ccc"] and fields["holdout"]["n"] > 0
    for kind in ("ridge", "mlp"):
        model = _Fitted(kind, 0, x, y)
        spec = {"format": 2, "kind": "regression", "checkpoint_sha256": "abc", "embedding_dim": 32}
        head = build_head("dims", {"labels": ["arousal", "valence"]}, spec, model.arrays())
        np.testing.assert_allclose(head.logits(x), model.predict(x), rtol=1e-6, atol=1e-6)
        frames = x[:10]
        block = apply_dimensions(head, frames, smoothing_s=0.0)
        assert block["values"]["arousal"] == pytest.approx(model.predict(frames.mean(axis=0)[None])[0, 0], abs=1e-4)
        assert np.allclose(block["frames"]["values"], model.predict(frames), atol=1e-4)  # no smoothing: per frame
        smoothed = apply_dimensions(head, frames, smoothing_s=0.1)["frames"]["values"]  # 5 frames
        assert np.allclose(smoothed[4], model.predict(frames[2:7]).mean(axis=0), atol=1e-4)


def test_a_regression_head_needs_format_2_and_free_target_names():
    x, y, _ = synthetic(n=30)
    arrays = _Fitted("ridge", 0, x, y[:, :1]).arrays()
    ok = {"format": 2, "kind": "regression", "checkpoint_sha256": "abc"}
    assert build_head("one", {"labels": ["arousal"]}, ok, arrays).kind == "regression"  # one target is enough
    from emotion2vec_webui.engine.heads import HeadContentError

    with pytest.raises(HeadContentError, match="kind"):
        build_head("old", {"labels": ["arousal"]}, {**ok, "format": 1}, arrays)
    with pytest.raises(HeadContentError, match="frames.csv"):
        build_head("clash", {"labels": ["angry"]}, ok, arrays)
    with pytest.raises(HeadContentError, match="newer"):
        build_head("new", {"labels": ["arousal"]}, {**ok, "format": 3}, arrays)


def test_read_targets_csv(tmp_path):
    (tmp_path / "a.wav").write_bytes(b"")
    csv_path = tmp_path / "dims.csv"
    csv_path.write_text("path,speaker,arousal,valence,note\n" + "".join(
        f"a.wav,s{i % 2},{i}.5,{-i},x{i}\n" for i in range(5)), "utf-8")  # fmt: skip
    found = read_targets(csv_path)
    assert found.targets == ["arousal", "valence"] and found.values.shape == (5, 2)  # "note" is not numeric
    assert found.speakers[:2] == ["s0", "s1"] and found.items[0].file == str(tmp_path / "a.wav")
    assert read_targets(csv_path, ("valence",)).targets == ["valence"]
    with pytest.raises(E2VError, match="no column"):
        read_targets(csv_path, ("dominance",))
    csv_path.write_text("path,arousal\na.wav,1\na.wav,nan\na.wav,2\na.wav,3\n", "utf-8")
    with pytest.raises(E2VError, match="row 3"):
        read_targets(csv_path, ("arousal",))
    assert json.dumps(found.targets)  # plain names
