"""A batch with a trained head scores the head (issue 31.1): accuracy, UA, F1 and the confusion matrix from the
head's answers against inputs labelled with its labels, checked against a hand count of summary.csv; ``--resume``
refuses another head, precision or granularity than the batch was started with."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from html import unescape
from pathlib import Path

import pytest

from emotion2vec_webui.cli.main import main
from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.jobs.batch import (
    BatchOptions,
    classify_group,
    finish_batch,
    format_report,
    open_batch,
    run_local,
)
from emotion2vec_webui.jobs.batch_scoring import HEAD_MATRIX, check_labels
from emotion2vec_webui.jobs.head_features import Backbone
from emotion2vec_webui.jobs.inputs import BatchItem, discover_inputs
from emotion2vec_webui.jobs.train_head import TrainOptions, train_head
from emotion2vec_webui.labels import EMOTIONS
from emotion2vec_webui.runs.recognize import RecognizeOptions
from emotion2vec_webui.runs.stores.head_store import engine_hash
from tests.head_data import LABELS, make_set, shuffled_csv, write_head

HEAD_ORDER = sorted(LABELS)  # a trained head keeps its labels sorted


@pytest.fixture(scope="module")
def root(engine, tiny_model_dir, tmp_path_factory) -> Path:
    """``data/<label>/*.wav`` (4 a label) to evaluate on; head ``sts`` trained on other clips with shuffled labels
    (so it makes mistakes: a matrix worth counting); head ``other`` with other labels."""
    from emotion2vec_webui.config import load_settings

    root = tmp_path_factory.mktemp("head_eval")
    make_set(root / "data", per_class=4, seed=11)
    train = make_set(root / "train", per_class=4, seed=12)
    settings = dataclasses.replace(load_settings(), model=str(tiny_model_dir), device="cpu", heads_dir=root / "heads")
    backbone = Backbone(engine.info.name, engine.info.path, engine_hash(engine))
    listing = shuffled_csv(train, root / "train.csv", seed=1)
    train_head(listing, "sts", backbone, lambda fn: fn(engine), settings, TrainOptions(folds=2, holdout=0.0))
    write_head(root / "heads" / "other", engine_hash(engine), labels=("calm", "tense", "upbeat"))
    return root


def hand_scores(pairs: list[tuple[str, str]], order: list[str]) -> dict:
    """Accuracy, UA, macro and weighted F1 and the confusion matrix of (reference, predicted) pairs, by counting."""
    labels = [lab for lab in order if any(lab in pair for pair in pairs)]
    matrix = [[sum(1 for r, p in pairs if (r, p) == (ref, pred)) for pred in labels] for ref in labels]
    f1, recall, support = [], [], []
    for i, _lab in enumerate(labels):
        tp, row, col = matrix[i][i], sum(matrix[i]), sum(r[i] for r in matrix)
        p = tp / col if col else 0.0
        r = tp / row if row else 0.0
        f1.append(2 * p * r / (p + r) if p + r else 0.0)
        support.append(row)
        if row:
            recall.append(r)
    return {
        "labels": labels,
        "confusion": matrix,
        "accuracy": sum(r == p for r, p in pairs) / len(pairs),
        "ua": sum(recall) / len(recall),
        "macro_f1": sum(f1) / len(f1),
        "weighted_f1": sum(f * s for f, s in zip(f1, support, strict=True)) / sum(support),
    }


def _cli(root: Path, batch: Path, *extra: str) -> int:
    args = ["batch", str(root / "data"), "--batch-dir", str(batch), "--output-dir", str(root / "outputs")]
    args += ["--model", os.environ["E2V_TEST_MODEL"], "--device", "cpu", "--batch-size", "4", *extra]
    return main(args)


@pytest.fixture
def cli_env(root, tiny_model_dir, monkeypatch):
    monkeypatch.setenv("E2V_HEADS_DIR", str(root / "heads"))
    monkeypatch.setenv("E2V_TEST_MODEL", str(tiny_model_dir))
    monkeypatch.delenv("E2V_PRECISION", raising=False)


def test_cli_batch_scores_the_head_then_resume_refuses_another(root, cli_env, tmp_path, capsys):
    batch = tmp_path / "b"
    assert _cli(root, batch, "--head", "sts") == 0
    out = capsys.readouterr().out

    rows = list(csv.DictReader((batch / "summary.csv").open(encoding="utf-8")))
    assert len(rows) == 12 and all(r["status"] == "ok" and r["head"] == "sts" for r in rows)
    assert {r["label"] for r in rows} == set(LABELS)  # a folder per head label labels its files
    assert all(Path(r["file"]).parent.name == r["label"] for r in rows)
    want = hand_scores([(r["label"], r["head_label"]) for r in rows], HEAD_ORDER)

    metrics = json.loads((batch / "metrics.json").read_text("utf-8"))
    head = metrics["head"]
    assert "accuracy" not in metrics  # speech / tone / noise are no nine-class labels: no nine-class scores
    assert head["name"] == "sts" and head["label_set"] == HEAD_ORDER and head["count"] == 12
    assert head["labels"] == want["labels"] and head["confusion"] == want["confusion"]
    for key in ("accuracy", "ua", "macro_f1", "weighted_f1"):
        assert head[key] == pytest.approx(want[key]), key
    assert head["labelled_inputs"] == 12 and head["labelled_failed"] == 0
    lines = (batch / f"{HEAD_MATRIX}.csv").read_text("utf-8").splitlines()
    assert lines == [",".join(["reference\\predicted", *want["labels"]])] + [
        ",".join([lab, *map(str, row)]) for lab, row in zip(want["labels"], want["confusion"], strict=True)
    ]
    assert (batch / f"{HEAD_MATRIX}.png").read_bytes()[:4] == b"\x89PNG"
    assert not (batch / "confusion_matrix.csv").exists()
    line = f"head 'sts': accuracy {want['accuracy']:.4f}, UA {want['ua']:.4f}"
    report = (batch / "report.txt").read_text("utf-8")
    assert line in out and line in report and "分类头 'sts'：准确率" in report
    manifest = json.loads((batch / "batch.json").read_text("utf-8"))
    assert (manifest["head"], manifest["granularity"], manifest["precision"]) == ("sts", "utterance", "auto")
    assert manifest["model"] == str(Path(os.environ["E2V_TEST_MODEL"]).resolve())

    runs = sorted(p.name for p in batch.iterdir() if p.is_dir())
    for extra, then, now in (
        (["--head", "other"], "--head sts", "--head other"),
        ([], "--head sts", "--head none / 无"),
        (["--head", "sts", "--precision", "fp32"], "--precision auto", "--precision fp32"),
        (["--head", "sts", "--granularity", "frame"], "--granularity utterance", "--granularity frame"),
        (["--head", "sts", "--min-confidence", "0.5"], "--min-confidence none / 无", "--min-confidence 0.5"),
    ):
        assert _cli(root, batch, "--resume", *extra) == 2, extra
        err = capsys.readouterr().err
        assert f"was started with {then}, not {now}" in err and "无法继续（--resume）" in err and "[bad_request]" in err
    assert sorted(p.name for p in batch.iterdir() if p.is_dir()) == runs  # nothing was run
    assert len(list(csv.DictReader((batch / "summary.csv").open(encoding="utf-8")))) == 12

    assert _cli(root, batch, "--resume", "--head", "sts") == 0  # the same settings resume (nothing left to do)
    assert "12 done before" in capsys.readouterr().out
    assert json.loads((batch / "metrics.json").read_text("utf-8"))["head"]["confusion"] == want["confusion"]


def test_nine_class_and_head_scores_side_by_side(root, engine, settings, tmp_path):
    """A list file whose labels are the head's, mapped to nine classes too: both evaluations, both by hand."""
    from emotion2vec_webui.runs.stores.head_store import load_head

    files = sorted((root / "data").rglob("*.wav"))
    listing = tmp_path / "list.csv"
    listing.write_text("path,label\n" + "".join(f"{f},{f.parent.name.upper()}\n" for f in files), "utf-8")
    label_map = {"speech": "neutral", "tone": "happy", "noise": "angry"}
    head_labels = tuple(load_head(root / "heads", "sts").labels)
    items = discover_inputs(listing)
    check_labels(items, label_map, head_labels)  # SPEECH, TONE, NOISE: the head's labels, case aside
    options = BatchOptions(RecognizeOptions(extract_embedding=False, head="sts"), batch_size=4, workers=2, label_map=label_map)
    s = dataclasses.replace(settings, heads_dir=root / "heads")
    summary, todo = open_batch(items, tmp_path / "batch", resume=False, manifest={})
    s = dataclasses.replace(s, output_dir=summary.folder)
    audio_s = run_local(todo, summary, s, options, lambda pairs: classify_group(engine, pairs, s, options))
    report = finish_batch(summary, items, options, 0, audio_s, 1.0, head_labels)

    rows = list(csv.DictReader((summary.folder / "summary.csv").open(encoding="utf-8")))
    nine = hand_scores([(label_map[r["label"].lower()], r["emotion"]) for r in rows], list(EMOTIONS))
    head = hand_scores([(r["label"].lower(), r["head_label"]) for r in rows], HEAD_ORDER)
    metrics = json.loads((summary.folder / "metrics.json").read_text("utf-8"))
    assert metrics["accuracy"] == pytest.approx(nine["accuracy"]) and metrics["ua"] == pytest.approx(nine["ua"])
    assert metrics["confusion"] == nine["confusion"] and metrics["labels"] == nine["labels"]
    assert metrics["head"]["accuracy"] == pytest.approx(head["accuracy"])
    assert metrics["head"]["confusion"] == head["confusion"] and metrics["head"]["labels"] == head["labels"]
    assert (summary.folder / "confusion_matrix.png").exists() and (summary.folder / f"{HEAD_MATRIX}.png").exists()
    text = format_report(report)
    assert f"nine classes: accuracy {nine['accuracy']:.4f}, UA {nine['ua']:.4f}" in text
    assert f"head 'sts': accuracy {head['accuracy']:.4f}, UA {head['ua']:.4f}" in text


def test_labels_neither_nine_class_nor_the_heads_are_refused_before_any_work():
    items = [BatchItem("/x/a.wav", "speech"), BatchItem("/x/b.wav", "banana")]
    with pytest.raises(E2VError) as err:
        check_labels(items, {}, ("noise", "speech", "tone"))
    assert err.value.code == "bad_request" and "labels banana are neither" in err.value.message
    assert "noise, speech, tone" in err.value.message and "既不是九类之一" in err.value.message
    with pytest.raises(E2VError) as err:  # without the head, speech is no class either
        check_labels(items[:1], {})
    assert "labels speech are not among our classes" in err.value.message and "不在九类之中" in err.value.message
    check_labels(items, {"banana": "tone"}, ("noise", "speech", "tone"))  # a declared mapping to a head label


def test_ui_batch_shows_the_heads_scores_and_matrix(root, engine, settings):
    from emotion2vec_webui.runs.inference.service import Service
    from emotion2vec_webui.ui.batch_tab import HEAD_CORRECT_HEADER, HEAD_HEADER, run_ui_batch

    s = dataclasses.replace(settings, heads_dir=root / "heads", input_dirs=(root / "data",))
    service = Service(s, engine)
    service.start()
    try:
        html, table, csv_path, _zip, matrix, head_matrix = run_ui_batch(
            service, None, str(root / "data"), "utterance", False, head="sts"
        )
    finally:
        service.stop()
    rows = list(csv.DictReader(Path(csv_path).open(encoding="utf-8")))
    want = hand_scores([(r["label"], r["head_label"]) for r in rows], HEAD_ORDER)
    shown = unescape(html)
    assert f"head 'sts': accuracy {want['accuracy']:.4f}" in shown and "分类头 'sts'" in shown
    assert matrix is None and head_matrix and Path(head_matrix).name == f"{HEAD_MATRIX}.png"
    assert list(table.columns[-2:]) == [HEAD_HEADER, HEAD_CORRECT_HEADER]
    assert list(table[HEAD_CORRECT_HEADER]) == ["✓" if r["label"] == r["head_label"] else "✗" for r in rows]
    assert all(cell.startswith(r["head_label"] + " (") for cell, r in zip(table[HEAD_HEADER], rows, strict=True))


def test_any_label_set_is_scored_in_its_order_and_ua_is_balanced_accuracy():
    sklearn = pytest.importorskip("sklearn.metrics")
    from emotion2vec_webui.jobs.evaluation import evaluate

    ref = ["tone", "tone", "tone", "speech", "speech", "noise", "noise", "noise", "noise"]
    pred = ["tone", "noise", "tone", "tone", "speech", "noise", "speech", "noise", "noise"]
    m = evaluate(ref, pred, classes=("tone", "speech", "noise"))
    assert m.labels == ["tone", "speech", "noise"] and m.confusion == [[2, 0, 1], [1, 1, 0], [0, 1, 3]]
    assert m.ua == pytest.approx(sklearn.balanced_accuracy_score(ref, pred)) == pytest.approx((2 / 3 + 1 / 2 + 3 / 4) / 3)
    assert m.macro_f1 == pytest.approx(sklearn.f1_score(ref, pred, average="macro"))
    assert m.weighted_f1 == pytest.approx(sklearn.f1_score(ref, pred, average="weighted"))
