"""``encoding: "opus"`` on /api/v1/stream: Ogg or WebM pages decoded as they come, in a guarded child process.

Files made by ffmpeg (libopus) are streamed in small chunks that cut pages
anywhere; the take must be the same audio, and the same result, as decoding
the whole file the way an upload is decoded. In-process (FastAPI's
TestClient over the stream router and a real service on the tiny model).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from emotion2vec_webui.audio.decode import decode_audio
from emotion2vec_webui.audio.stream_decode import StreamDecoder
from emotion2vec_webui.runs.schema import validate_result
from emotion2vec_webui.serving import stream
from tests.server_util import stream_client

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg makes the Opus files")


def _opus(path: Path, seconds: float = 4.0, channels: int = 1) -> Path:
    """A tone sweep with a pause, encoded by libopus (ffmpeg picks Ogg or WebM from the name)."""
    source = f"aevalsrc=0.4*sin(2*PI*(200+150*t)*t)*gt(mod(t\\,2)\\,0.4):s=48000:d={seconds}"
    subprocess.run(["ffmpeg", "-y", "-loglevel", "error", "-f", "lavfi", "-i", source, "-ac", str(channels),
                    "-c:a", "libopus", "-b:a", "48k", str(path)], check=True)  # fmt: skip
    return path


@pytest.fixture
def client(settings, engine):
    with stream_client(settings, engine) as rig:
        yield rig


def _take(test_client, data: bytes, start: dict, chunk: int = 1500) -> list[dict]:
    from starlette.websockets import WebSocketDisconnect

    messages = []
    with test_client.websocket_connect(stream.STREAM_PATH) as ws:
        ws.send_text(json.dumps({"type": "start", "encoding": "opus", **start}))
        try:
            for at in range(0, len(data), chunk):  # cuts pages anywhere
                ws.send_bytes(data[at : at + chunk])
            ws.send_text(json.dumps({"type": "stop"}))
            while True:
                messages.append(ws.receive_json())
                if messages[-1]["type"] in ("done", "error"):
                    break
        except WebSocketDisconnect:
            pass
    return messages


@pytest.mark.parametrize("container", ["ogg", "webm"])
def test_opus_pages_streamed_in_chunks_give_the_whole_files_audio_and_result(client, engine, tmp_path, container):
    test_client, service = client
    path = _opus(tmp_path / f"x.{container}")
    got = _take(test_client, path.read_bytes(), {"granularity": "utterance", "segmentation": "fixed",
                                                 "segment_ms": 1000, "interval_ms": 500})  # fmt: skip
    done = got[-1]
    assert done["type"] == "done", got
    assert [m for m in got if m["type"] == "interval"], "intervals while it streamed"
    folder = service.settings.output_dir / done["run_id"]
    result = json.loads((folder / "result.json").read_text("utf-8"))
    validate_result({**result, "run_id": done["run_id"], "files": {}})
    assert result["stream"]["encoding"] == "opus" and result["stream"]["sample_rate"] == 48000
    assert result["audio"]["original_sample_rate"] == 48000
    saved, rate = sf.read(folder / "processed_audio.wav", dtype="float32")
    whole = decode_audio(path)  # how an upload of the file is decoded
    assert rate == 16000 and abs(len(saved) - len(whole.waveform)) <= 1
    n = min(len(saved), len(whole.waveform))
    assert np.max(np.abs(saved[:n] - whole.waveform[:n])) <= 2 / 32768  # the 16-bit grid, at most 2 steps apart
    expected = engine.recognize(whole.waveform, "utterance")
    for key, value in expected.scores.items():
        assert result["scores"][key] == pytest.approx(value, abs=2e-3)


def test_a_stream_that_is_not_opus_in_ogg_or_webm_is_refused(client, tmp_path):
    test_client, _ = client
    got = _take(test_client, b"\x00" * 3000, {})
    assert got[-1]["type"] == "error" and got[-1]["code"] == "bad_request" and " / " in got[-1]["message"]
    flac = tmp_path / "x.ogg"
    subprocess.run(["ffmpeg", "-y", "-loglevel", "error", "-f", "lavfi", "-i", "sine=d=2", "-c:a", "flac",
                    str(flac)], check=True)  # fmt: skip  # Ogg, but FLAC inside
    got = _take(test_client, flac.read_bytes(), {})
    assert got[-1]["type"] == "error" and got[-1]["code"] == "audio_undecodable", got[-1]
    stereo = _opus(tmp_path / "stereo.ogg", seconds=2.0, channels=2)
    got = _take(test_client, stereo.read_bytes(), {"channels": 1})
    assert got[-1]["type"] == "error" and got[-1]["code"] == "bad_request" and "channel" in got[-1]["message"]


def test_the_child_decoder_is_bounded_and_its_failure_typed():
    decoder = StreamDecoder("ogg", 10)
    decoder.write(b"OggS" + bytes(range(256)) * 8)  # a page header, then nonsense
    with pytest.raises(Exception) as err:
        decoder.close()
    assert getattr(err.value, "code", "") == "audio_undecodable" and " / " in str(err.value)


def test_the_stream_command_sends_an_opus_file_as_it_is_stored_paced_by_its_length(tmp_path):
    from emotion2vec_webui.cli.stream import opus_frames

    path = _opus(tmp_path / "x.webm", seconds=3.0)
    fields, frames, per_second = opus_frames(path, 100)
    assert fields == {"sample_rate": 48000, "encoding": "opus", "channels": 1}
    pieces = list(frames)
    assert b"".join(pieces) == path.read_bytes() and len(pieces) >= 25  # about 100 ms of audio each
    assert per_second == pytest.approx(path.stat().st_size / 3.0, rel=0.05)
    wav = tmp_path / "x.wav"
    sf.write(wav, np.zeros(16000, np.float32), 16000)
    assert opus_frames(wav, 100) is None  # anything else goes the PCM way
