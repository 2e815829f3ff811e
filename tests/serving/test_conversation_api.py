"""POST /api/v1/recognize with the conversation fields, against a real server (tiny model, stand-ins)."""

from __future__ import annotations

import base64

import httpx
import pytest

from tests.spec_check import check_result


@pytest.fixture(scope="module")
def server(ui_server):
    """The conversation stand-ins' server, shared with the browser tests (tests/conftest.py)."""
    return ui_server


def test_channels_with_transcript_over_multipart_and_json(server, stereo_dialogue):
    path, spans = stereo_dialogue
    data = path.read_bytes()
    with httpx.Client(base_url=server.url, timeout=300) as c:
        r = c.post("/api/v1/recognize", files={"file": ("call.wav", data, "audio/wav")},
                   data={"speakers": "channels", "transcribe": "true", "extract_embedding": "false"})  # fmt: skip
        assert r.status_code == 200, r.text
        body = r.json()
        check_result(body)
        assert {t["speaker"] for t in body["turns"]} == {"left", "right"}
        assert all(isinstance(t["text"], str) for t in body["turns"])
        for name in ("transcript.srt", "transcript.vtt", "turns.csv"):
            got = c.get(f"/api/v1/runs/{body['run_id']}/{name}")
            assert got.status_code == 200 and got.content, name
        j = c.post("/api/v1/recognize", json={"audio_base64": base64.b64encode(data).decode(), "speakers": "channels",
                                             "extract_embedding": False})  # fmt: skip
        assert j.status_code == 200, j.text
        assert [(t["speaker"], t["start_s"], t["end_s"]) for t in j.json()["turns"]] == [
            (t["speaker"], t["start_s"], t["end_s"]) for t in body["turns"]
        ]
        assert "text" not in j.json()["turns"][0]

        # Rename the first run's speakers: result.json labels and the subtitles follow; ids stay.
        run_id = body["run_id"]
        r = c.patch(f"/api/v1/runs/{run_id}/speakers", json={"names": {"left": "Agent", "right": "客户"}})
        assert r.status_code == 200, r.text
        renamed = r.json()
        check_result(renamed)
        assert {s["id"]: s["label"] for s in renamed["speakers"]} == {"left": "Agent", "right": "客户"}
        assert [t["speaker"] for t in renamed["turns"]] == [t["speaker"] for t in body["turns"]]
        assert c.get(f"/api/v1/runs/{run_id}").json()["speakers"] == renamed["speakers"]
        srt = c.get(f"/api/v1/runs/{run_id}/transcript.srt").text
        assert "[Agent · " in srt and "[客户 · " in srt and "[left · " not in srt
        for bad, status, code in (
            ({"names": {"nobody": "X"}}, 422, "bad_request"),
            ({"names": "left=Agent"}, 422, "bad_request"),
        ):
            r = c.patch(f"/api/v1/runs/{run_id}/speakers", json=bad)
            assert r.status_code == status and r.json()["error"]["code"] == code, r.text
        r = c.patch(f"/api/v1/runs/{j.json()['run_id']}/speakers", json={"names": {"left": ""}})
        assert r.status_code == 200 and {s["label"] for s in r.json()["speakers"]} == {"left", "right"}
        r = c.patch("/api/v1/runs/outputs_20000101_000000/speakers", json={"names": {}})
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_bad_conversation_fields_are_bad_request(server):
    with httpx.Client(base_url=server.url, timeout=60) as c:
        for fields in ({"speakers": "everyone"}, {"speakers": "auto", "num_speakers": "0"}):
            r = c.post("/api/v1/recognize", files={"file": ("x.wav", b"RIFF", "audio/wav")}, data=fields)
            assert r.status_code == 422 and r.json()["error"]["code"] == "bad_request", r.text
        r = c.post("/api/v1/recognize", json={"audio_base64": "UklGRg==", "speakers": "everyone"})
        assert r.status_code == 422 and r.json()["error"]["code"] == "bad_request"
