"""A regression head over REST, in-process: POST /api/v1/heads with a targets CSV inside E2V_INPUT_DIRS, the
listing says ``kind``, recognize gives the ``dimensions`` block (the Recognize tab's card shows it); a targets CSV
naming a file outside the input folders is refused."""

from __future__ import annotations

import csv

import pytest

from tests.head_data import app_client, make_set
from tests.serving.test_heads_api import wait_job
from tests.spec_check import check_result


@pytest.fixture(scope="module")
def setup(engine, tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("dims_api")
    data = make_set(root / "inputs" / "set", per_class=3, seed=2)
    with (data / "dims.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "speaker", "arousal", "valence", "dominance"])
        for i, f in enumerate(sorted(data.rglob("*.wav"))):
            w.writerow([f.relative_to(data), f"s{i % 3}", i % 5, (i * 7) % 3 - 1, 0.5 * i])
    with app_client(engine, tiny_model_dir, root, input_dirs=(root / "inputs",)) as (client, service, settings):
        yield client, service, settings, data


def test_regression_head_over_rest(setup):
    from emotion2vec_webui.ui import handlers as ui_handlers

    client, service, settings, data = setup
    body = {"name": "dims", "data_path": str(data / "dims.csv"), "holdout": 0, "targets": ["arousal", "valence"]}
    r = client.post("/api/v1/heads", json=body)
    assert r.status_code == 202, r.text
    job = wait_job(client, r.json()["id"])
    assert job["state"] == "done", job
    report = job["report"]
    assert report["kind"] == "regression" and report["targets"] == ["arousal", "valence"] and report["n"] == 9
    assert report["grouped_by_speaker"] and set(report["cv"]["targets"]) == {"arousal", "valence"}
    listed = client.get("/api/v1/heads").json()["heads"]
    assert [(h["name"], h["kind"], h["compatible"]) for h in listed] == [("dims", "regression", True)]

    clip = next((data / "tone").glob("*.wav"))
    rel = str(clip.relative_to(settings.input_dirs[0]))
    result = client.post("/api/v1/recognize", json={"audio_path": rel, "head": "dims", "granularity": "frame"}).json()
    check_result(result, "frame")
    assert result["head"] is None and list(result["dimensions"]["values"]) == ["arousal", "valence"]
    assert len(result["dimensions"]["frames"]["values"]) == len(result["frames"]["scores"])
    view = ui_handlers.recognize(service, str(clip), "utterance", True, head="dims")
    assert view.result["dimensions"]["values"] == pytest.approx(result["dimensions"]["values"], abs=1e-3)
    assert 'data-head="dims"' in view.card_html and view.card_html.count('data-target="') == 2


def test_a_targets_csv_must_stay_inside_the_input_folders(setup, tmp_path):
    client, _, settings, data = setup
    outside = tmp_path / "elsewhere.wav"
    outside.write_bytes(next((data / "noise").glob("*.wav")).read_bytes())
    listing = data / "escape.csv"
    listing.write_text("path,arousal\n" + "".join(f"{outside},{i}\n" for i in range(4)), "utf-8")
    r = client.post("/api/v1/heads", json={"name": "escape", "data_path": str(listing)})
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    bad = client.post("/api/v1/heads", json={"name": "x", "data_path": str(data / "dims.csv"), "targets": ["nope"]})
    assert bad.status_code == 422 and "nope" in bad.json()["error"]["message"]
