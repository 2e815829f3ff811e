"""Training a head (jobs/train_head.py) and applying it (engine/heads.py, runs/recognize.py) on the tiny model.

60 generated clips (speech / tones / noise: classes any features can tell apart):
the head must learn them (cross-validated and held-out accuracy >= 0.85); the same
clips with shuffled labels must stay near chance (<= 0.6); a second run must do no
inference; recognize with the head must add a schema-valid "head" block equal to
the head applied to the embedding; a head from another backbone must be refused.
"""

from __future__ import annotations

import dataclasses
import json
import warnings

import numpy as np
import pytest

from emotion2vec_webui.config import load_settings
from emotion2vec_webui.engine.heads import apply_head, check_backbone
from emotion2vec_webui.errors import E2VError, HeadMismatchError
from emotion2vec_webui.jobs.head_features import Backbone, speaker_of
from emotion2vec_webui.jobs.train_head import TrainOptions, export, labelled_items, train_head
from emotion2vec_webui.runs.recognize import Recognition, RecognizeOptions
from emotion2vec_webui.runs.stores.head_store import engine_hash, list_heads, load_head
from tests.head_data import LABELS, make_set, shuffled_csv
from tests.spec_check import check_result


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_set(tmp_path_factory.mktemp("headset") / "data", per_class=20)


@pytest.fixture(scope="module")
def head_settings(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("heads_root")
    return dataclasses.replace(
        load_settings(), model=str(tiny_model_dir), device="cpu", output_dir=root / "outputs", heads_dir=root / "heads"
    )


class Counting:
    """``execute`` that counts model calls."""

    def __init__(self, engine) -> None:
        self.engine, self.calls = engine, 0

    def __call__(self, fn):
        self.calls += 1
        return fn(self.engine)


@pytest.fixture(scope="module")
def trained(engine, data, head_settings):
    backbone = Backbone(engine.info.name, engine.info.path, engine_hash(engine))
    execute = Counting(engine)
    options = TrainOptions(baseline_map={"neutral": "speech", "happy": "tone", "angry": "noise"},
                           labels_zh={"speech": "语音", "tone": "音调", "noise": "噪声"}, command="test")  # fmt: skip
    outcome = train_head(data, "sts", backbone, execute, head_settings, options)
    return outcome, execute.calls, backbone


def test_head_learns_classes_that_differ_acoustically(trained):
    outcome, calls, _ = trained
    r = outcome.report
    print(f"\ncv accuracy {r['cv_accuracy']:.3f} (macro F1 {r['cv_f1_macro']:.3f}), held-out {r['holdout_accuracy']:.3f}"
          f", classifier {r['classifier']}, candidates {r['candidates']}")  # fmt: skip
    assert calls == 60 and r["n"] == 60 and r["labels"] == sorted(LABELS)
    assert r["cv_accuracy"] >= 0.85 and r["holdout_accuracy"] >= 0.85
    cv = r["cv"]
    assert set(cv) >= {"accuracy", "ua", "wa", "f1_macro", "f1_weighted", "per_class", "confusion"}
    assert cv["wa"] == cv["accuracy"] and 0 <= cv["ua"] <= 1
    assert set(cv["per_class"]) == set(LABELS) and all({"precision", "recall"} <= c.keys() for c in cv["per_class"].values())
    assert sum(map(sum, cv["confusion"]["matrix"])) == r["n"] - r["holdout"]["n"]
    assert r["baseline"]["n"] == 60 and r["baseline"]["mapping"]["angry"] == "noise"
    folder = outcome.folder
    for name in ("weights.npz", "labels.json", "spec.json", "report.json", "confusion_matrix.csv",
                 "confusion_matrix.png", "command.txt"):  # fmt: skip
        assert (folder / name).is_file(), name
    spec = json.loads((folder / "spec.json").read_text())
    assert spec["checkpoint_sha256"] == trained[2].checkpoint_sha256 and spec["pooling"] == "mean"
    assert json.loads((folder / "labels.json").read_text())["labels_zh"]["noise"] == "噪声"
    assert (folder / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"
    with np.load(folder / "weights.npz", allow_pickle=False) as z:  # plain arrays, no pickle
        assert {"mean", "scale", "W0", "b0"} <= set(z.files)


def test_shuffled_labels_stay_near_chance(engine, data, head_settings, trained, tmp_path):
    csv_path = shuffled_csv(data, tmp_path / "shuffled.csv")
    execute = Counting(engine)
    outcome = train_head(csv_path, "shuffled", trained[2], execute, head_settings, TrainOptions())
    r = outcome.report
    print(f"\nshuffled labels: cv accuracy {r['cv_accuracy']:.3f}, held-out {r['holdout_accuracy']:.3f}")
    assert execute.calls == 0  # same files, same model: every feature from the cache
    assert r["cv_accuracy"] <= 0.6 and r["holdout_accuracy"] <= 0.6
    assert "shuffled" in {h["name"] for h in list_heads(head_settings.heads_dir)}


def test_second_run_does_no_inference(engine, data, head_settings, trained):
    execute = Counting(engine)
    outcome = train_head(data, "sts_again", trained[2], execute, head_settings, TrainOptions())
    assert execute.calls == 0
    assert any("from the cache, no inference" in line for line in outcome.log_lines)
    assert outcome.report["cv_accuracy"] == trained[0].report["cv_accuracy"]  # same features, same seed
    with pytest.raises(E2VError) as err:  # no silent overwrite
        train_head(data, "sts_again", trained[2], execute, head_settings, TrainOptions())
    assert err.value.code == "bad_request"
    train_head(data, "sts_again", trained[2], execute, head_settings, TrainOptions(overwrite=True, holdout=0))
    assert execute.calls == 0


def test_exported_head_equals_the_fitted_pipeline(trained, head_settings):
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    from emotion2vec_webui.engine.heads import Head

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 8))
    for labels in (["a", "b"], ["a", "b", "c"]):
        y = np.array([labels[i % len(labels)] for i in range(40)])
        for clf in (LogisticRegression(max_iter=500), MLPClassifier(hidden_layer_sizes=(5,), max_iter=300, random_state=0)):
            pipe = Pipeline([("scale", StandardScaler()), ("clf", clf)])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                pipe.fit(x, y)
            a = export(pipe, labels)
            n = sum(k.startswith("W") for k in a)
            head = Head("t", labels, {}, {}, a["mean"], a["scale"], [(a[f"W{i}"], a[f"b{i}"]) for i in range(n)])
            np.testing.assert_allclose(head.probs(x), pipe.predict_proba(x), atol=1e-9)
    assert "sts" in {h["name"] for h in list_heads(head_settings.heads_dir)}  # the module's fixture trained it


def test_recognize_with_head_adds_its_block(engine, data, head_settings, trained):
    wav = next((data / "tone").glob("*.wav"))
    head = load_head(head_settings.heads_dir, "sts")
    for granularity in ("utterance", "frame"):
        options = RecognizeOptions(granularity, extract_embedding=False, head="sts")
        outcome = Recognition(head_settings, options).run(str(wav), lambda fn: fn(engine))
        r = outcome.result
        check_result(r, granularity)
        h = r["head"]
        assert h["name"] == "sts" and h["labels"] == sorted(LABELS) and h["labels_zh"][0] == "噪声"
        assert abs(sum(h["scores"].values()) - 1) < 1e-4 and h["label"] == max(h["scores"], key=h["scores"].get)
        assert r["embedding"] is None and not (outcome.run.path / "embedding.npy").exists()  # not asked for
        saved = json.loads((outcome.run.path / "result.json").read_text())
        assert saved["head"]["scores"] == h["scores"]
        decoded = Recognition(head_settings).decode(str(wav))
        features = engine.recognize(decoded.waveform, granularity).embedding
        expected = apply_head(head, features, head_settings.frame_smoothing_s, r["audio"]["duration_s"])
        assert expected["scores"] == pytest.approx(h["scores"], abs=1e-5)
        if granularity == "frame":
            assert len(h["frames"]["scores"]) == len(r["frames"]["scores"]) and h["segments"]
            assert h["segments"][-1]["end_s"] == pytest.approx(r["audio"]["duration_s"], abs=1e-3)
        else:
            assert h["frames"] is None


def test_head_from_another_backbone_is_refused(engine, head_settings, trained, tmp_path_factory, data):
    from emotion2vec_webui.engine.engine import EmotionEngine
    from emotion2vec_webui.model.standins import make_test_model

    other_dir = make_test_model(tmp_path_factory.mktemp("other") / "tiny_seed1", "tiny", seed=1)
    other = EmotionEngine.load(str(other_dir), device="cpu", precision="fp32", warmup=False)
    assert engine_hash(other) != engine_hash(engine)
    wav = next((data / "speech").glob("*.wav"))
    with pytest.raises(HeadMismatchError) as err:
        Recognition(head_settings, RecognizeOptions(head="sts")).run(str(wav), lambda fn: fn(other))
    message = err.value.message
    assert err.value.code == "head_mismatch" and "sts" in message and "retrain" in message and "分类头" in message
    check_backbone(load_head(head_settings.heads_dir, "sts"), engine_hash(engine), "same")  # the right one passes
    with pytest.raises(E2VError) as missing:
        Recognition(head_settings, RecognizeOptions(head="nope")).run(str(wav), lambda fn: fn(engine))
    assert missing.value.code == "not_found" and "sts" in missing.value.message


def test_labelled_sets_and_speakers(tmp_path, data):
    assert speaker_of("03-01-05-01-02-01-12.wav") == "12" and speaker_of("1001_DFA_ANG_XX.wav") == "1001"
    assert speaker_of("clip.wav") is None
    items = labelled_items(data)
    assert {it.label for it in items} == set(LABELS) and len(items) == 60
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "a.wav").write_bytes((data / "tone" / "tone_000.wav").read_bytes())
    with pytest.raises(E2VError):
        labelled_items(tmp_path / "flat")


def test_labels_and_their_names_lose_control_and_bidi_characters(tmp_path):
    """Issue 26: labels (folder names, CSV labels) and Chinese names / baseline maps from every face."""
    for label in ("calm\u202e", "lo\x1bud"):
        (tmp_path / label).mkdir()
        (tmp_path / label / "a.wav").write_bytes(b"")
    assert sorted({it.label for it in labelled_items(tmp_path)}) == ["calm", "loud"]
    options = TrainOptions(labels_zh={"calm\u2066": "平静\x00\u202e"}, baseline_map={"happy": "lo\x07ud"})
    assert options.labels_zh == {"calm": "平静"} and options.baseline_map == {"happy": "loud"}
