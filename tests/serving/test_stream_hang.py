"""A stream whose model stops answering mid-take: a typed ``error``, the audio kept, never a hung socket.

In-process (FastAPI's TestClient over the stream router and a real service),
with a stand-in engine that blocks its caller — the inference worker — once
told to (a hung worker; one that died never answers either). The take's model
calls wait ``INFER_TIMEOUT_S`` (shortened here), then the client gets
``model_unavailable`` and the audio it sent is kept as a WAV in
``incomplete_takes/``, sample for sample.

The patience for a full inference queue (``UTTERANCE_PATIENCE_S``, 30 s;
``FINAL_PATIENCE_S``, 120 s) is left at its shipped values: it bounds how long a
call may wait to be *accepted*, and the timeout runs from acceptance, so a hung
model is told after the timeout, never after timeout + patience (which took 32 s
here for an utterance's call, and could take 122 s for the whole take's). Each
take must therefore end well within those patiences (``_in_time``'s bound).
"""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import soundfile as sf

from emotion2vec_webui.runs.live import live_stream
from emotion2vec_webui.serving import stream
from tests.server_util import stream_client


class BlockingEngine:
    """The tiny model's engine, whose every call blocks while ``hung`` is set (until ``release``)."""

    def __init__(self, engine) -> None:
        self._engine = engine
        self.hung = threading.Event()
        self.release = threading.Event()

    def __getattr__(self, name):
        return getattr(self._engine, name)

    def _wait(self) -> None:
        if self.hung.is_set():
            self.release.wait(120)

    def recognize(self, *args, **kwargs):
        self._wait()
        return self._engine.recognize(*args, **kwargs)

    def features_batch(self, *args, **kwargs):
        self._wait()
        return self._engine.features_batch(*args, **kwargs)


@pytest.fixture
def rig(settings, engine, monkeypatch):
    monkeypatch.setattr(live_stream, "INFER_TIMEOUT_S", 2.0)
    blocking = BlockingEngine(engine)
    with stream_client(settings, blocking) as (client, service):
        try:
            yield client, service, blocking
        finally:
            blocking.release.set()


def _tone(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * 16000)) / 16000
    return (0.3 * np.sin(2 * np.pi * 330 * t) * 32767).astype("<i2")


def _talk(client, pcm: np.ndarray, hang_after: int | None, engine: BlockingEngine) -> tuple[list[dict], int | None]:
    """Stream ``pcm`` in 0.1 s frames (the engine hangs after ``hang_after`` frames, or at stop), stop, read on."""
    from starlette.websockets import WebSocketDisconnect

    got, code = [], None
    with client.websocket_connect(stream.STREAM_PATH) as ws:
        ws.send_text(json.dumps({"type": "start", "sample_rate": 16000, "segmentation": "fixed", "segment_ms": 1000}))
        try:
            for i, at in enumerate(range(0, len(pcm), 1600)):
                if i == hang_after:
                    engine.hung.set()
                ws.send_bytes(pcm[at : at + 1600].tobytes())
            engine.hung.set()  # at the latest before stop: the whole take's call hangs
            ws.send_text(json.dumps({"type": "stop"}))
            while True:
                got.append(ws.receive_json())
        except WebSocketDisconnect as exc:
            code = exc.code
    return got, code


TOLD_WITHIN_S = 25.0  # the timeouts (2 s a call, the take's per window) and the start, far below a patience (30 s)


def _in_time(fn, timeout: float = TOLD_WITHIN_S):
    """Run ``fn`` on a thread; fail (rather than hang the suite) when it has not returned within ``timeout``."""
    out: list = []
    thread = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"the socket hung for {timeout} s"
    return out[0]


def test_a_model_that_hangs_mid_take_ends_it_with_a_typed_error_and_keeps_the_audio(rig, settings):
    client, service, engine = rig
    pcm = _tone(3.0)
    got, code = _in_time(lambda: _talk(client, pcm, hang_after=10, engine=engine))
    assert got and got[-1]["type"] == "error", got
    error = got[-1]
    assert error["code"] == "model_unavailable" and " / " in error["message"] and code == 1013
    assert "incomplete_takes/" in error["message"] and str(settings.output_dir) not in error["message"]
    assert not [m for m in got if m["type"] == "done"]
    kept = list((settings.output_dir / "incomplete_takes").glob("stream_*.wav"))
    assert len(kept) == 1
    audio, rate = sf.read(kept[0], dtype="int16")
    assert rate == 16000 and np.array_equal(audio, pcm)  # every sample sent, in order


def test_a_model_that_hangs_at_the_end_still_answers_the_client(rig, settings):
    client, service, engine = rig
    pcm = _tone(1.5)
    got, code = _in_time(lambda: _talk(client, pcm, hang_after=None, engine=engine))
    assert got[-1]["type"] == "error" and got[-1]["code"] == "model_unavailable", got
    assert len(list((settings.output_dir / "incomplete_takes").glob("stream_*.wav"))) == 1
