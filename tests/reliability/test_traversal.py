"""Path traversal: artifact downloads, ``audio_path`` and Gradio FileData never reach outside their roots.

Request targets are sent byte for byte over a raw socket (HTTP clients
normalise ``..`` and re-encode), and symlinks are planted inside outputs/ and
the input folder.
"""

from __future__ import annotations

import json
import os
import socket
import time

import httpx
import pytest

from emotion2vec_webui.audio.signals import tone, write_audio

SECRET = b"root:"  # first bytes of /etc/passwd


def raw_get(port: int, target: bytes) -> tuple[int, bytes]:
    """GET ``target`` exactly as given; returns (status, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


@pytest.fixture(scope="module")
def planted(reliability_server, tmp_path_factory):
    """A real run, plus run-shaped folders and files that are symlinks out of the outputs root."""
    srv = reliability_server
    clip = write_audio(tmp_path_factory.mktemp("clip") / "c.wav", tone(1.0, 16000), 16000, "wav").read_bytes()
    r = httpx.post(srv.url + "/api/v1/recognize", files={"file": ("c.wav", clip)}, timeout=60)
    assert r.status_code == 200, r.text
    out = srv.outputs
    (out / "outputs_20990101_000000").symlink_to("/etc", target_is_directory=True)
    (out / "outputs_20990101_000001").mkdir()
    (out / "outputs_20990101_000001" / "result.json").symlink_to("/etc/passwd")
    (out / "outputs_20990101_000001" / "processed_audio.wav").symlink_to("/etc/passwd")
    (out / "outputs_20990101_000002").symlink_to(out.parent, target_is_directory=True)
    (out / "outputs_20990101_000003").symlink_to("/etc/passwd")
    inputs = srv.inputs
    (inputs / "ok.wav").write_bytes(clip)
    (inputs / "link_to_passwd.wav").symlink_to("/etc/passwd")
    outside = tmp_path_factory.mktemp("outside") / "secret.wav"
    outside.write_bytes(clip)
    (inputs / "link_to_outside.wav").symlink_to(outside)
    (inputs / "linkdir").symlink_to(outside.parent, target_is_directory=True)
    sibling = inputs.parent / (inputs.name + "_evil")
    sibling.mkdir()
    (sibling / "x.wav").write_bytes(clip)
    os.mkfifo(inputs / "fifo.wav")
    return {"run_id": r.json()["run_id"], "outside": outside, "sibling": sibling / "x.wav"}


def artifact_targets(run_id: str) -> list[str]:
    base = "/api/v1/runs"
    up = run_id.upper()
    return [
        f"{base}/../../../../etc/passwd",
        f"{base}/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        f"{base}/%252e%252e%252f%252e%252e%252fetc%252fpasswd",
        f"{base}/{run_id}/..%2f..%2f..%2f..%2fetc%2fpasswd",
        f"{base}/{run_id}/%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        f"{base}/{run_id}/%252e%252e%252f%252e%252e%252fetc%252fpasswd",
        f"{base}/{run_id}/....//....//....//etc/passwd",
        f"{base}/{run_id}/..%5c..%5c..%5cetc%5cpasswd",
        f"{base}/{run_id}/..\\..\\..\\etc\\passwd",
        f"{base}/{run_id}/.%2e/.%2e/.%2e/etc/passwd",
        f"{base}/{run_id}/%c0%ae%c0%ae/%c0%ae%c0%ae/etc/passwd",
        f"{base}/{run_id}/..%c0%af..%c0%af..%c0%afetc%c0%afpasswd",
        f"{base}/{run_id}/..;/..;/..;/etc/passwd",
        f"{base}/{run_id}/result.json%00.png",
        f"{base}/{run_id}/result.json%00",
        f"{base}/{run_id}/RESULT.JSON",
        f"{base}/{run_id}/Result.Json",
        f"{base}/{up}/result.json",
        f"{base}/%2fetc%2fpasswd/result.json",
        f"{base}//etc/passwd",
        f"{base}/{run_id}/%2fetc%2fpasswd",
        f"{base}/{run_id}/run.log/../../../../etc/passwd",
        f"{base}/{run_id}%2f..%2f..%2f..%2fetc/passwd",
        f"{base}/{run_id}/result.json/",
        f"{base}/{run_id}/..",
        f"{base}/..",
        f"{base}/.",
        f"{base}/{run_id}/embedding.npy%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
        f"{base}/{run_id}/../../../../../../etc/passwd",
        f"{base}/{run_id}_1/../../etc/passwd",
        f"{base}/{run_id}/~/.bashrc",
        f"{base}/{run_id}/.tmp-x",
        f"{base}/outputs_20990101_000000/passwd",
        f"{base}/outputs_20990101_000000/result.json",
        f"{base}/outputs_20990101_000001/result.json",
        f"{base}/outputs_20990101_000001/processed_audio.wav",
        f"{base}/outputs_20990101_000001",
        f"{base}/outputs_20990101_000002/result.json",
        f"{base}/outputs_20990101_000002",
        f"{base}/outputs_20990101_000003",
        f"{base}/outputs_20990101_000003/result.json",
        "/api/v1/%2e%2e/%2e%2e/etc/passwd",
        "/api/v1/runs%2f..%2f..%2fetc%2fpasswd",
    ]


def test_artifact_route_refuses_traversal(reliability_server, planted):
    run_id = planted["run_id"]
    ok_status, ok_body = raw_get(reliability_server.port, f"/api/v1/runs/{run_id}/result.json".encode())
    assert ok_status == 200 and json.loads(ok_body)["emotion"]  # the route itself works
    refused = 0
    for target in artifact_targets(run_id):
        status, body = raw_get(reliability_server.port, target.encode())
        assert status in (400, 404), (target, status, body[:200])
        assert SECRET not in body, target
        if status == 404:
            assert json.loads(body)["error"]["code"] == "not_found", target
        refused += 1
    # the run listing skips the planted entries that are not real run folders
    listing = httpx.get(reliability_server.url + "/api/v1/runs", params={"limit": 200}).json()
    assert SECRET.decode() not in json.dumps(listing)
    print(f"\ntraversal: {refused} artifact-route payloads refused")


def audio_path_payloads(srv, planted) -> list[tuple[object, int]]:
    inputs = srv.inputs
    return [
        ("../../../../etc/passwd", 403),
        ("/etc/passwd", 403),
        ("/ETC/PASSWD", 403),
        ("/etc/passwd\x00.wav", 403),
        (str(inputs / "../../../../etc/passwd"), 403),
        (str(inputs) + "/../" + inputs.name + "/../../etc/passwd", 403),
        ("sub/../../../etc/passwd", 403),
        ("link_to_passwd.wav", 403),
        ("link_to_outside.wav", 403),
        ("linkdir/secret.wav", 403),
        (str(planted["outside"]), 403),
        (str(planted["sibling"]), 403),
        (str(inputs), 403),
        (".", 403),
        ("/proc/self/environ", 403),
        ("/dev/zero", 403),
        ("/dev/urandom", 403),
        ("//etc/passwd", 403),
        ("/./etc/./passwd", 403),
        ("fifo.wav", 404),
        ("%2e%2e/%2e%2e/etc/passwd", 404),  # a literal name inside the folder: no such file
        ("..\\..\\..\\etc\\passwd", 404),
        ("~/.bashrc", 404),
        ("~root/.ssh/id_rsa", 404),
        ("file:///etc/passwd", 404),
        ("http://127.0.0.1:1/a.wav", 404),
        ("", 403),
        (["/etc/passwd"], 422),
        ({"path": "/etc/passwd"}, 422),
    ]


def test_audio_path_stays_inside_the_input_folders(reliability_server, planted):
    srv = reliability_server
    refused = 0
    with httpx.Client(base_url=srv.url, timeout=60) as client:
        assert client.post("/api/v1/recognize", json={"audio_path": "ok.wav"}).status_code == 200
        for payload, status in audio_path_payloads(srv, planted):
            r = client.post("/api/v1/recognize", json={"audio_path": payload})
            assert r.status_code == status, (payload, r.status_code, r.text)
            assert r.json()["error"]["code"] in ("forbidden", "not_found", "bad_request")
            assert SECRET.decode() not in r.text
            refused += 1
    print(f"\ntraversal: {refused} audio_path payloads refused")


def _gradio_call(url: str, data: list) -> tuple[str, str]:
    """POST to Gradio's /gradio_api/call/recognize and read the event stream's outcome."""
    r = httpx.post(url + "/gradio_api/call/recognize", json={"data": data}, timeout=30)
    assert r.status_code == 200, r.text
    event_id = r.json()["event_id"]
    deadline = time.monotonic() + 60
    with httpx.stream("GET", f"{url}/gradio_api/call/recognize/{event_id}", timeout=60) as stream:
        event = ""
        for line in stream.iter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and event in ("complete", "error"):
                return event, line[5:]
            if time.monotonic() > deadline:
                break
    return "timeout", ""


def test_gradio_filedata_cannot_name_server_files(reliability_server, planted):
    """A FileData pointing outside Gradio's upload folder is refused before our code runs."""
    url = reliability_server.url
    for path in ("/etc/passwd", str(planted["outside"]), str(reliability_server.inputs / "ok.wav")):
        file_data = {"path": path, "meta": {"_type": "gradio.FileData"}, "orig_name": "x.wav"}
        event, data = _gradio_call(url, [file_data, "utterance", False])
        assert event == "error", (path, event, data[:300])
        assert SECRET.decode() not in data and '"emotion"' not in data
    outputs = reliability_server.outputs
    for target in (
        "/gradio_api/file=/etc/passwd",
        f"/gradio_api/file={outputs}/../x",
        f"/gradio_api/file={outputs}/outputs_20990101_000001/result.json",  # a symlink to /etc/passwd
        f"/gradio_api/file={outputs}/outputs_20990101_000000/passwd",
    ):
        status, body = raw_get(reliability_server.port, target.encode())
        assert status in (403, 404) and SECRET not in body, (target, status)
