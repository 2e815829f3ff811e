"""Errors that left the one error shape: a JSON body over its cap (413, not 422), an unsatisfiable Range (416).

The whole app in-process (``create_app`` + TestClient): the middleware, guards and routes a server runs.
"""

from __future__ import annotations

import dataclasses
import json

import pytest

from emotion2vec_webui.audio.signals import tone, write_audio
from emotion2vec_webui.serving.errors import HTTP_STATUS
from emotion2vec_webui.serving.json_body import SMALL_BODY_BYTES


@pytest.fixture(scope="module")
def app_client(tmp_path_factory, tiny_model_dir, engine):
    """A client of the whole app, and one run (a two-channel conversation, so it has speakers to rename)."""
    from fastapi.testclient import TestClient

    from emotion2vec_webui.app import create_app
    from emotion2vec_webui.config import load_settings
    from emotion2vec_webui.runs.inference.service import Service

    root = tmp_path_factory.mktemp("error_shapes")
    s = dataclasses.replace(load_settings(), model=str(tiny_model_dir), device="cpu", output_dir=root / "outputs",
                            api_token=None, max_per_client=0)  # fmt: skip
    call = write_audio(root / "call.wav", tone(1.0, 16000, channels=2), 16000, "wav").read_bytes()
    with TestClient(create_app(s, Service(s, engine)), base_url="http://127.0.0.1") as client:
        r = client.post("/api/v1/recognize", files={"file": ("call.wav", call, "audio/wav")},
                        data={"speakers": "channels", "extract_embedding": "false"})  # fmt: skip
        assert r.status_code == 200, r.text
        client.run_id = r.json()["run_id"]
        yield client


def _typed(r, code: str) -> dict:
    assert r.status_code == HTTP_STATUS[code], (r.status_code, r.text[:300])
    assert r.headers["content-type"].startswith("application/json"), r.headers
    error = r.json()["error"]
    assert error["code"] == code and " / " in error["message"], error
    return error


def test_a_json_body_over_its_cap_is_413_file_too_large(app_client):
    big = json.dumps({"names": {f"s{i}": "x" * 60 for i in range(2000)}}).encode()  # ~150 KB
    assert len(big) > SMALL_BODY_BYTES
    headers = {"Content-Type": "application/json"}
    rename = f"/api/v1/runs/{app_client.run_id}/speakers"
    for method, path in (("PATCH", rename), ("POST", "/api/v1/heads")):
        # announced by Content-Length (refused before reading), and chunked (refused once 64 KB have arrived)
        _typed(app_client.request(method, path, content=big, headers=headers), "file_too_large")
        chunks = (big[i : i + 8192] for i in range(0, len(big), 8192))
        _typed(app_client.request(method, path, content=chunks, headers=headers), "file_too_large")
    # under the cap, a malformed body is still 422 bad_request, and a good one is answered
    _typed(app_client.patch(rename, content=b"{'names': 1}", headers=headers), "bad_request")
    r = app_client.patch(rename, json={"names": {"left": "Agent"}})
    assert r.status_code == 200, r.text


def test_an_unsatisfiable_range_is_416_in_the_error_shape(app_client):
    url = f"/api/v1/runs/{app_client.run_id}/result.json"
    size = len(app_client.get(url).content)
    for header in (f"bytes={size}-", f"bytes={size + 10_000}-{size + 20_000}", "bytes=-0"):
        r = app_client.get(url, headers={"Range": header})
        _typed(r, "range_not_satisfiable")
        assert r.headers["content-range"] == f"bytes */{size}", (header, r.headers)
    r = app_client.get(url, headers={"Range": "bytes=0-9"})  # a satisfiable range is unchanged
    assert r.status_code == 206 and len(r.content) == 10 and r.headers["content-range"] == f"bytes 0-9/{size}"


def test_odd_range_numbers_are_answered_never_a_500(app_client):
    url = f"/api/v1/runs/{app_client.run_id}/result.json"
    size = len(app_client.get(url).content)
    huge = "9" * 5000  # int() of over 4,300 digits raises ValueError (CPython's conversion limit)
    r = app_client.get(url, headers={"Range": f"bytes={huge}-"})
    _typed(r, "range_not_satisfiable")
    r = app_client.get(url, headers={"Range": f"bytes=0-{huge}"})
    assert r.status_code == 206 and r.headers["content-range"] == f"bytes 0-{size - 1}/{size}", r.status_code
    r = app_client.get(url, headers={"Range": f"bytes=-{huge}"})
    assert r.status_code == 206 and len(r.content) == size, r.status_code
    r = app_client.get(url, headers={"Range": "bytes=\u00b2-".encode("latin-1")})  # "²".isdigit() is True
    assert r.status_code == 200 and len(r.content) == size, r.status_code


@pytest.mark.parametrize(
    ("field", "value"),
    [("channels", "\u00b2"), ("channels", "9" * 5000), ("audio_stream", "\u00b2"), ("audio_stream", "9" * 5000),
     ("audio_stream", "\u0663")],  # fmt: skip
)
def test_numbers_that_are_not_ascii_digits_are_bad_request(app_client, field, value):
    """'²'.isdigit() is True but int('²') raises, as int() of over 4,300 digits does: each was a 500."""
    clip = write_audio(app_client.app.state.settings.output_dir.parent / "t.wav", tone(1.0, 16000), 16000, "wav")
    r = app_client.post("/api/v1/recognize", files={"file": ("t.wav", clip.read_bytes(), "audio/wav")},
                        data={field: value})  # fmt: skip
    _typed(r, "bad_request")
