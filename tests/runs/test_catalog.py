"""Batch runs are runs (issue 17): listed with their batch id, filtered by batch, reopened, traversal-safe."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta

import numpy as np
import pytest

from emotion2vec_webui.runs.catalog.folders import BATCH_MANIFEST, batch_run_id, list_runs, read_result, run_path
from emotion2vec_webui.runs.storage import write_run

T0 = datetime(2026, 12, 1, 10, 0, 0).astimezone()


def _run(root, minutes: int, name: str) -> str:
    result = {"emotion": "neutral", "confidence": 0.5, "timestamp": (T0 + timedelta(minutes=minutes)).isoformat(),
              "audio": {"source_name": name, "duration_s": 1.0}, "granularity": "utterance"}  # fmt: skip
    return write_run(root, result, np.zeros(1600, np.float32), None, "log\n", T0 + timedelta(minutes=minutes)).run_id


@pytest.fixture
def outputs(tmp_path):
    """Two single runs (minutes 0 and 5) and two batches (minutes 2–3 and 6–7) with two runs each."""
    root = tmp_path / "outputs"
    singles = [_run(root, 0, "a.wav"), _run(root, 5, "b.wav")]
    batches = {}
    for name, start in (("batch_20261201_100200", 2), ("batch_20261201_100600", 6)):
        folder = root / name
        folder.mkdir(parents=True)
        (folder / BATCH_MANIFEST).write_text("{}")
        batches[name] = [batch_run_id(name, _run(folder, start + i, f"{name[-4:]}_{i}.wav")) for i in range(2)]
    return root, singles, batches


def test_single_and_batch_runs_are_listed_newest_first(outputs):
    root, singles, batches = outputs
    runs = list_runs(root)
    b1, b2 = batches["batch_20261201_100200"], batches["batch_20261201_100600"]
    assert [r.run_id for r in runs] == [b2[1], b2[0], singles[1], b1[1], b1[0], singles[0]]
    assert [r.batch for r in runs][:2] == ["batch_20261201_100600"] * 2 and runs[2].batch is None
    assert [r.run_id for r in list_runs(root, batch="batch_20261201_100200")] == [b1[1], b1[0]]
    assert list_runs(root, batch="batch_nope") == [] and list_runs(root, batch="../outputs") == []
    assert len(list_runs(root, limit=3)) == 3
    for run_id in b1 + singles:
        assert read_result(root, run_id)["confidence"] == 0.5
        assert run_path(root, run_id, "processed_audio.wav").is_file()


def test_batch_run_ids_are_traversal_safe(outputs, tmp_path):
    root, _, batches = outputs
    good = batches["batch_20261201_100200"][0]
    batch, run = good.split("~")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / BATCH_MANIFEST).write_text("{}")
    os.symlink(outside, root / "batch_linked")  # a batch folder that leads out of the root
    (root / "batch_plain").mkdir()  # no manifest: not a batch
    os.symlink(root / batch / run, outside / run)
    for bad in [
        f"../{batch}~{run}", f"{batch}~../{run}", f"{batch}~{run}/..", f"..~{run}", f".~{run}", f"~{run}",
        f"{batch}~", f"batch_linked~{run}", f"batch_plain~{run}", f"{batch}~{run}~x", f"/{batch}~{run}",
        f"{batch}/{run}", f"{batch}~outputs_20990101_000000",
    ]:  # fmt: skip
        assert run_path(root, bad) is None, bad
        assert run_path(root, bad, "result.json") is None, bad
        assert read_result(root, bad) is None, bad
    assert run_path(root, good, "../result.json") is None and run_path(root, good, "batch.json") is None
    assert list_runs(root, batch="batch_linked") == [] and list_runs(root, batch="batch_plain") == []
    assert {r.batch for r in list_runs(root)} == {None, "batch_20261201_100200", "batch_20261201_100600"}


def test_rest_lists_and_serves_batch_runs(outputs, settings, engine):
    import dataclasses

    from fastapi.testclient import TestClient

    from emotion2vec_webui import app as server
    from emotion2vec_webui.runs.inference.service import Service

    root, singles, batches = outputs
    s = dataclasses.replace(settings, output_dir=root)
    service = Service(s, engine)
    with TestClient(server.create_app(s, service)) as client:
        page = client.get("/api/v1/runs", params={"limit": 200}).json()
        assert page["total"] == 6
        assert {r["run_id"]: r["batch"] for r in page["runs"]}[batches["batch_20261201_100600"][0]] == (
            "batch_20261201_100600"
        )
        only = client.get("/api/v1/runs", params={"batch": "batch_20261201_100200"}).json()
        assert only["total"] == 2 and {r["batch"] for r in only["runs"]} == {"batch_20261201_100200"}
        run_id = only["runs"][0]["run_id"]
        detail = client.get(only["runs"][0]["url"]).json()
        assert detail["run_id"] == run_id and detail["audio"]["source_name"].endswith(".wav")
        wav = client.get(detail["files"]["processed_audio.wav"])
        assert wav.status_code == 200 and wav.content[:4] == b"RIFF"
        assert client.get(f"/api/v1/runs/{run_id.replace('~', '~..%2F')}/result.json").status_code == 404
        assert client.get(f"/api/v1/runs/..~{run_id.split('~')[1]}").status_code == 404


def test_history_groups_by_batch_and_reopens_batch_runs(outputs):
    from emotion2vec_webui.ui import handlers as ui_handlers

    root, singles, batches = outputs
    rows = ui_handlers.history_rows(root)
    b1, b2 = batches["batch_20261201_100200"], batches["batch_20261201_100600"]
    assert [r[0] for r in rows] == [b2[1], b2[0], singles[1], b1[1], b1[0], singles[0]]
    assert [r[6] for r in rows] == [b2[0].split("~")[0]] * 2 + [""] + [b1[0].split("~")[0]] * 2 + [""]
    view = ui_handlers.view_run(root, b1[0])  # a reopened batch run shows like a single one
    single = ui_handlers.view_run(root, singles[0])
    assert view.error_code is None and view.run_id == b1[0] and view.log_text == "log\n"
    assert len(view.files) == len(single.files) and all(os.path.isfile(f) for f in view.files)
    assert json.loads(open([f for f in view.files if f.endswith("result.json")][0]).read())["confidence"] == 0.5
