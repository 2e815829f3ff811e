"""REST for trained heads (serving/heads.py) and "head" on POST /api/v1/recognize, against the UI's path.

In-process app (create_app with a service on the session's tiny engine): train through
POST /api/v1/heads as a job, list, recognize with the head (multipart and JSON), compare
with the Recognize tab's handler on the same clip, refuse a head of another backbone (409),
delete.
"""

from __future__ import annotations

import json
import shutil
import time

import pytest

from tests.head_data import LABELS, app_client, make_set
from tests.spec_check import check_result


@pytest.fixture(scope="module")
def setup(engine, tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("heads_api")
    data = make_set(root / "inputs" / "set", per_class=6, seed=1)
    with app_client(engine, tiny_model_dir, root, input_dirs=(root / "inputs",)) as (client, service, settings):
        yield client, service, settings, data


def wait_job(client, job_id: str) -> dict:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        job = client.get(f"/api/v1/heads/jobs/{job_id}").json()
        if job["state"] not in ("queued", "running"):
            return job
        time.sleep(0.1)
    raise AssertionError("training job did not finish")


def test_train_list_recognize_delete(setup):
    from emotion2vec_webui.ui import handlers as ui_handlers

    client, service, settings, data = setup
    r = client.post("/api/v1/heads", json={"name": "rest_head", "data_path": str(data), "holdout": 0})
    assert r.status_code == 202, r.text
    job = wait_job(client, r.json()["id"])
    assert job["state"] == "done", job
    assert job["report"]["n"] == 18 and job["report"]["labels"] == sorted(LABELS) and job["progress"] == 1.0
    listed = client.get("/api/v1/heads").json()
    assert [h["name"] for h in listed["heads"]] == ["rest_head"] and listed["heads"][0]["compatible"] is True

    clip = next((data / "speech").glob("*.wav"))
    multipart = client.post(
        "/api/v1/recognize", files={"file": (clip.name, clip.read_bytes(), "audio/wav")}, data={"head": "rest_head"}
    )
    assert multipart.status_code == 200, multipart.text
    result = multipart.json()
    check_result(result)
    rel = str(clip.relative_to(settings.input_dirs[0]))
    as_json = client.post("/api/v1/recognize", json={"audio_path": rel, "head": "rest_head"}).json()
    view = ui_handlers.recognize(service, str(clip), "utterance", True, head="rest_head")
    assert result["head"]["scores"] == as_json["head"]["scores"] == view.result["head"]["scores"]
    assert result["scores"] == view.result["scores"]
    assert 'data-head="rest_head"' in view.card_html and view.card_html.count("e2v-hrow") == 3

    # A head whose backbone hash differs: 409 head_mismatch, bilingual.
    other = settings.heads_dir / "other_model"
    shutil.copytree(settings.heads_dir / "rest_head", other)
    spec = json.loads((other / "spec.json").read_text())
    (other / "spec.json").write_text(json.dumps({**spec, "checkpoint_sha256": "0" * 64, "model": "elsewhere"}))
    refused = client.post("/api/v1/recognize", json={"audio_path": rel, "head": "other_model"})
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "head_mismatch"
    assert "elsewhere" in refused.json()["error"]["message"] and "分类头" in refused.json()["error"]["message"]
    assert client.get("/api/v1/heads").json()["heads"][0]["compatible"] is False  # other_model sorts first
    missing = client.post("/api/v1/recognize", json={"audio_path": rel, "head": "nope"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    bad = client.post("/api/v1/recognize", json={"audio_path": rel, "head": "../etc"})
    assert bad.status_code == 422

    assert client.delete("/api/v1/heads/other_model").status_code == 200
    assert client.delete("/api/v1/heads/other_model").status_code == 404
    assert [h["name"] for h in client.get("/api/v1/heads").json()["heads"]] == ["rest_head"]


def test_training_reads_only_the_input_folders(setup, tmp_path):
    client, _, _, data = setup
    outside = client.post("/api/v1/heads", json={"name": "x", "data_path": str(tmp_path)})
    assert outside.status_code == 403 and outside.json()["error"]["code"] == "forbidden"
    dots = client.post("/api/v1/heads", json={"name": "x", "data_path": str(data) + "/../.."})
    assert dots.status_code == 403
    bad_name = client.post("/api/v1/heads", json={"name": "a/b", "data_path": str(data)})
    assert bad_name.status_code == 422 and bad_name.json()["error"]["code"] == "bad_request"
    missing = client.get("/api/v1/heads/jobs/nope")
    assert missing.status_code == 404
