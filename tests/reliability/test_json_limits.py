"""JSON nested 1,000 deep, a body of a million values, lone surrogates: typed 422s on every route, never a 500
(a body over its byte cap: 413).

Issue 26 found ``POST /api/v1/heads`` with JSON nested 1,000 deep, and a lone
surrogate (``"\\ud800"``) in a speaker name or in ``audio_path``, answered
``500 internal_error``. Every JSON route now reads its body through
``serving/json_body.py``; multipart fields are checked the same way (a
``charset=utf-7`` part decodes ``+2AA-`` to a lone surrogate), and query and
path parameters cannot carry one (percent-decoding replaces bad UTF-8).
"""

from __future__ import annotations

import json

import httpx
import pytest

from emotion2vec_webui.audio.signals import tone, write_audio

DEEP = "[" * 1000 + "]" * 1000


@pytest.fixture(scope="module")
def speakers_run(reliability_server, tmp_path_factory) -> str:
    """A conversation run (two channels, so two speakers) to rename."""
    stereo = tone(1.0, 16000, channels=2)
    clip = write_audio(tmp_path_factory.mktemp("stereo") / "call.wav", stereo, 16000, "wav").read_bytes()
    r = httpx.post(reliability_server.url + "/api/v1/recognize", files={"file": ("call.wav", clip)},
                   data={"speakers": "channels", "extract_embedding": "false"}, timeout=60)  # fmt: skip
    assert r.status_code == 200, r.text
    assert {s["id"] for s in r.json()["speakers"]} == {"left", "right"}
    return r.json()["run_id"]


def _assert_bad_request(r: httpx.Response, what) -> None:
    assert r.status_code == 422, (what, r.status_code, r.text[:300])
    error = r.json()["error"]
    assert error["code"] == "bad_request" and " / " in error["message"], (what, error)


def _send(srv, method: str, path: str, body: str | bytes) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    content = body if isinstance(body, bytes) else body.encode("utf-8")
    return httpx.request(method, srv.url + path, content=content, headers=headers, timeout=60)


def test_deep_and_huge_json_is_a_typed_422_on_every_json_route(reliability_server, speakers_run):
    rename = f"/api/v1/runs/{speakers_run}/speakers"
    routes = [("POST", "/api/v1/heads"), ("POST", "/api/v1/recognize"), ("PATCH", rename)]
    bodies = {
        "nested 1,000 deep": DEEP,
        "nested 1,000 deep in a field": '{"names": ' + DEEP + ', "name": ' + DEEP + "}",
        "nested 100 deep in an object": '{"a":' * 100 + "1" + "}" * 100,
        "20,000 arrays": "[" + ",".join(["[]"] * 20_000) + "]",
        "not JSON": "{'names': 1}",
        "not UTF-8": b'{"name": "\xff"}',
    }
    for method, path in routes:
        for what, body in bodies.items():
            _assert_bad_request(_send(reliability_server, method, path, body), (path, what))
    # the small routes stop reading at 64 KB: 413 file_too_large, like every body over its cap
    big = json.dumps({"names": {f"s{i}": "x" * 60 for i in range(2000)}})
    for method, path in (("PATCH", rename), ("POST", "/api/v1/heads")):
        r = _send(reliability_server, method, path, big)
        assert r.status_code == 413 and r.json()["error"]["code"] == "file_too_large", (path, r.status_code, r.text)
    assert httpx.get(reliability_server.url + "/readyz").status_code == 200


def test_lone_surrogates_are_a_typed_422_wherever_they_enter(reliability_server, speakers_run):
    srv = reliability_server
    write_audio(srv.inputs / "ok.wav", tone(1.0, 16000), 16000, "wav")
    rename = f"/api/v1/runs/{speakers_run}/speakers"
    cases = [
        ("PATCH", rename, '{"names": {"left": "\\ud800"}}'),
        ("PATCH", rename, '{"names": {"left": "Agent \\udfff B"}}'),
        ("PATCH", rename, '{"names": {"\\ud800": "x"}}'),
        ("POST", "/api/v1/recognize", '{"audio_path": "\\ud800.wav"}'),
        ("POST", "/api/v1/recognize", '{"audio_path": "ok.wav", "asr_model": "\\ud800", "speakers": "channels", '
                                      '"transcribe": true}'),  # fmt: skip
        ("POST", "/api/v1/recognize", '{"audio_path": "ok.wav", "head": "\\ud800"}'),
        ("POST", "/api/v1/recognize", '{"audio_path": "ok.wav", "channels": "\\ud800"}'),
        ("POST", "/api/v1/heads", '{"name": "h", "data_path": "\\ud800"}'),
        ("POST", "/api/v1/heads", '{"name": "h", "data_path": "x", "labels_zh": {"\\ud800": "a"}}'),
    ]
    for method, path, body in cases:
        _assert_bad_request(_send(srv, method, path, body), body)
    # a valid pair (an emoji) is fine: only lone halves are refused
    r = _send(srv, "PATCH", rename, '{"names": {"left": "\\ud83d\\ude00 Agent"}}')
    assert r.status_code == 200 and r.json()["speakers"][0]["label"].startswith("\U0001f600"), r.text

    # multipart fields decoded as UTF-7: "+2AA-" is a lone U+D800
    clip = (srv.inputs / "ok.wav").read_bytes()
    for field in ("channels", "asr_model", "head", "granularity"):
        boundary = "b0undary"
        body = (f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"\r\n\r\n+2AA-\r\n'
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="ok.wav"\r\n'
                "Content-Type: audio/wav\r\n\r\n").encode() + clip + f"\r\n--{boundary}--\r\n".encode()  # fmt: skip
        headers = {"Content-Type": f"multipart/form-data; charset=utf-7; boundary={boundary}"}
        r = httpx.post(srv.url + "/api/v1/recognize", content=body, headers=headers, timeout=60)
        _assert_bad_request(r, field)

    # query and path parameters: percent-decoding never yields a surrogate
    r = httpx.get(srv.url + "/api/v1/runs", params={"batch": "\ud800".encode("utf-8", "surrogatepass")})
    assert r.status_code == 200, r.text
    r = httpx.get(srv.url + "/api/v1/runs/%ED%A0%80/result.json")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = httpx.delete(srv.url + "/api/v1/heads/%ED%A0%80")
    assert 400 <= r.status_code < 500, r.text
    assert httpx.get(srv.url + "/readyz").status_code == 200
