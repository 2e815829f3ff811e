"""REST over the run catalog (issue 30): filters, cursor pages, batches, stats, deletes; a restart after a kill -9.

The routes run in-process (FastAPI's TestClient over ``create_app``, with a token) against
hand-built run folders (tests/catalog_data.py); a second app on a fresh folder checks the start-up
sync after a writer process was killed between a run's rename and its catalog row.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from emotion2vec_webui.runs.catalog import retention
from emotion2vec_webui.runs.catalog.run_index import CATALOG_FILE
from tests.catalog_data import conversation, make_batch, result, write_single

TOKEN = "catalog-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """10 single runs (3 named Meeting…), a labelled finished batch of 4, a conversation; newest first known.

    One set and one app for the module (building the UI takes seconds): the deleting tests come last.
    """
    root = tmp_path_factory.mktemp("runs_api") / "outputs"
    singles = [write_single(root, i, f"{'Meeting' if i % 4 == 0 else 'call'}_{i}.wav") for i in range(10)]
    batch = make_batch(root, "batch_20261201_100100", 60, ["a.wav", "b.wav", "c.wav", "d.wav"],
                       labels=["sad", "sad", "happy", "happy"], head={"name": "h", "label": "urgent"})  # fmt: skip
    call = write_single(root, 100, "call_center.wav", **conversation())
    return root, singles, batch, call


@pytest.fixture(scope="module")
def client(built, tiny_model_dir, engine):
    from fastapi.testclient import TestClient

    from emotion2vec_webui import app as server
    from emotion2vec_webui.config import load_settings
    from emotion2vec_webui.runs.inference.service import Service

    root = built[0]
    s = dataclasses.replace(load_settings(), model=str(tiny_model_dir), device="cpu", output_dir=root, api_token=TOKEN)
    with TestClient(server.create_app(s, Service(s, engine)), headers=AUTH) as c:
        c.app.state.catalog_upkeep.synced.wait(30)
        yield c


def _ids(client, **params) -> list[str]:
    page = client.get("/api/v1/runs", params={"limit": 200, **params})
    assert page.status_code == 200, page.text
    return [r["run_id"] for r in page.json()["runs"]]


def test_runs_keep_their_fields_and_page_by_cursor(client, built):
    root, singles, batch, call = built
    order = [call, *batch[::-1], *singles[::-1]]
    first = client.get("/api/v1/runs", params={"limit": 4}).json()
    assert set(first) == {"runs", "total", "limit", "offset", "next_cursor", "indexing"}
    assert first["total"] == 15 and first["limit"] == 4 and first["offset"] == 0 and not first["indexing"]
    row = first["runs"][1]  # a batch run: the fields the listing always had, then the new ones
    assert row["run_id"] == batch[-1] and row["batch"] == "batch_20261201_100100"
    assert {"timestamp", "emotion", "confidence", "granularity", "source_name", "duration_s", "url"} <= set(row)
    assert (row["kind"], row["label"], row["head_label"], row["request_id"]) == ("batch", "happy", "urgent", "req63")
    assert client.get(row["url"]).json()["run_id"] == row["run_id"]
    assert first["runs"][0]["conversation"] and first["runs"][0]["speakers"] == ["left", "right"]
    seen, cursor = [], None
    while True:
        page = client.get("/api/v1/runs", params={"limit": 4, **({"cursor": cursor} if cursor else {})}).json()
        seen += [r["run_id"] for r in page["runs"]]
        if not (cursor := page["next_cursor"]):
            break
    assert seen == order
    assert [r["run_id"] for r in client.get("/api/v1/runs", params={"limit": 3, "offset": 2}).json()["runs"]] == order[2:5]


def test_runs_filters(client, built):
    root, singles, batch, call = built
    assert set(_ids(client, q="meeting")) == {singles[0], singles[4], singles[8]}
    assert set(_ids(client, q="CALL_", emotion="happy")) == {s for i, s in enumerate(singles) if i % 2 and i % 4}
    assert set(_ids(client, emotion="sad", batch="batch_20261201_100100")) == {batch[0], batch[2]}
    assert _ids(client, min_confidence=0.9) == [call]
    assert set(_ids(client, head_label="URGENT")) == set(batch) and _ids(client, head_label="calm") == []
    assert _ids(client, speaker="right") == [call] and _ids(client, kind="conversation") == [call]
    assert set(_ids(client, kind="batch")) == set(batch) and len(_ids(client, kind="single")) == 11
    assert _ids(client, kind="live") == [] and _ids(client, kind="stream") == []
    stamp = json.loads((root / singles[3] / "result.json").read_text())["timestamp"]
    assert set(_ids(client, **{"from": stamp, "to": json.loads((root / singles[6] / "result.json").read_text())["timestamp"]})) == set(singles[3:6])
    assert len(_ids(client, **{"from": "2026-12-01", "to": "2026-12-01"})) == 15 and _ids(client, **{"from": "2026-12-02"}) == []
    for bad in ({"emotion": "joy"}, {"kind": "odd"}, {"from": "last week"}, {"min_confidence": 3}, {"cursor": "!!"}):
        r = client.get("/api/v1/runs", params=bad)
        assert r.status_code == 422 and r.json()["error"]["code"] == "bad_request", (bad, r.text)


def test_batches_batch_detail_and_stats(client, built):
    root, singles, batch, call = built
    page = client.get("/api/v1/batches").json()
    (b,) = page["batches"]
    assert page["total"] == 1 and b["batch_id"] == "batch_20261201_100100" and b["state"] == "done"
    assert (b["runs"], b["inputs"], b["ok"], b["labelled"]) == (4, 4, 4, 4) and b["accuracy"] == 0.5
    detail = client.get(b["url"]).json()
    assert detail["summary"]["runs"] == 4 and detail["summary"]["emotions"] == {"happy": 2, "sad": 2}
    assert detail["confusion_matrix"] == {"labels": ["happy", "sad"], "matrix": [[1, 1], [1, 1]]}
    assert detail["metrics"]["accuracy"] == 0.5
    assert set(r["run_id"] for r in client.get(detail["runs_url"]).json()["runs"]) == set(batch)
    assert client.get("/api/v1/batches/batch_nope").json()["error"]["code"] == "not_found"
    assert client.get("/api/v1/batches/..%2Foutputs").status_code == 404
    stats = client.get("/api/v1/stats").json()
    assert stats["runs"] == 15 and sum(stats["emotions"].values()) == 15
    assert stats["by_day"] == [{"day": "2026-12-01", "total": 15, "emotions": stats["emotions"]}]
    assert stats["by_batch"] == [{"batch": "batch_20261201_100100", "total": 4, "emotions": {"happy": 2, "sad": 2}}]
    assert {g["speaker"]: g["emotions"] for g in stats["by_speaker"]} == {"left": {"happy": 3}, "right": {"angry": 2}}
    assert client.get("/api/v1/stats", params={"batch": "batch_20261201_100100"}).json()["runs"] == 4


def test_report_html_is_made_from_result_json_or_served_from_the_folder(client, built):
    from emotion2vec_webui.runs.report import SECTIONS, write_report

    root, singles, batch, call = built
    r = client.get(f"/api/v1/runs/{call}/report.html")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "attachment" in r.headers["content-disposition"] and "default-src 'none'" in r.headers["content-security-policy"]
    assert all(f'<section id="{s}">' in r.text for s in SECTIONS) and "turn 3 words" in r.text
    assert not (root / call / "report.html").exists()  # made on request, not stored
    assert client.get(f"/api/v1/runs/{batch[0]}/report.html").status_code == 200  # a batch run's id
    for bad in ("outputs_20990101_000000", "..%2F..%2Fetc", "not-a-run"):
        r = client.get(f"/api/v1/runs/{bad}/report.html")
        assert r.status_code == 404 and " / " in r.json()["error"]["message"]
    result = json.loads((root / call / "result.json").read_text("utf-8"))
    write_report(root / call, {**result, "warnings": ["stored copy"]})
    r = client.get(f"/api/v1/runs/{call}/report.html")
    assert r.status_code == 200 and "stored copy" in r.text
    assert "report.html" in client.get(f"/api/v1/runs/{call}").json()["files"]
    (root / call / "report.html").unlink()
    jsonl = client.get(f"/api/v1/runs/{call}/turns.jsonl")
    assert jsonl.status_code == 200 and [json.loads(x)["index"] for x in jsonl.text.splitlines()] == list(range(5))


def test_batch_calls(client, built):
    root = built[0]
    name = "batch_20261130_090000"  # older than the module's batches; removed at the end
    make_batch(root, name, 300, ["c1.wav", "c2.wav"], **conversation())
    r = client.get(f"/api/v1/batches/{name}/calls")
    assert r.status_code == 200
    body = r.json()
    assert body["batch_id"] == name and [c["rank"] for c in body["calls"]] == [1, 2]
    assert sorted(c["file"] for c in body["calls"]) == ["c1.wav", "c2.wav"]
    assert [a["label"] for a in body["by_label"]] == ["left", "right"]
    call = body["calls"][0]
    assert call["run_id"].startswith(f"{name}~outputs_") and call["report_url"].endswith(f"/runs/{call['run_id']}/report.html")
    assert client.get(call["report_url"]).status_code == 200
    assert client.get("/api/v1/batches/batch_20261201_100100/calls").json()["calls"] == []  # not a conversation batch
    for bad in ("batch_20990101_000000", "..", "outputs_20261201_100000"):
        r = client.get(f"/api/v1/batches/{bad}/calls")
        assert r.status_code == 404 and " / " in r.json()["error"]["message"]
    assert client.delete(f"/api/v1/batches/{name}").status_code == 200


def test_a_run_being_read_or_a_batch_being_written_is_not_deleted(client, built):
    root, singles, batch, call = built
    with retention.in_use(root / singles[1]):  # e.g. a speaker rename or a detail read in flight
        r = client.delete(f"/api/v1/runs/{singles[1]}")
    assert r.status_code == 409 and r.json()["error"]["code"] == "run_busy" and (root / singles[1]).is_dir()
    running = make_batch(root, "batch_20261201_110000", 200, ["x.wav"], done=False)  # no report.txt, fresh activity
    r = client.delete("/api/v1/batches/batch_20261201_110000")
    assert r.status_code == 409 and r.json()["error"]["code"] == "run_busy" and (root / "batch_20261201_110000").is_dir()
    assert client.get("/api/v1/batches").json()["batches"][0]["state"] == "running"
    assert running[0] in _ids(client)
    assert client.delete(f"/api/v1/runs/{singles[1]}").status_code == 200  # once the reader is done


def test_deletes_need_the_token_and_leave_no_trace(client, built):
    root, singles, batch, call = built
    assert client.delete(f"/api/v1/runs/{singles[0]}", headers={"Authorization": ""}).status_code == 401
    assert (root / singles[0]).is_dir()
    r = client.delete(f"/api/v1/runs/{singles[0]}")
    assert r.status_code == 200 and r.json() == {"deleted": singles[0], "runs": 1}
    assert not (root / singles[0]).exists() and singles[0] not in _ids(client)
    assert client.delete(f"/api/v1/runs/{singles[0]}").json()["error"]["code"] == "not_found"
    assert client.get(f"/api/v1/runs/{singles[0]}").status_code == 404
    r = client.delete("/api/v1/runs/..%2F..%2Fetc")
    assert r.status_code == 404
    one = client.delete(f"/api/v1/runs/{batch[0]}")  # one run of a batch
    assert one.status_code == 200 and batch[0] not in _ids(client)
    r = client.delete("/api/v1/batches/batch_20261201_100100")
    assert r.status_code == 200 and r.json() == {"deleted": "batch_20261201_100100", "runs": 3}
    left = [b["batch_id"] for b in client.get("/api/v1/batches").json()["batches"]]
    assert not (root / "batch_20261201_100100").exists() and left == ["batch_20261201_110000"]  # the running one
    assert not set(batch) & set(_ids(client))
    assert not [p for p in root.iterdir() if p.name.startswith(".tmp-")]  # nothing half-removed left


def test_restart_after_kill_lists_the_killed_run_and_forgets_a_deleted_folder(tiny_model_dir, engine, tmp_path):
    """A writer killed with SIGKILL between its run's rename and the catalog row; a folder deleted by hand.

    The writer is a real process (the kill is under test); the restart is a new app on the same folder
    (``create_app`` in-process: its start-up sync is what a server's start runs).
    """
    from fastapi.testclient import TestClient

    from emotion2vec_webui import app as server
    from emotion2vec_webui.config import load_settings
    from emotion2vec_webui.runs.inference.service import Service

    root = tmp_path / "outputs"
    kept = [write_single(root, i, f"kept{i}.wav") for i in range(3)]
    code = (
        "import os, signal, sys, numpy as np\n"
        "from emotion2vec_webui.runs.storage import write_run\n"
        f"write_run(sys.argv[1], {result(50, 'killed.wav')!r}, np.zeros(160, np.float32), None, '')\n"
        "os.kill(os.getpid(), signal.SIGKILL)  # before the catalog row\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(root)], capture_output=True, timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr
    shutil.rmtree(root / kept[0])
    s = dataclasses.replace(load_settings(), model=str(tiny_model_dir), device="cpu", output_dir=root, api_token=None)
    with TestClient(server.create_app(s, Service(s, engine))) as c:
        deadline = time.monotonic() + 120
        while (page := c.get("/api/v1/runs").json())["indexing"] and time.monotonic() < deadline:
            time.sleep(0.2)
        names = [r["source_name"] for r in page["runs"]]
        assert names == ["killed.wav", "kept2.wav", "kept1.wav"]
    assert os.path.isfile(root / CATALOG_FILE)
