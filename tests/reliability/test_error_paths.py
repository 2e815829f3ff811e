"""Error messages name files relative to the folders a client knows, never by the server's absolute paths.

Provokes the errors a client can cause about server files — a missing or
odd ``audio_path``, a missing run or artifact, a labelled set with an
unlabelled file or a listed file outside the input folders, a training job
that fails on an undecodable clip or an existing head — and checks that no
response body holds the server's root folder (``token_server``'s temporary
root: its inputs, outputs, heads and logs live there).
"""

from __future__ import annotations

import time

import httpx
import pytest

from emotion2vec_webui.audio.signals import tone, write_audio


@pytest.fixture(scope="module")
def client(token_server):
    headers = {"Authorization": f"Bearer {token_server.token}"}
    with httpx.Client(base_url=token_server.url, headers=headers, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def labelled_sets(token_server):
    inputs = token_server.inputs
    for folder in ("good/happy", "good/sad", "broken/happy", "broken/sad", "unlabelled"):
        (inputs / folder).mkdir(parents=True)
    for i in range(3):
        for folder in ("good/happy", "good/sad", "broken/happy", "broken/sad"):
            write_audio(inputs / folder / f"c{i}.wav", tone(1.0, 16000, 200.0 + 60 * i), 16000, "wav")
    (inputs / "broken/sad/corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk" * 4)
    write_audio(inputs / "unlabelled/a.wav", tone(1.0, 16000), 16000, "wav")
    write_audio(inputs / "unlabelled/b.wav", tone(1.0, 16000), 16000, "wav")
    (token_server.root / "outputs").mkdir(exist_ok=True)
    write_audio(token_server.root / "outputs" / "private.wav", tone(1.0, 16000), 16000, "wav")
    (inputs / "outside.csv").write_text("path,label\n../outputs/private.wav,a\ngood/happy/c0.wav,b\n")
    (token_server.heads / "taken").mkdir(parents=True)  # a head of that name "exists"
    return inputs


def _wait_for_job(client, answer: httpx.Response) -> dict:
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["id"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job = client.get(f"/api/v1/heads/jobs/{job_id}").json()
        if job["state"] not in ("queued", "running"):
            return job
        time.sleep(0.2)
    raise TimeoutError(job)


def test_no_error_names_an_absolute_server_path(token_server, client, labelled_sets):
    root = token_server.root
    forbidden = {str(root), str(root.resolve())}
    clip = write_audio(root / "clip.wav", tone(1.0, 16000), 16000, "wav").read_bytes()
    run = client.post("/api/v1/recognize", files={"file": ("clip.wav", clip)}, data={"extract_embedding": "false"})
    assert run.status_code == 200, run.text
    run_id = run.json()["run_id"]

    answers = {
        "missing audio_path": client.post("/api/v1/recognize", json={"audio_path": "good/happy/missing.wav"}),
        "audio_path a folder": client.post("/api/v1/recognize", json={"audio_path": "good"}),
        "audio_path outside": client.post("/api/v1/recognize", json={"audio_path": "../outputs/private.wav"}),
        "missing run": client.get("/api/v1/runs/outputs_20990101_000000/result.json"),
        "missing artifact": client.get(f"/api/v1/runs/{run_id}/frames.csv"),
        "rename without speakers": client.patch(f"/api/v1/runs/{run_id}/speakers", json={"names": {"a": "b"}}),
        "unlabelled set": client.post("/api/v1/heads", json={"name": "h1", "data_path": "unlabelled"}),
        "listed file outside": client.post("/api/v1/heads", json={"name": "h2", "data_path": "outside.csv"}),
        "no such set": client.post("/api/v1/heads", json={"name": "h3", "data_path": "nowhere"}),
    }
    expected = {"missing audio_path": 404, "audio_path a folder": 404, "audio_path outside": 403,
                "missing run": 404, "missing artifact": 404, "rename without speakers": 422,
                "unlabelled set": 422, "listed file outside": 403, "no such set": 404}  # fmt: skip
    for what, status in expected.items():
        assert answers[what].status_code == status, (what, answers[what].text)
    assert "unlabelled/a.wav" in answers["unlabelled set"].json()["error"]["message"]

    jobs = {"undecodable clip": {"name": "h4", "data_path": "broken"}, "existing head": {"name": "taken", "data_path": "good"}}
    for what, body in jobs.items():  # one training at a time
        job = _wait_for_job(client, client.post("/api/v1/heads", json=body))
        assert job["state"] == "failed" and job["error"], (what, job)
        answers[what] = client.get(f"/api/v1/heads/jobs/{job['id']}")
    assert "broken/sad/corrupt.wav" in answers["undecodable clip"].json()["error"]["message"]
    answers["heads listing"] = client.get("/api/v1/heads")
    answers["readiness"] = httpx.get(token_server.url + "/readyz")

    leaks = {what: r.text[:400] for what, r in answers.items() if any(f in r.text for f in forbidden)}
    assert not leaks, leaks
