"""``train-head`` on a CSV of numeric targets (a regression head), then ``recognize --head`` with it, in-process."""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest

from emotion2vec_webui.cli.main import main
from emotion2vec_webui.labels import EMOTIONS
from emotion2vec_webui.runs.stores.head_store import list_heads
from tests.head_data import make_set, write_targets_csv
from tests.spec_check import check_result


def last_json(out: str) -> dict:
    return json.loads([line for line in out.splitlines() if line.startswith("{")][-1])


@pytest.fixture(scope="module")
def targets_csv(tmp_path_factory):
    return write_targets_csv(make_set(tmp_path_factory.mktemp("dims") / "data", per_class=4, seed=4), speakers=4)


def test_train_regression_head_then_recognize(targets_csv, tiny_model_dir, tmp_path, capsys):
    heads = tmp_path / "heads"
    common = ["--model", str(tiny_model_dir), "--device", "cpu"]
    argv = ["train-head", str(targets_csv), "--name", "dims", "--heads-dir", str(heads), "--classifier", "ridge"]
    assert main([*argv, "--holdout", "0", "--json", *common]) == 0
    report = last_json(capsys.readouterr().out)
    assert report["kind"] == "regression" and report["targets"] == ["arousal", "valence"] and report["n"] == 12
    assert report["grouped_by_speaker"] and report["folds"] == 4 and report["classifier"] == "ridge"
    assert set(report["cv"]["targets"]["arousal"]) == {"ccc", "pearson", "mae"} and -1 <= report["cv_ccc"] <= 1
    spec = json.loads((heads / "dims" / "spec.json").read_text())
    assert spec["kind"] == "regression" and spec["format"] == 2
    listed = {h["name"]: h for h in list_heads(heads)}
    assert listed["dims"]["kind"] == "regression" and listed["dims"]["cv_ccc"] == report["cv_ccc"]

    # the plain report names the scores
    assert main([*argv, "--force", *common]) == 0
    out = capsys.readouterr().out
    assert "mean CCC" in out and "held-out" in out and "arousal" in out

    clip = next(targets_csv.parent.rglob("tone_*.wav"))
    os.environ["E2V_HEADS_DIR"] = str(heads)
    try:
        run = ["recognize", str(clip), "--head", "dims", "--json", "--granularity", "frame",
               "--output-dir", str(tmp_path / "out"), *common]  # fmt: skip
        assert main(run) == 0
        line = last_json(capsys.readouterr().out)
    finally:
        del os.environ["E2V_HEADS_DIR"]
    check_result(line, "frame")  # validates against result.schema.json, the dimensions block included
    dims = line["dimensions"]
    assert line["head"] is None and dims["name"] == "dims" and dims["kind"] == "regression"
    assert list(dims["values"]) == ["arousal", "valence"] and all(np.isfinite(list(dims["values"].values())))
    frames = dims["frames"]
    assert len(frames["values"]) == len(frames["raw_values"]) == len(line["frames"]["scores"])
    assert all(len(row) == 2 for row in frames["values"])
    folder = tmp_path / "out" / line["run_id"]
    rows = list(csv.reader((folder / "frames.csv").open(encoding="utf-8")))
    assert rows[0] == ["time_s", *EMOTIONS, "arousal", "valence"]
    assert len(rows) == 1 + len(frames["raw_values"])
    assert [float(v) for v in rows[1][-2:]] == frames["raw_values"][0]
    saved = json.loads((folder / "result.json").read_text())
    assert saved["dimensions"]["values"] == dims["values"]

    # A batch with the head: summary.csv names it and gives each run's values.
    batch = tmp_path / "batch"
    os.environ["E2V_HEADS_DIR"] = str(heads)
    try:
        assert main(["batch", str(targets_csv.parent / "tone"), "--head", "dims", "--batch-dir", str(batch),
                     "--output-dir", str(tmp_path / "out"), *common]) == 0  # fmt: skip
    finally:
        del os.environ["E2V_HEADS_DIR"]
    capsys.readouterr()
    rows = list(csv.DictReader((batch / "summary.csv").open(encoding="utf-8")))
    assert len(rows) == 4 and all(r["head"] == "dims" and not r["head_label"] for r in rows)
    for r in rows:
        values = json.loads((batch / r["run_folder"] / "result.json").read_text())["dimensions"]["values"]
        assert r["dimensions"] == ";".join(f"{k}={v}" for k, v in values.items())
