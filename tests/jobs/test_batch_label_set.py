"""``batch --label-set iemocap4`` through the CLI (in-process, tiny model): metrics.json's ``label_set`` equals a hand
computation from summary.csv — references mapped the IEMOCAP way (exc → happy, fru dropped), each answer the top of
the four classes' scores."""

from __future__ import annotations

import csv
import json

import pytest

from emotion2vec_webui.cli.main import main
from tests.head_data import make_set

LABELS = ["neu", "hap", "exc", "ang", "sad", "fru"]  # IEMOCAP's spellings; fru is outside the 4-class set
MAPPED = {"neu": "neutral", "hap": "happy", "exc": "happy", "ang": "angry", "sad": "sad"}
FOUR = ["angry", "happy", "neutral", "sad"]


@pytest.fixture(scope="module")
def listing(tmp_path_factory):
    root = tmp_path_factory.mktemp("label_set")
    clips = sorted(make_set(root / "clips", per_class=4, seed=21).rglob("*.wav"))
    out = root / "iemocap_like.csv"
    with out.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label"])
        for i, clip in enumerate(clips):
            w.writerow([clip, LABELS[i % len(LABELS)]])
    return out


def test_batch_label_set_matches_a_hand_count_of_summary_csv(listing, tiny_model_dir, tmp_path, capsys):
    batch = tmp_path / "b"
    args = ["batch", str(listing), "--batch-dir", str(batch), "--output-dir", str(tmp_path / "out"),
            "--model", str(tiny_model_dir), "--device", "cpu", "--label-set", "iemocap4"]  # fmt: skip
    assert main(args) == 0  # fru is not refused: with a label set it is dropped and counted
    out = capsys.readouterr().out

    rows = list(csv.DictReader((batch / "summary.csv").open(encoding="utf-8")))
    assert len(rows) == 12 and all(r["status"] == "ok" for r in rows)
    pairs = [(MAPPED[r["label"]], max(FOUR, key=lambda c: float(r[c]))) for r in rows if r["label"] in MAPPED]
    labels = [c for c in FOUR if any(c in p for p in pairs)]
    confusion = [[sum((r, p) == (ref, pred) for r, p in pairs) for pred in labels] for ref in labels]
    recall = [row[i] / sum(row) for i, row in enumerate(confusion) if sum(row)]

    got = json.loads((batch / "metrics.json").read_text("utf-8"))["label_set"]
    assert got["name"] == "iemocap4" and got["classes"] == FOUR
    assert got["scored"] == len(pairs) == 10 and got["dropped"] == 2 and got["dropped_labels"] == {"fru": 2}
    m = got["metrics"]
    assert m["labels"] == labels and m["confusion"] == confusion
    assert m["accuracy"] == pytest.approx(sum(r == p for r, p in pairs) / len(pairs))
    assert m["ua"] == pytest.approx(sum(recall) / len(recall))
    outside = sum(r["emotion"] not in FOUR for r in rows if r["label"] in MAPPED)
    assert got["top_outside_set"] == outside
    assert got["published"]["ua"] == 70.7  # emotion2vec+ large, Table IV (label_sets.PUBLISHED)
    wa = f"WA {100 * m['accuracy']:.1f}%"
    report = (batch / "report.txt").read_text("utf-8")
    assert wa in out and wa in report and "2 dropped as outside the set (fru 2)" in report
    assert (batch / "label_set_confusion_matrix.csv").is_file() and (batch / "label_set_confusion_matrix.png").is_file()


def test_an_unknown_label_set_is_refused(listing, tiny_model_dir, tmp_path, capsys):
    args = ["batch", str(listing), "--batch-dir", str(tmp_path / "b"), "--model", str(tiny_model_dir),
            "--label-set", "iemocap5"]  # fmt: skip
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2 and "iemocap4" in capsys.readouterr().err
