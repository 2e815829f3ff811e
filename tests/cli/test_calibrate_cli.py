"""``calibrate``, then ``recognize``/``batch --calibration --min-confidence`` (in-process, the tiny model).

The stand-in is over-confident on purpose: a hand-written head whose last layer is scaled x40 on a set whose
labels have nothing to do with it, so its confidence is near 1 and its accuracy near chance.
"""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from emotion2vec_webui.audio.signals import noise, tone, write_audio
from emotion2vec_webui.cli.main import main
from emotion2vec_webui.engine.result import softmax
from emotion2vec_webui.labels import EMOTIONS
from tests.head_data import write_head
from tests.spec_check import check_result

CODES = {"03": "happy", "04": "sad", "05": "angry"}  # RAVDESS emotion codes
ACTORS = 6


@pytest.fixture(scope="module")
def ravdess(tmp_path_factory):
    """RAVDESS-named clips (so the speakers are known): 6 actors x 3 emotions x 2, tones and noise at random."""
    root = tmp_path_factory.mktemp("calibrate") / "data"
    root.mkdir()
    rng = np.random.default_rng(7)
    for actor in range(1, ACTORS + 1):
        for code in CODES:
            for rep in (1, 2):
                seconds = float(rng.uniform(0.5, 1.0))
                if rng.random() < 0.5:
                    x = tone(seconds, 16000, freq=float(rng.uniform(150, 700)))[:, 0]
                else:
                    x = noise(seconds, 16000, amp=float(rng.uniform(0.05, 0.3)), seed=int(rng.integers(1 << 30)))[:, 0]
                write_audio(root / f"03-01-{code}-01-01-{rep:02d}-{actor:02d}.wav", x, 16000, "wav")
    return root


@pytest.fixture(scope="module")
def heads(tiny_model_dir, tmp_path_factory):
    from emotion2vec_webui.runs.stores.head_store import checkpoint_sha256

    folder = tmp_path_factory.mktemp("calibrate_heads") / "heads"
    rng = np.random.default_rng(11)
    write_head(folder / "sharp", checkpoint_sha256(tiny_model_dir), labels=("angry", "happy", "sad"),
               W1=rng.normal(0, 0.3, (16, 3)) * 40)  # fmt: skip
    return folder


def last_json(out: str) -> dict:
    return json.loads([line for line in out.splitlines() if line.startswith("{")][-1])


def test_calibrate_a_sharpened_head_then_use_it(ravdess, heads, tiny_model_dir, tmp_path, capsys, monkeypatch):
    common = ["--model", str(tiny_model_dir), "--device", "cpu"]
    args = [
        "calibrate",
        str(ravdess),
        "--name",
        "sharp-cal",
        "--head",
        "sharp",
        "--heads-dir",
        str(heads),
        "--folds",
        "3",
    ]
    assert main([*args, "--json", *common]) == 0
    report = last_json(capsys.readouterr().out)
    before, after = report["before"], report["after"]
    with capsys.disabled():
        print(f"\nheld-out (3 speaker-grouped folds) ECE {before['ece']:.4f} -> {after['ece']:.4f}, "
              f"NLL {before['nll']:.3f} -> {after['nll']:.3f}, Brier {before['brier']:.3f} -> {after['brier']:.3f}")  # fmt: skip
    assert report["grouped_by_speaker"] and report["n"] == ACTORS * len(CODES) * 2
    assert after["ece"] < before["ece"] and after["nll"] < before["nll"]
    assert report["temperature"] > 2  # an over-confident head is cooled
    # the threshold table: each row is the held-out answers at or above it, as computed from its own figures
    rows = report["thresholds"]
    assert [r["min_confidence"] for r in rows] == [0.5, 0.6, 0.7, 0.8, 0.9]
    assert all(r["n"] == report["n"] and 0 <= r["coverage"] <= 1 for r in rows)
    assert [r["answered"] for r in rows] == sorted((r["answered"] for r in rows), reverse=True)
    folder = heads / ".calibrations" / "sharp-cal"
    assert (folder / "reliability.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((folder / "calibration.json").read_text())["target"] == "sharp"
    assert (folder / "command.txt").read_text().startswith("emotion2vec-webui calibrate")

    # The head's calibration needs the head: bad_request, exit 2.
    monkeypatch.setenv("E2V_HEADS_DIR", str(heads))
    out = ["--output-dir", str(tmp_path / "out")]
    clip = sorted(ravdess.glob("*.wav"))[0]
    assert main(["recognize", str(clip), "--calibration", "sharp-cal", *out, *common]) == 2
    assert "sharp" in capsys.readouterr().err

    # Head + calibration: the head's scores are softmax(logits / T + b) of the uncalibrated run's.
    assert main(["recognize", str(clip), "--head", "sharp", "--json", *out, *common]) == 0
    raw = last_json(capsys.readouterr().out)
    assert main(["recognize", str(clip), "--head", "sharp", "--calibration", "sharp-cal", "--min-confidence", "0.5",
                 "--json", *out, *common]) == 0  # fmt: skip
    calibrated = last_json(capsys.readouterr().out)
    check_result(calibrated, "utterance")
    assert calibrated["calibration"]["name"] == "sharp-cal" and calibrated["calibration"]["target"] == "sharp"
    assert raw["calibration"] is None and raw["min_confidence"] is None and raw["uncertain"] is False
    doc = json.loads((folder / "calibration.json").read_text())
    from emotion2vec_webui.runs.stores.head_store import load_head

    labels = raw["head"]["labels"]
    embedding = np.load(tmp_path / "out" / calibrated["run_id"] / "embedding.npy")  # the pooled features
    logits = load_head(heads, "sharp").logits(embedding)
    want = softmax(logits / doc["temperature"] + np.array(doc["bias"]))
    got = np.array([calibrated["head"]["scores"][k] for k in labels])
    np.testing.assert_allclose(got, want, atol=2e-6)
    assert calibrated["head"]["uncertain"] == (calibrated["head"]["confidence"] < 0.5)
    assert calibrated["scores"] == raw["scores"]  # the nine classes untouched by a head's calibration


def test_nine_class_calibration_and_abstention_in_a_batch(ravdess, tiny_model_dir, tmp_path, capsys, monkeypatch):
    heads = tmp_path / "heads"
    common = ["--model", str(tiny_model_dir), "--device", "cpu"]
    assert main(["calibrate", str(ravdess), "--name", "nine", "--heads-dir", str(heads), "--folds", "3", *common]) == 0
    text = capsys.readouterr().out
    assert "before" in text and "after" in text and "ECE" in text
    assert (heads / ".calibrations" / "nine" / "reliability.png").is_file()

    monkeypatch.setenv("E2V_HEADS_DIR", str(heads))
    out = ["--output-dir", str(tmp_path / "out")]
    clip = sorted(ravdess.glob("*.wav"))[1]
    assert main(["recognize", str(clip), "--json", *out, *common]) == 0
    raw = last_json(capsys.readouterr().out)
    assert main(["recognize", str(clip), "--calibration", "nine", "--json", *out, *common]) == 0
    calibrated = last_json(capsys.readouterr().out)
    doc = json.loads((heads / ".calibrations" / "nine" / "calibration.json").read_text())
    want = softmax(np.log([raw["scores"][e] for e in EMOTIONS]) / doc["temperature"] + np.array(doc["bias"]))
    np.testing.assert_allclose([calibrated["scores"][e] for e in EMOTIONS], want, atol=1e-5)
    assert calibrated["calibration"]["target"] == "nine"

    # A batch with a threshold between the answers' confidences: coverage and accuracy as computed by hand.
    batch_dir = tmp_path / "batch"
    assert main(["batch", str(ravdess), "--calibration", "nine", "--batch-dir", str(batch_dir), *out, *common]) == 0
    capsys.readouterr()
    rows = list(csv.DictReader((batch_dir / "summary.csv").open()))
    threshold = float(np.median([float(r["confidence"]) for r in rows]))
    batch2 = tmp_path / "batch2"
    assert main(["batch", str(ravdess), "--calibration", "nine", "--min-confidence", str(threshold),
                 "--batch-dir", str(batch2), *out, *common]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    rows = list(csv.DictReader((batch2 / "summary.csv").open()))
    reference = {"happy": "happy", "sad": "sad", "angry": "angry"}
    answered = [r for r in rows if float(r["confidence"]) >= threshold]
    assert [r["uncertain"] == "True" for r in rows] == [float(r["confidence"]) < threshold for r in rows]
    right = sum(reference[r["label"]] == r["emotion"] for r in answered)
    got = json.loads((batch2 / "metrics.json").read_text())["abstention"]["nine"]
    assert got["n"] == len(rows) and got["answered"] == len(answered)
    assert math.isclose(got["coverage"], len(answered) / len(rows), abs_tol=1e-6)
    assert got["accuracy_answered"] == (None if not answered else pytest.approx(right / len(answered), abs=1e-6))
    assert "coverage" in printed and "覆盖率" in printed
