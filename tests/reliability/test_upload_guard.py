"""Gradio's upload route under attack: bytes per request, uploads per client, the disk floor.

``guarded_server`` runs with ``E2V_MAX_UPLOAD_MB=1`` and ``E2V_MAX_BATCH_UPLOAD_MB=2``
(one request: 2 MB plus 1 MB of multipart overhead) and ``UPLOADS_PER_MIN`` uploads a
minute per client. Each test speaks from its own loopback address (127.0.0.x), so
each has its own bucket.
"""

from __future__ import annotations

import httpx
import pytest

from tests.reliability.conftest import UPLOADS_PER_MIN
from tests.server_util import app_settings

UPLOAD = "/gradio_api/upload"
MB = 1024 * 1024


def client_from(address: str) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=30)


def files(count: int, size: int) -> list:
    return [("files", (f"f{i}.wav", b"RIFF" + bytes(size - 4), "audio/wav")) for i in range(count)]


def temp_files(server) -> set:
    return {p for p in server.gradio_tmp.rglob("*") if p.is_file()} if server.gradio_tmp.exists() else set()


def assert_error(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code, r.text
    assert " / " in r.json()["error"]["message"]  # English / 中文


def test_a_normal_two_file_upload_passes(guarded_server):
    with client_from("127.0.0.11") as c:
        r = c.post(guarded_server.url + UPLOAD, files=files(2, int(0.9 * MB)))
    assert r.status_code == 200, r.text
    assert len(r.json()) == 2


def test_too_many_bytes_in_one_request_is_413_and_leaves_nothing(guarded_server):
    before = temp_files(guarded_server)
    with client_from("127.0.0.12") as c:
        # 40 files under the per-file cap: Gradio alone would take them all.
        assert_error(c.post(guarded_server.url + UPLOAD, files=files(40, 100_000)), 413, "file_too_large")

        def chunks():  # no Content-Length: counted while it streams in
            boundary = b"e2vchunkedupload"
            for i in range(40):
                yield (
                    b"--"
                    + boundary
                    + f'\r\nContent-Disposition: form-data; name="files"; filename="c{i}.wav"\r\n\r\n'.encode()
                )
                yield b"RIFF" + bytes(100_000)
                yield b"\r\n"
            yield b"--" + boundary + b"--\r\n"

        r = c.post(
            guarded_server.url + UPLOAD,
            content=chunks(),
            headers={"content-type": "multipart/form-data; boundary=e2vchunkedupload"},
        )
        assert_error(r, 413, "file_too_large")
    assert temp_files(guarded_server) <= before, sorted(temp_files(guarded_server) - before)


def test_a_burst_beyond_the_rate_is_429_with_retry_after(guarded_server):
    statuses = []
    with client_from("127.0.0.13") as c:
        for _ in range(UPLOADS_PER_MIN + 3):
            r = c.post(guarded_server.url + UPLOAD, files=files(1, 1000))
            statuses.append(r.status_code)
            if r.status_code == 429:
                assert_error(r, 429, "rate_limited")
                assert int(r.headers["retry-after"]) >= 1
                break
    assert statuses == [200] * UPLOADS_PER_MIN + [429], statuses
    with client_from("127.0.0.14") as c:  # another client is not affected
        assert c.post(guarded_server.url + UPLOAD, files=files(1, 1000)).status_code == 200


def test_the_api_answers_every_error_in_the_error_shape(guarded_server):
    r = httpx.request("TRACE", guarded_server.url + "/api/v1/recognize")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"
    assert r.headers["allow"] == "POST"


@pytest.fixture(scope="module")
def full_disk_app(tiny_model_dir, engine, tmp_path_factory):
    """The app in-process with a free-space floor no disk can meet: the floor is the upload guard's (ASGI
    middleware), so no server process is started for it; ``gradio_tmp`` is where this process's Gradio keeps
    uploads (the first app built in a process sets ``GRADIO_TEMP_DIR`` for all)."""
    from fastapi.testclient import TestClient

    from emotion2vec_webui.app import create_app
    from emotion2vec_webui.config import gradio_temp_dir
    from emotion2vec_webui.runs.inference.service import Service

    root = tmp_path_factory.mktemp("fulldisk")
    settings = app_settings(tiny_model_dir, root, min_free_mb=10**9)
    with TestClient(create_app(settings, Service(settings, engine))) as client:
        client.gradio_tmp = gradio_temp_dir(settings)
        yield client


def test_uploads_stop_at_the_disk_floor(full_disk_app):
    before = temp_files(full_disk_app)  # the UI's examples are cached there at start
    r = full_disk_app.post(UPLOAD, files=files(1, 1000))
    assert_error(r, 507, "storage_full")
    assert temp_files(full_disk_app) == before
