"""The Live tab's way into /api/v1/stream on a server with a token: a single-use ticket, never the token.

In-process (FastAPI's TestClient, the stream router over a real service on
the tiny model): a ticket opens one socket and is then used up; a guessed,
reused or expired one is ``unauthorized`` and counts as a failed sign-in; a
socket opened with a ticket is the Live tab's take (``audio.container``
``microphone``: run kind ``live``). A start message's calibration is checked
before any audio (the REST code for an unknown one) and named by the run.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from emotion2vec_webui.runs.schema import validate_result
from emotion2vec_webui.serving import stream
from tests.server_util import stream_client

TOKEN = "the-api-token"


@pytest.fixture
def client(settings, engine):
    settings = dataclasses.replace(settings, api_token=TOKEN, auth_failures_per_min=4,
                                   heads_dir=settings.output_dir.parent / "heads")  # fmt: skip
    with stream_client(settings, engine) as rig:
        yield rig


def _take(test_client, query: str, seconds: float = 1.5, **start) -> list[dict]:
    """Open the socket, send ``seconds`` of a tone at 16 kHz, stop; every message until the server closes.
    ``start``: more fields of the start message."""
    from starlette.websockets import WebSocketDisconnect

    messages = []
    with test_client.websocket_connect(stream.STREAM_PATH + query) as ws:
        ws.send_text(json.dumps({"type": "start", "sample_rate": 16000, "source_name": "microphone_live.wav",
                                 **start}))  # fmt: skip
        t = np.arange(int(seconds * 16000)) / 16000
        pcm = (0.3 * np.sin(2 * np.pi * 220 * t) * 32767).astype("<i2")
        try:
            for i in range(0, len(pcm), 1600):
                ws.send_bytes(pcm[i : i + 1600].tobytes())
            ws.send_text(json.dumps({"type": "stop"}))
            while True:
                messages.append(ws.receive_json())
                if messages[-1]["type"] in ("done", "error"):
                    break
        except WebSocketDisconnect:
            pass
    return messages


def test_a_ticket_opens_one_take_then_is_used_up(client):
    test_client, service = client
    ticket = service.stream_tickets.issue()
    got = _take(test_client, f"?ticket={ticket}")
    done = got[-1]
    assert done["type"] == "done" and done["run_id"], got
    result = json.loads((service.settings.output_dir / done["run_id"] / "result.json").read_text("utf-8"))
    assert result["audio"]["container"] == "microphone" and result["stream"]["received_s"] == 1.5
    validate_result({**result, "run_id": done["run_id"], "files": {}})  # the stream block too
    again = _take(test_client, f"?ticket={ticket}")
    assert again[-1]["type"] == "error" and again[-1]["code"] == "unauthorized" and " / " in again[-1]["message"]
    assert service.stream_tickets.outstanding() == 0


def test_without_a_ticket_or_token_or_with_a_guessed_one_the_socket_is_refused(client):
    test_client, service = client
    service.stream_tickets.issue()
    for query in ("", "?ticket=", "?ticket=guess", f"?ticket={'x' * 500}"):
        got = _take(test_client, query, seconds=0.2)
        assert got and got[0]["type"] == "error" and got[0]["code"] == "unauthorized", (query, got)
    assert service.stream_tickets.outstanding() == 1  # a wrong guess uses nothing up
    # the failures count against the address like wrong tokens: past the budget even a good ticket waits
    got = _take(test_client, f"?ticket={service.stream_tickets.issue()}", seconds=0.2)
    assert got[0]["code"] == "rate_limited"


def test_an_expired_ticket_is_refused(client):
    test_client, service = client
    service.stream_tickets.lifetime_s = 0.0
    got = _take(test_client, f"?ticket={service.stream_tickets.issue()}", seconds=0.2)
    assert got[0]["type"] == "error" and got[0]["code"] == "unauthorized"


def test_a_calibration_in_start_is_checked_before_audio_and_named_by_the_run(client, tiny_model_dir):
    from emotion2vec_webui.engine.calibration import NINE, Calibration
    from emotion2vec_webui.labels import EMOTIONS
    from emotion2vec_webui.runs.stores.calibration_store import write_calibration
    from emotion2vec_webui.runs.stores.head_store import checkpoint_sha256

    test_client, service = client
    got = _take(test_client, f"?ticket={service.stream_tickets.issue()}", seconds=0.5, calibration="sharp")
    assert got[0]["type"] == "error" and got[0]["code"] == "not_found" and " / " in got[0]["message"], got
    assert len(got) == 1 and not list(service.settings.output_dir.glob("**/result.json"))  # refused before audio
    write_calibration(service.settings.heads_dir, Calibration("sharp", NINE, tuple(EMOTIONS), 0.5, np.zeros(9),
                                                              checkpoint_sha256(tiny_model_dir)), b"", "test")  # fmt: skip
    got = _take(test_client, f"?ticket={service.stream_tickets.issue()}", calibration="sharp", min_confidence=1.0)
    done = got[-1]
    assert done["type"] == "done" and done["uncertain"] is True, got
    told = [m for m in got if m["type"] in ("interval", "utterance_end") and m["scores"]]
    assert told and all(m["uncertain"] is True for m in told)  # nothing is sure at a threshold of 1
    result = json.loads((service.settings.output_dir / done["run_id"] / "result.json").read_text("utf-8"))
    validate_result({**result, "run_id": done["run_id"], "files": {}})
    assert result["calibration"]["name"] == "sharp" and result["min_confidence"] == 1.0 and result["uncertain"]
