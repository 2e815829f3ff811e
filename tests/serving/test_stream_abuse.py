"""/api/v1/stream against a hostile client, in-process (FastAPI's TestClient over the stream router).

* Thousands of one-sample frames: each costs the server a message's work
  (~0.15 ms of the event loop in ``feed`` alone, more in the transport)
  whatever audio it holds, so the pace limit counts each frame as at least
  ``stream.MIN_FRAME_CHARGE_S`` (2.5 ms: shorter than any real client's
  frame, an AudioWorklet's 128 samples at 48 kHz being 2.67 ms). Before, 2-byte
  frames were never limited: 1.25 s of audio in 20,000 messages passed.
* Binary before ``start``, a huge ``start``, a wrong sample rate, a giant frame: one typed ``error``, closed.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time

import numpy as np
import pytest

from emotion2vec_webui.serving import stream
from tests.server_util import stream_client


@pytest.fixture
def client(settings, engine):
    # 0.1 audio seconds a second, 1 s ahead: tiny frames run out of allowance however slow this machine is
    s = dataclasses.replace(settings, stream_max_speed=0.1, stream_buffer_s=1.0, api_token=None)
    with stream_client(s, engine) as (test_client, _service):
        yield test_client


def _last(ws) -> dict:
    while True:
        message = ws.receive_json()
        if message["type"] in ("done", "error"):
            return message


def test_thousands_of_one_sample_frames_are_rate_limited(client):
    with client.websocket_connect(stream.STREAM_PATH) as ws:
        ws.send_text(json.dumps({"type": "start", "sample_rate": 16000}))
        one = np.array([100], "<i2").tobytes()
        for _ in range(2000):  # 0.125 s of audio: 2000 × 2.5 ms = 5 s of pace, far over 1 s + 0.1 × the time taken
            ws.send_bytes(one)
        ws.send_text(json.dumps({"type": "stop"}))
        last = _last(ws)
    assert last["type"] == "error" and last["code"] == "rate_limited", last
    assert "E2V_STREAM_MAX_SPEED" in last["message"] and " / " in last["message"], last


def test_frames_of_real_length_at_the_pace_are_not_limited(client):
    with client.websocket_connect(stream.STREAM_PATH) as ws:
        ws.send_text(json.dumps({"type": "start", "sample_rate": 16000}))
        frame = (300 * np.sin(np.arange(1600) * 0.05)).astype("<i2").tobytes()  # 100 ms
        for _ in range(8):  # 0.8 s: within the 1 s ahead
            ws.send_bytes(frame)
        ws.send_text(json.dumps({"type": "stop"}))
        last = _last(ws)
    assert last["type"] == "done" and abs(last["duration_s"] - 0.8) < 0.01, last


@pytest.mark.parametrize(
    ("first", "code"),
    [
        (b"\0\0" * 800, "bad_request"),  # audio before start
        (json.dumps({"type": "start", "sample_rate": 16000, "pad": "x" * 200_000}), "bad_request"),  # 200 KB
        (json.dumps({"type": "start", "sample_rate": 7}), "bad_request"),
        (json.dumps({"type": "start", "sample_rate": 10**30}), "bad_request"),
        ("[" * 5000, "bad_request"),
        (json.dumps({"type": "start", "sample_rate": "16000\ud800"}, ensure_ascii=False), "bad_request"),
    ],
)
def test_a_bad_first_message_is_one_typed_error(client, first, code):
    with client.websocket_connect(stream.STREAM_PATH) as ws:
        ws.send_bytes(first) if isinstance(first, bytes) else ws.send_text(first)
        last = _last(ws)
    assert last["type"] == "error" and last["code"] == code and " / " in last["message"], last


def test_a_giant_frame_is_file_too_large(client):
    with client.websocket_connect(stream.STREAM_PATH) as ws:
        ws.send_text(json.dumps({"type": "start", "sample_rate": 16000}))
        ws.send_bytes(b"\0\0" * 16001)  # just over 1 s
        last = _last(ws)
    assert last["type"] == "error" and last["code"] == "file_too_large", last


def test_a_silent_client_ends_its_take_after_the_idle_limit_and_an_empty_one_saves_nothing(settings, engine):
    """The idle limit at 2 s instead of its 10 s default (``E2V_STREAM_IDLE_S``): the same timer, 8 s less to wait."""
    s = dataclasses.replace(settings, stream_idle_s=2.0, api_token=None)
    with stream_client(s, engine) as (client, _service):
        with client.websocket_connect(stream.STREAM_PATH) as ws:
            ws.send_text(json.dumps({"type": "start", "sample_rate": 16000}))
            ws.send_bytes((3000 * np.sin(np.arange(16000) * 0.1)).astype("<i2").tobytes())  # 1 s, then nothing
            t0 = time.monotonic()
            watchdog = threading.Timer(30, ws.close)  # a server that never ends the take fails here, not hangs
            watchdog.start()
            try:
                messages = [ws.receive_json()]
                while messages[-1]["type"] not in ("done", "error"):
                    messages.append(ws.receive_json())
            finally:
                watchdog.cancel()
        waited = time.monotonic() - t0
        assert 2.0 <= waited <= 20, waited  # the server ends the take, not the client
        done = messages[-1]
        assert done["type"] == "done" and abs(done["duration_s"] - 1.0) < 0.01, messages
        assert [m["reason"] for m in messages if m["type"] == "warning"] == ["idle"]
        assert any("E2V_STREAM_IDLE_S" in w and " / " in w for w in done["warnings"])
        runs = {p.name for p in s.output_dir.iterdir() if p.is_dir() and not p.name.startswith(".")}
        assert runs == {done["run_id"]}
        with client.websocket_connect(stream.STREAM_PATH) as ws:  # started, stopped, no audio: nothing saved
            ws.send_text(json.dumps({"type": "start", "sample_rate": 16000}))
            ws.send_text(json.dumps({"type": "stop"}))
            last = _last(ws)
        assert last["type"] == "error" and last["code"] == "audio_empty" and " / " in last["message"], last
        assert {p.name for p in s.output_dir.iterdir() if p.is_dir() and not p.name.startswith(".")} == runs
