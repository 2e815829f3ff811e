"""The API keeps its documented contract (docs/api.md) where it used to drift.

Every error under /api is ``{"error": {"code", "message"}}`` with the status of its
code in ``serving.errors.HTTP_STATUS`` (a malformed multipart body is 422 like every other
``bad_request``; any method, even a made-up one, gets the error shape); deeply
nested JSON is a 422, not a 500; base64 wrapped in lines (what `base64` prints) is
accepted.
"""

from __future__ import annotations

import base64

import httpx
import pytest

from emotion2vec_webui.audio.signals import tone, write_audio
from emotion2vec_webui.serving.errors import HTTP_STATUS

RECOGNIZE = "/api/v1/recognize"


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> bytes:
    return write_audio(tmp_path_factory.mktemp("contract") / "c.wav", tone(0.6, 16000), 16000, "wav").read_bytes()


@pytest.fixture(scope="module")
def client(guarded_server):
    with httpx.Client(base_url=guarded_server.url, timeout=30) as c:
        yield c


def assert_error(r: httpx.Response, code: str) -> dict:
    assert r.headers.get("content-type", "").startswith("application/json"), r.text
    body = r.json()
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    assert r.status_code == HTTP_STATUS[code], (r.status_code, body)
    assert body["error"]["message"] and "Traceback" not in body["error"]["message"]
    return body


@pytest.mark.parametrize(
    "body",
    [b"[" * 100_000, b'{"audio_base64": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", b"[" * 900 + b"]" * 900],
    ids=["unclosed", "deep-valid", "under-limit"],
)
def test_deep_json_is_bad_request_not_500(client, body):
    assert_error(client.post(RECOGNIZE, content=body, headers={"content-type": "application/json"}), "bad_request")
    assert client.get("/healthz").status_code == 200


@pytest.mark.parametrize(
    "path, kwargs",
    [
        (RECOGNIZE, {"files": [("file", ("a.wav", b"RIFF")), ("file", ("b.wav", b"RIFF"))]}),  # Starlette's max_files
        ("/api/v1/similarity", {"files": [("a", ("a.wav", b"RIFF")), ("b", ("b.wav", b"R")), ("c", ("c.wav", b"R"))]}),
        (RECOGNIZE, {"content": b"--x\r\n", "headers": {"content-type": "multipart/form-data"}}),  # no boundary
        (RECOGNIZE, {"files": {"file": ("a.wav", b"RIFF")}, "data": {f"f{i}": "x" for i in range(20)}}),  # max_fields
    ],
    ids=["two-files", "three-files", "no-boundary", "many-fields"],
)
def test_multipart_errors_are_422_bad_request(client, path, kwargs):
    assert_error(client.post(path, **kwargs), "bad_request")


@pytest.mark.parametrize("method", ["DELETE", "PUT", "PATCH", "TRACE", "PROPFIND", "FOO"])
def test_any_method_gets_the_error_shape(client, method):
    body = assert_error(client.request(method, RECOGNIZE), "method_not_allowed")
    assert method in body["error"]["message"]
    assert client.request(method, RECOGNIZE).headers["allow"] == "POST"
    assert_error(client.request(method, "/api/v1/no-such-thing"), "not_found")


def test_base64_with_line_breaks_is_accepted(client, clip):
    plain = client.post(RECOGNIZE, json={"audio_base64": base64.b64encode(clip).decode()})
    assert plain.status_code == 200, plain.text
    wrapped = base64.encodebytes(clip).decode()  # 76-character lines, like `base64 clip.wav`
    assert "\n" in wrapped
    for text in (wrapped, wrapped.replace("\n", "\r\n"), " " + wrapped.replace("\n", "\n\t")):
        r = client.post(RECOGNIZE, json={"audio_base64": text})
        assert r.status_code == 200, r.text
        assert r.json()["scores"] == plain.json()["scores"]


@pytest.mark.parametrize("text", ["UklG RiQA@@", "UklGRiQAAAB", "UklGRi\u00e9QA", "UklGRi\u00a0QA"])
def test_other_characters_are_still_refused(client, text):
    assert_error(client.post(RECOGNIZE, json={"audio_base64": text}), "bad_request")
