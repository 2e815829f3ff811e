"""The REST API on the tiny random-weight model: its contract in-process, the socket against a real server.

Both run with ``token_api_server``'s settings (``TOKEN_API_SETTINGS`` in
tests/server_util.py): a token (so auth is exercised on every call), a 1 MB
upload cap (so 413 is cheap to provoke), a queue of 2 (so overload is too) and
an input folder. The contract (routes, statuses, the error shape, run folders,
caps counted by the app) runs in-process: ``create_app`` on those settings
through FastAPI's ``TestClient``, the same middleware, routes and decoder pool
as a server, without a process start. What needs uvicorn and a socket — a
chunked upload over the cap, a 413 before the body ends, clients that hang up,
an overload burst of parallel connections — runs against ``token_api_server`` (tests/conftest.py), the real
process that tests/ui/test_gradio_client.py and the browser's token tests share.
"""

from __future__ import annotations

import base64
import io
import json
import socket
import time
import wave

import httpx
import numpy as np
import pytest

from benchmarks.load_test import overload_burst
from emotion2vec_webui.audio.signals import tone, write_audio
from emotion2vec_webui.runs.storage import RUN_ID_RE
from tests.server_util import SHARED_API_TOKEN as TOKEN
from tests.server_util import TOKEN_API_SETTINGS, app_settings
from tests.spec_check import check_result

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def app(tiny_model_dir, engine, tmp_path_factory):
    """The app in-process on token_api_server's settings: ``anon`` (no credentials; it ran the app's start-up),
    ``client`` (the token on every request) and ``root`` (its ``inputs/``, ``heads/`` and ``outputs/``)."""
    from types import SimpleNamespace

    from fastapi.testclient import TestClient

    from emotion2vec_webui.app import create_app
    from emotion2vec_webui.runs.inference.service import Service

    root = tmp_path_factory.mktemp("api_app")
    (root / "inputs").mkdir()
    s = app_settings(tiny_model_dir, root, input_dirs=root / "inputs", heads_dir=root / "heads", **TOKEN_API_SETTINGS)
    asgi = create_app(s, Service(s, engine))
    with TestClient(asgi) as anon:
        yield SimpleNamespace(anon=anon, client=TestClient(asgi, headers=AUTH), root=root)


@pytest.fixture(scope="module")
def anon(app):
    return app.anon


@pytest.fixture(scope="module")
def client(app):
    return app.client


@pytest.fixture(scope="module")
def server(token_api_server):
    """The real process, for what needs uvicorn and the socket. The tests here are sequential; the overload
    test fills the queue of 2 (from 127.0.0.1: no per-client cap)."""
    return token_api_server


@pytest.fixture(scope="module")
def remote(server):
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> bytes:
    path = write_audio(tmp_path_factory.mktemp("clip") / "clip.wav", tone(1.5, 22050, channels=2), 22050, "wav")
    return path.read_bytes()


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    assert body["error"]["message"] and "Traceback" not in body["error"]["message"]
    assert response.headers.get("x-request-id")


def recognize(client, data: bytes, name="clip.wav", **fields) -> httpx.Response:
    return client.post("/api/v1/recognize", files={"file": (name, data, "audio/wav")}, data=fields)


def test_health_and_readiness_are_open(anon):
    r = anon.get("/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok" and r.headers["x-request-id"]
    r = anon.get("/readyz")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["ready"] is True and body["state"] == "ready" and body["model"]["random_weights"] is True


def test_token_is_required_for_the_api(anon):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
        r = anon.get("/api/v1/runs", headers=headers)
        assert_error(r, 401, "unauthorized")
        assert r.headers["www-authenticate"] == "Bearer"
    # refused before the body is read: a large upload without the token gets 401, not 413
    r = anon.post("/api/v1/recognize", files={"file": ("x.wav", b"\0" * 3_000_000)})
    assert_error(r, 401, "unauthorized")
    assert anon.get("/api/v1/runs", headers=AUTH).status_code == 200


def test_recognize_multipart_writes_a_complete_run(client, clip):
    r = recognize(client, clip, granularity="utterance", extract_embedding="true")
    assert r.status_code == 200, r.text
    body = r.json()
    check_result(body, "utterance")
    assert RUN_ID_RE.match(body["run_id"])
    assert body["audio"]["source_name"] == "clip.wav" and body["audio"]["original_channels"] == 2
    assert set(body["files"]) >= {"result.json", "processed_audio.wav", "embedding.npy"}
    assert body["request_id"] == r.headers["x-request-id"]

    saved = client.get(body["files"]["result.json"]).json()
    assert saved == {k: v for k, v in body.items() if k not in ("run_id", "files")}
    audio = client.get(body["files"]["processed_audio.wav"])
    assert audio.headers["content-type"].startswith("audio/")
    with wave.open(io.BytesIO(audio.content)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
        assert abs(w.getnframes() / 16000 - body["audio"]["duration_s"]) < 0.01
    embedding = np.load(io.BytesIO(client.get(body["files"]["embedding.npy"]).content))
    assert embedding.shape == tuple(body["embedding"]["shape"]) and embedding.ndim == 1

    detail = client.get(f"/api/v1/runs/{body['run_id']}").json()
    assert detail == body


def test_frame_granularity_without_embedding(client, clip):
    r = recognize(client, clip, granularity="frame", extract_embedding="false")
    assert r.status_code == 200, r.text
    body = r.json()
    check_result(body, "frame")
    assert body["embedding"] is None and "embedding.npy" not in body["files"]
    assert body["frames"]["scores"] and body["segments"]


def test_vad_segmentation_gives_speech_segments(app, client, speech_wav):
    r = recognize(client, speech_wav.read_bytes(), "speech.wav", segmentation="vad")
    assert r.status_code == 200, r.text
    body = r.json()
    check_result(body, "utterance")
    segments = body["segments"]
    assert segments and all(seg["source"] == "vad" for seg in segments), segments
    ends = [0.0] + [seg["end_s"] for seg in segments]
    assert all(ends[i] <= seg["start_s"] < seg["end_s"] for i, seg in enumerate(segments))
    assert segments[-1]["end_s"] <= body["audio"]["duration_s"] + 0.01
    # the same option through the JSON body
    (app.root / "inputs" / "speech.wav").write_bytes(speech_wav.read_bytes())
    by_path = client.post("/api/v1/recognize", json={"audio_path": "speech.wav", "segmentation": "vad"})
    assert by_path.status_code == 200, by_path.text
    assert [s["start_s"] for s in by_path.json()["segments"]] == [s["start_s"] for s in segments]


def test_json_base64_and_audio_path_match_multipart(app, client, clip):
    by_upload = recognize(client, clip).json()
    payload = {"audio_base64": base64.b64encode(clip).decode(), "filename": "b64.wav"}
    by_json = client.post("/api/v1/recognize", json=payload)
    assert by_json.status_code == 200, by_json.text
    assert by_json.json()["scores"] == by_upload["scores"]
    assert by_json.json()["audio"]["source_name"] == "b64.wav"
    data_url = {"audio_base64": "data:audio/wav;base64," + payload["audio_base64"]}
    assert client.post("/api/v1/recognize", json=data_url).json()["scores"] == by_upload["scores"]

    (app.root / "inputs" / "sub").mkdir(exist_ok=True)
    (app.root / "inputs" / "sub" / "in.wav").write_bytes(clip)
    for path in (str(app.root / "inputs" / "sub" / "in.wav"), "sub/in.wav"):
        by_path = client.post("/api/v1/recognize", json={"audio_path": path})
        assert by_path.status_code == 200, (path, by_path.text)
        assert by_path.json()["scores"] == by_upload["scores"]
        assert by_path.json()["audio"]["source_name"] == "in.wav"
    assert_error(client.post("/api/v1/recognize", json={"audio_path": "sub/missing.wav"}), 404, "not_found")
    assert_error(client.post("/api/v1/recognize", json={"audio_path": "/etc/hostname"}), 403, "forbidden")
    # ".." is refused outright, even when it would stay inside (the file is opened by an O_NOFOLLOW walk)
    assert_error(client.post("/api/v1/recognize", json={"audio_path": "sub/../sub/in.wav"}), 403, "forbidden")


def test_request_id_round_trip(client, clip):
    r = client.post("/api/v1/recognize", files={"file": ("c.wav", clip)}, headers={"X-Request-ID": "trace-abc.123"})
    assert r.headers["x-request-id"] == "trace-abc.123"
    assert r.json()["request_id"] == "trace-abc.123"
    assert client.get(r.json()["files"]["result.json"]).json()["request_id"] == "trace-abc.123"
    r = client.get("/api/v1/runs", headers={"X-Request-ID": "bad id; <script>"})
    assert r.headers["x-request-id"] != "bad id; <script>" and len(r.headers["x-request-id"]) <= 64


@pytest.mark.parametrize(
    "kwargs, status, code",
    [
        ({"files": {"file": ("a.wav", b"RIFF")}, "data": {"granularity": "word"}}, 422, "bad_request"),
        ({"files": {"file": ("a.wav", b"RIFF")}, "data": {"extract_embedding": "maybe"}}, 422, "bad_request"),
        ({"files": {"other": ("a.wav", b"RIFF")}}, 422, "bad_request"),
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 422, "bad_request"),
        ({"json": {"audio_base64": "AAAA", "audio_path": "x.wav"}}, 422, "bad_request"),
        ({"json": {}}, 422, "bad_request"),
        ({"json": {"audio_base64": "not base64!!"}}, 422, "bad_request"),
        ({"json": {"audio_base64": "AAAA", "granularity": "word"}}, 422, "bad_request"),
        ({"files": {"file": ("a.wav", b"RIFF")}, "data": {"segmentation": "words"}}, 422, "bad_request"),
        ({"json": {"audio_base64": "AAAA", "segmentation": "words"}}, 422, "bad_request"),
        ({"json": {"audio_base64": "AAAA", "unknown_field": 1}}, 422, "bad_request"),
        ({"json": [1, 2, 3]}, 422, "bad_request"),
        ({"content": b"raw bytes", "headers": {"content-type": "text/plain"}}, 422, "bad_request"),
        ({"json": {"audio_base64": base64.b64encode(b"hello world, not audio").decode()}}, 415, "audio_undecodable"),
        ({"files": {"file": ("a.wav", b"")}}, 422, "audio_empty"),
        ({"content": b"--x\r\nbroken", "headers": {"content-type": "multipart/form-data; boundary=x"}}, 422, None),
    ],
)
def test_bad_requests_get_the_error_shape(client, kwargs, status, code):
    r = client.post("/api/v1/recognize", **kwargs)
    assert r.status_code == status, r.text
    if code:
        assert_error(r, status, code)
    else:
        assert "error" in r.json()


def test_unknown_routes_and_methods(client):
    assert_error(client.get("/api/v1/nope"), 404, "not_found")
    assert_error(client.get("/api/v2/recognize"), 404, "not_found")
    assert_error(client.get("/api"), 404, "not_found")
    assert_error(client.get("/api/v1/recognize"), 405, "method_not_allowed")
    assert_error(client.get("/api/v1/runs", params={"limit": 0}), 422, "bad_request")
    assert_error(client.get("/api/v1/runs/outputs_20990101_000000"), 404, "not_found")
    assert_error(client.get("/api/v1/runs/not-a-run"), 404, "not_found")
    assert_error(client.get("/api/v1/runs/outputs_20990101_000000/result.json"), 404, "not_found")


def test_runs_listing_is_newest_first_and_paginated(client, clip):
    ids = [recognize(client, clip, extract_embedding="false").json()["run_id"] for _ in range(2)]
    page = client.get("/api/v1/runs", params={"limit": 2}).json()
    assert [r["run_id"] for r in page["runs"]] == ids[::-1]
    assert page["total"] >= 2 and page["limit"] == 2
    second = client.get("/api/v1/runs", params={"limit": 1, "offset": 1}).json()
    assert second["runs"][0]["run_id"] == ids[0]
    assert client.get(page["runs"][0]["url"]).json()["run_id"] == ids[1]
    artifact = client.get(f"/api/v1/runs/{ids[0]}/embedding.npy")
    assert_error(artifact, 404, "not_found")  # not extracted for these runs


def test_upload_cap_with_content_length(client):
    big = b"RIFF" + b"\0" * (2 * 1024 * 1024)
    assert_error(recognize(client, big), 413, "file_too_large")
    assert_error(
        client.post("/api/v1/recognize", json={"audio_base64": base64.b64encode(big).decode()}), 413, "file_too_large"
    )




def test_upload_cap_while_streaming(remote):
    """Chunked over a socket: in-process, TestClient never says the client is done, so the bounded drain after
    the 413 would wait its full time."""

    def chunks():  # no Content-Length: the server has to count
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.wav"\r\n\r\n'
        for _ in range(40):
            yield b"\0" * 65536
        yield b"\r\n--b--\r\n"

    r = remote.post("/api/v1/recognize", content=chunks(), headers={"content-type": "multipart/form-data; boundary=b"})
    assert_error(r, 413, "file_too_large")
    assert remote.get("/api/v1/runs").status_code == 200  # the server carries on


def test_413_arrives_before_the_body_ends(server):
    """Raw socket: send 1.5 MB of a chunked body, never finish it, and read the 413."""
    head = (
        "POST /api/v1/recognize HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        f"Authorization: Bearer {TOKEN}\r\nContent-Type: multipart/form-data; boundary=b\r\n\r\n"
    ).encode()
    part = b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.wav"\r\n\r\n'
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as s:
        s.sendall(head + b"%x\r\n%s\r\n" % (len(part), part))
        chunk = b"\0" * 65536
        for _ in range(24):  # 1.5 MB against a 1 MB cap; the body is never terminated
            s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += s.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


def test_openapi_documents_the_schemas(anon):
    spec = anon.get("/openapi.json").json()
    recognize_op = spec["paths"]["/api/v1/recognize"]["post"]
    assert {"multipart/form-data", "application/json"} <= set(recognize_op["requestBody"]["content"])
    assert {"200", "413", "415", "422", "503"} <= set(recognize_op["responses"])
    json_schema = recognize_op["requestBody"]["content"]["application/json"]["schema"]
    assert {"audio_base64", "audio_path", "granularity", "extract_embedding", "segmentation"} <= set(
        json_schema["properties"]
    )
    multipart = recognize_op["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert multipart["properties"]["segmentation"]["enum"] == ["frames", "vad"]
    assert {"RecognizeResponse", "ErrorBody", "RunsPage", "Readiness"} <= set(spec["components"]["schemas"])
    assert {"/healthz", "/readyz", "/api/v1/runs", "/api/v1/runs/{run_id}/{artifact}", "/api/v1/similarity"} <= set(
        spec["paths"]
    )
    assert anon.get("/docs").status_code == 200


def test_similarity(client, clip, tmp_path):
    other = write_audio(tmp_path / "o.wav", tone(1.0, 16000, freq=440), 16000, "wav").read_bytes()
    r = client.post("/api/v1/similarity", files={"a": ("a.wav", clip), "b": ("b.wav", other)})
    try:
        import emotion2vec_webui.runs.similarity as sim
    except ImportError:
        sim = None
    if sim is None or not hasattr(sim, "similarity_from_sources"):
        assert_error(r, 501, "not_implemented")
        return
    assert r.status_code == 200, r.text
    assert -1.0 - 1e-6 <= r.json()["cosine"] <= 1.0 + 1e-6
    same = client.post("/api/v1/similarity", files={"a": ("a.wav", clip), "b": ("b.wav", clip)}).json()
    assert same["cosine"] == pytest.approx(1.0, abs=1e-4)
    assert_error(client.post("/api/v1/similarity", files={"a": ("a.wav", clip)}), 422, "bad_request")


def test_ui_is_served_by_the_same_app(anon):
    r = anon.get("/")
    assert r.status_code == 200 and "<html" in r.text.lower()
    assert json.loads(anon.get("/healthz").text)["status"] == "ok"


def test_clients_that_go_away_leave_no_partial_run(server, remote, clip):
    """Hang up mid-upload, and right after a full upload: no temp folders, only complete runs, server fine."""
    head = (
        "POST /api/v1/recognize HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
        f"Authorization: Bearer {TOKEN}\r\n"
    ).encode()
    part = b'--b\r\nContent-Disposition: form-data; name="file"; filename="c.wav"\r\n\r\n'
    body = part + clip + b"\r\n--b--\r\n"
    for sent in (body[: len(body) // 2], body):
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
            s.sendall(head + b"Content-Length: %d\r\n\r\n" % len(body) + sent)
    outputs = server.root / "outputs"
    for _ in range(30):  # let a job that was already queued finish
        if not remote.get("/readyz").json()["queue_depth"]:
            break
        time.sleep(1)
    assert remote.get("/readyz").status_code == 200
    assert not list(outputs.glob(".tmp-*"))
    for folder in (p for p in outputs.iterdir() if RUN_ID_RE.match(p.name)):
        assert {"result.json", "processed_audio.wav", "run.log"} <= {p.name for p in folder.iterdir()}, folder
    assert recognize(remote, clip).status_code == 200


def test_overload_answers_503_at_once_and_recovers(server, tmp_path):
    long_clip = write_audio(tmp_path / "long.wav", tone(20.0, 16000), 16000, "wav")  # 640 kB: under the cap
    result = overload_burst(server.url, long_clip, burst=24, token=TOKEN, probes=10, fillers=8)
    print("\noverload:", json.dumps(result))
    # A probe can land in the moment a slot frees, before a filler retakes it: allow two such races.
    assert result["probe_rejected_503"] >= 8 and result["rejected_503"] > 0 and result["ok"] >= 1, result
    assert not result["other_statuses"], result
    assert result["retry_after"], "503 answers need Retry-After"
    assert result["recovered"], result
    # A rejection never waits for inference (one 20 s clip): the bound is loose on purpose, for a
    # busy CI machine; the figure to quote (<100 ms) comes from benchmarks/load_test.py.
    assert result["probe_p50_ms"] < 2000, result


def test_result_schema_is_served_and_validates_a_real_result(client, clip):
    import jsonschema

    schema = client.get("/api/v1/schema/result")
    assert schema.status_code == 200 and schema.headers["content-type"].startswith("application/schema+json")
    body = schema.json()
    jsonschema.Draft202012Validator.check_schema(body)
    made = client.post("/api/v1/recognize", files={"file": ("clip.wav", clip)}, data={"granularity": "frame"})
    assert made.status_code == 200, made.text
    result = client.get(f"/api/v1/runs/{made.json()['run_id']}").json()
    jsonschema.validate(result, body)
    broken = {k: v for k, v in result.items() if k != "scores"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, body)
