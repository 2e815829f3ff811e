"""``train-head`` and ``recognize --head`` through the CLI's entry point (in-process: the model loads fast)."""

from __future__ import annotations

import json

import pytest

from emotion2vec_webui.cli.main import main
from tests.head_data import LABELS, make_set
from tests.spec_check import check_result


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_set(tmp_path_factory.mktemp("cli_heads") / "data", per_class=4, seed=3)


def last_json(out: str) -> dict:
    return json.loads([line for line in out.splitlines() if line.startswith("{")][-1])


def test_train_head_then_recognize_with_it(data, tiny_model_dir, tmp_path, capsys, tmp_path_factory):
    heads = tmp_path / "heads"
    common = ["--model", str(tiny_model_dir), "--device", "cpu"]
    assert main(["train-head", str(data), "--name", "cli", "--heads-dir", str(heads), "--json", *common]) == 0
    first = last_json(capsys.readouterr().out)
    assert first["n"] == 12 and first["labels"] == sorted(LABELS)
    assert {"cv_accuracy", "cv_f1_macro", "holdout", "cv", "folder"} <= first.keys()
    assert first["features"] == {"cached": 0, "extracted": 12, "seconds": first["features"]["seconds"]}
    command = (heads / "cli" / "command.txt").read_text()
    assert command.startswith(f"emotion2vec-webui train-head {data} --name cli --heads-dir {heads}") and "--json" in command

    # The second run: every feature from the cache; the plain report.
    assert main(["train-head", str(data), "--name", "cli", "--heads-dir", str(heads), "--force", *common]) == 0
    out = capsys.readouterr().out
    assert "cross-validated: accuracy (WA)" in out and "head folder:" in out
    report = json.loads((heads / "cli" / "report.json").read_text())
    assert report["features"]["extracted"] == 0 and report["features"]["cached"] == 12
    assert any("no inference" in line for line in report["log"])

    clip = next((data / "noise").glob("*.wav"))
    env_heads = ["--output-dir", str(tmp_path / "out")]
    import os

    os.environ["E2V_HEADS_DIR"] = str(heads)
    try:
        assert main(["recognize", str(clip), "--head", "cli", "--json", "--granularity", "frame", *env_heads, *common]) == 0
        line = last_json(capsys.readouterr().out)
        check_result(line, "frame")
        assert line["head"]["name"] == "cli" and set(line["head"]["scores"]) == set(LABELS)
        saved = json.loads((tmp_path / "out" / line["run_id"] / "result.json").read_text())
        assert saved["scores"] == line["scores"] and saved["head"]["label"] == line["head"]["label"]
        assert len(saved["head"]["frames"]["scores"]) == len(saved["frames"]["scores"])

        # A batch with the head: summary.csv names the head's answer, the same as each run's result.json.
        batch_dir = tmp_path / "batch_head"
        assert main(["batch", str(data / "noise"), "--head", "cli", "--batch-dir", str(batch_dir), *env_heads, *common]) == 0
        capsys.readouterr()
        import csv

        rows = list(csv.DictReader((batch_dir / "summary.csv").open(encoding="utf-8")))
        assert rows and all(r["status"] == "ok" and r["head"] == "cli" for r in rows)
        for r in rows:
            run = json.loads((batch_dir / r["run_folder"] / "result.json").read_text())
            assert r["head_label"] == run["head"]["label"] in LABELS
            assert float(r["head_confidence"]) == pytest.approx(run["head"]["confidence"])

        from emotion2vec_webui.model.standins import make_test_model

        other = make_test_model(tmp_path_factory.mktemp("cli_other") / "seed7", "tiny", seed=7)
        code = main(["recognize", str(clip), "--head", "cli", *env_heads, "--model", str(other), "--device", "cpu"])
        err = capsys.readouterr().err
        assert code == 2 and "head_mismatch" in err and "retrain" in err
    finally:
        del os.environ["E2V_HEADS_DIR"]
