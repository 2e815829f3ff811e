"""/api/v1/stream on a real server: a take at real time, the CLI, and every way a client can get it wrong.

``token_server`` (E2V_API_TOKEN set; stream limits at their defaults: 1x real
time with 10 s of lead, 10 s idle) takes the streams; ``reliability_server``
(no token, 5 s of audio at most) the duration limit. The 60 s take at real
time runs on a server of its own with the token server's settings, on a thread
started with the session's early servers (``BackgroundTake``): its minute of
real time passes beside the other tests. Every message the server sends is
checked against its shipped JSON Schema.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf

from emotion2vec_webui.audio.decode import decode_audio
from emotion2vec_webui.audio.signals import espeak_available, noise, speech, tone, write_audio
from emotion2vec_webui.cli.stream import file_frames, play, ws_url
from emotion2vec_webui.engine.vad import speech_segments
from emotion2vec_webui.runs.schema import validate_result
from tests.early_servers import plan
from tests.runs.test_live_stream import check_message

SENTENCES = (
    "Good morning. I am really happy to see you today.",
    "Where have you been all this time? I was worried.",
    "The train leaves at seven, so please do not be late.",
    "That was the best concert I have heard in years.",
    "Nobody told me the meeting had been moved to Friday.",
)


class Take:
    """One connection: the messages received (with their arrival times), how it closed, when each frame left."""

    def __init__(self, srv, start: dict | bytes | str, token: str | None = None, header: bool = True) -> None:
        from websockets.sync.client import connect

        token = getattr(srv, "token", "") if token is None else token
        headers = {"Authorization": f"Bearer {token}"} if header and token else None
        self.ws = connect(ws_url(srv.url), additional_headers=headers, open_timeout=30, max_size=2**22)
        self.messages: list[dict] = []
        self.arrived: list[float] = []
        self.sent: list[tuple[float, float]] = []  # (audio seconds sent so far, when)
        self.close_code: int | None = None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.send(start if isinstance(start, (bytes, str)) else json.dumps(start))

    def _read(self) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            for raw in self.ws:
                self.arrived.append(time.monotonic())
                message = json.loads(raw)
                check_message(message)
                self.messages.append(message)
        except ConnectionClosed:
            pass
        self.close_code = self.ws.close_code

    def send(self, data) -> bool:
        from websockets.exceptions import ConnectionClosed

        try:
            self.ws.send(data)
            return True
        except ConnectionClosed:
            return False

    def play(self, frames, bytes_per_second: float, speed: float = 1.0) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            play(self.ws, frames, bytes_per_second, speed, lambda audio, t: self.sent.append((audio, t)))
        except ConnectionClosed:
            pass

    def finish(self, stop: bool = True, timeout: float = 120) -> Take:
        if stop:
            self.send(json.dumps({"type": "stop"}))
        self._reader.join(timeout)
        assert not self._reader.is_alive(), f"no end after {timeout} s: {self.messages[-3:]}"
        return self

    def of(self, kind: str) -> list[dict]:
        return [m for m in self.messages if m["type"] == kind]

    @property
    def error(self) -> dict | None:
        errors = self.of("error")
        return errors[0] if errors else None


def _pcm(samples: np.ndarray) -> bytes:
    return np.round(np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()


def _assert_error(take: Take, code: str, srv) -> None:
    take.finish(stop=False)
    assert take.error is not None and take.error["code"] == code, take.messages
    assert " / " in take.error["message"]
    assert take.messages[-1]["type"] == "error" and not take.of("done")
    assert take.close_code in (1008, 1013), take.close_code
    assert httpx.get(srv.url + "/healthz", timeout=10).status_code == 200  # the server is unaffected


def make_talk_60s(folder: Path) -> Path:
    """60 s of 44.1 kHz stereo 16-bit: sentences with pauses (tone bursts without espeak-ng) over faint noise."""
    rate, total = 44100, 60 * 44100
    out = 0.01 * noise(60.0, rate, seed=5)[:, 0]
    at = int(1.5 * rate)
    pieces = [speech(s) for s in SENTENCES] if espeak_available() else [(tone(2.5, 22050)[:, 0], 22050)] * 5
    import soxr

    while at < total - 5 * rate:
        for data, r in pieces:
            voice = soxr.resample(data, r, rate)[: total - at - rate]
            out[at : at + len(voice)] += 0.5 * voice / (np.max(np.abs(voice)) + 1e-9)
            at += len(voice) + int(2.0 * rate)
            if at >= total - 5 * rate:
                break
    stereo = np.stack([out, 0.7 * out], axis=1)
    return write_audio(folder / "talk60.wav", stereo, rate, "wav")


class BackgroundTake:
    """The 60 s take, played at real time on a thread of its own to a server of its own (the token server's
    settings), so that its minute of waiting runs beside the rest of the suite: started early
    (tests/early_servers.py), it has ended by the time its test asks for :meth:`result`."""

    def __init__(self, srv, folder: Path) -> None:
        self.srv, self.folder = srv, folder
        self.talk: Path | None = None
        self.fields: dict | None = None
        self.take: Take | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="e2v-take-60s", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.talk = make_talk_60s(self.folder)
            self.fields, frames = file_frames(self.talk, 100)
            take = Take(self.srv, {"type": "start", **self.fields, "source_name": "talk60.wav"})
            take.play(frames, 44100 * 2 * 2, speed=1.0)
            self.take = take.finish()
        except BaseException as exc:  # raised in the test
            self._error = exc

    def result(self, timeout: float = 300) -> BackgroundTake:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"the 60 s take has not ended after {timeout} s more"
        if self._error is not None:
            raise self._error
        return self


@plan("take_60s", lead=True)
def _plan_take_60s(request):
    from tests.server_util import TOKEN_API_SETTINGS

    _, start_server = request.getfixturevalue("shared_server").plan(name="take-60s", **TOKEN_API_SETTINGS)
    folder = request.getfixturevalue("tmp_path_factory").mktemp("stream")
    return "take_60s", lambda early: BackgroundTake(start_server(early), folder)


@pytest.fixture(scope="module")
def take_60s(early_servers, request) -> BackgroundTake:
    """The 60 s take of :class:`BackgroundTake`, started early or now."""
    return early_servers.planned("take_60s", request)


@pytest.mark.slow
def test_a_60_s_take_at_real_time_gives_intervals_on_time_utterances_at_the_speech_and_the_same_audio(take_60s):
    background = take_60s.result()
    take, talk_60s, srv = background.take, background.talk, background.srv
    assert background.fields == {"sample_rate": 44100, "encoding": "pcm_s16le", "channels": 2}
    assert take.error is None, take.error
    done = take.messages[-1]
    assert done["type"] == "done" and take.close_code == 1000

    # an interval every second of audio (1000 ms), kept current: each of the 60 is sent or (when the machine is
    # too slow) skipped and said so; the newest index keeps pace with the clock (±10 %) either way
    intervals = take.of("interval")
    arrived = [t for t, m in zip(take.arrived, take.messages, strict=True) if m["type"] == "interval"]
    skipped = sum(m["skipped"] for m in take.of("warning") if m["reason"] == "behind")
    assert len(intervals) + done["skipped_intervals"] == 60 and skipped == done["skipped_intervals"]
    assert len(intervals) >= 20, f"{len(intervals)} intervals sent, {skipped} skipped"
    pace = (arrived[-1] - arrived[0]) / (intervals[-1]["index"] - intervals[0]["index"])
    assert 0.9 <= pace <= 1.1, f"an interval every {pace:.3f} s ({len(intervals)} sent, {skipped} skipped)"
    assert all(m["end_s"] == m["index"] * 1.0 and m["start_s"] == max(0.0, m["end_s"] - 3.0) for m in intervals)
    sent_at = dict(take.sent)  # no message before its audio was sent
    for message, t in zip(intervals, arrived, strict=False):
        first_sent = min(when for audio, when in sent_at.items() if audio >= message["end_s"] - 1e-6)
        assert t >= first_sent

    # utterances where the speech is: the offline speech segments of the same decoded audio
    decoded = decode_audio(talk_60s).waveform
    offline = speech_segments(decoded)
    starts, ends = take.of("utterance_start"), take.of("utterance_end")
    assert len(offline) >= 5 and len(starts) == len(ends) == len(offline)
    for (s, e), start, end in zip(offline, starts, ends, strict=True):
        assert (
            start["start_s"] == end["start_s"] and abs(start["start_s"] - s) < 0.002 and abs(end["end_s"] - e) < 0.002
        )
        assert end["emotion"] and end["speaker"] is None

    # the run folder: the whole take, sample for sample what decoding the file gives
    folder = srv.root / "outputs" / done["run_id"]
    saved, rate = sf.read(folder / "processed_audio.wav", dtype="float32")
    assert rate == 16000 and np.array_equal(saved, decoded)
    result = json.loads((folder / "result.json").read_text("utf-8"))
    validate_result({**result, "run_id": done["run_id"], "files": {}})
    assert result["audio"]["original_sample_rate"] == 44100 and result["audio"]["original_channels"] == 2
    assert len(result["stream"]["intervals"]) == len(intervals) == done["intervals"]
    assert [(u["start_s"], u["end_s"]) for u in result["stream"]["utterances"]] == [
        (e["start_s"], e["end_s"]) for e in ends
    ]
    assert (folder / "frames.csv").exists() and result["frames"] is not None  # granularity frame by default


def test_the_cli_plays_a_file_faster_than_real_time_and_prints_json_and_tags(token_server, tmp_path):
    data, rate = speech(SENTENCES[0]) if espeak_available() else (tone(3.0, 22050)[:, 0], 22050)
    clip = write_audio(tmp_path / "clip.wav", np.concatenate([data, np.zeros(rate, np.float32), data]), rate, "wav")
    cmd = [sys.executable, "-m", "emotion2vec_webui", "stream", str(clip), "--url", token_server.url,
           "--token", token_server.token, "--speed", "3", "--json", "--tags", "--interval-ms", "500"]  # fmt: skip
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    for event in events:
        check_message(event)
    seconds = sf.info(str(clip)).duration
    assert time.monotonic() - t0 >= seconds / 3  # paced, not dumped
    assert events[-1]["type"] == "done" and abs(events[-1]["duration_s"] - seconds) < 0.05
    assert any(e["type"] == "interval" for e in events)
    assert all(e["tag"].startswith("[") for e in events if e["type"] == "utterance_end")
    # stdin PCM, printed for people
    pcm = _pcm(tone(2.0, 16000)[:, 0])
    proc = subprocess.run([sys.executable, "-m", "emotion2vec_webui", "stream", "-", "--url", token_server.url,
                           "--token", token_server.token, "--speed", "4", "--rate", "16000"],
                          input=pcm, capture_output=True, timeout=120)  # fmt: skip
    out = proc.stdout.decode()
    assert proc.returncode == 0 and "done: 2.0 s saved as outputs_" in out, out + proc.stderr.decode()


def test_no_token_or_a_wrong_one_is_refused_and_the_token_may_come_in_the_start_message(token_server):
    _assert_error(Take(token_server, {"type": "start"}, token=""), "unauthorized", token_server)
    _assert_error(Take(token_server, {"type": "start"}, token="wrong"), "unauthorized", token_server)
    start = {"type": "start", "token": token_server.token}
    take = Take(token_server, start, header=False)
    take.play([_pcm(tone(1.0, 16000)[:, 0])], 32000, speed=1.0)
    take.finish()
    assert take.error is None and take.messages[-1]["type"] == "done", take.messages
    wrong = Take(token_server, {**start, "token": "nope"}, header=False)
    _assert_error(wrong, "unauthorized", token_server)


@pytest.mark.parametrize(
    "start",
    [
        "not json", b"\x00\x01audio first", {"type": "stop"}, {"type": "start", "sample_rate": 7999},
        {"type": "start", "encoding": "mp3"}, {"type": "start", "rate": 16000}, {"type": "start", "channels": 99},
        '{"type": "start", "source_name": "' + "x" * 70000 + '"}',
    ],
)  # fmt: skip
def test_a_bad_start_message_is_a_typed_error(token_server, start):
    _assert_error(Take(token_server, start), "bad_request", token_server)


def test_frames_in_the_wrong_encoding_too_large_or_too_fast_are_typed_errors(token_server):
    start = {"type": "start", "sample_rate": 16000, "encoding": "f32le"}
    take = Take(token_server, start)
    take.send(b"\x00" * 6)  # not whole float32 samples
    _assert_error(take, "bad_request", token_server)
    take = Take(token_server, start)
    take.send(np.array([0.1, np.inf], "<f4").tobytes())
    _assert_error(take, "audio_nonfinite", token_server)
    take = Take(token_server, {"type": "start", "sample_rate": 16000})
    take.send(_pcm(tone(2.0, 16000)[:, 0]))  # 2 s in one frame: 1 s at most
    _assert_error(take, "file_too_large", token_server)
    take = Take(token_server, {"type": "start", "sample_rate": 16000})
    t0 = time.monotonic()
    take.play([_pcm(noise(0.1, 16000)[:, 0])] * 300, 32000, speed=1000.0)  # 30 s of audio as fast as it goes
    _assert_error(take, "rate_limited", token_server)
    assert time.monotonic() - t0 < 10
    take = Take(token_server, {"type": "start", "sample_rate": 16000})
    take.send(json.dumps({"type": "start"}))  # a second start
    _assert_error(take, "bad_request", token_server)
    # and the server still takes a good stream
    take = Take(token_server, {"type": "start", "sample_rate": 16000})
    take.play([_pcm(tone(1.0, 16000)[:, 0])], 32000)
    assert take.finish().messages[-1]["type"] == "done"


def test_a_take_past_the_duration_limit_ends_there_and_is_saved(reliability_server):
    take = Take(reliability_server, {"type": "start", "sample_rate": 16000})
    take.play([_pcm(noise(0.5, 16000)[:, 0])] * 14, 32000, speed=4.0)  # 7 s; the server keeps 5
    take.finish()
    reasons = [m["reason"] for m in take.of("warning")]
    assert reasons.count("limit") == 1 and "idle" not in reasons, reasons  # ("behind" may come too, at 4x)
    done = take.messages[-1]
    assert done["type"] == "done" and done["duration_s"] == 5.0, take.messages


def _doc_block(language: str, starts: str) -> str:
    text = (Path(__file__).resolve().parents[2] / "docs" / "streaming.md").read_text("utf-8")
    blocks = [b.split("\n", 1)[1] for b in text.split("```")[1::2] if b.startswith(language)]
    return next(b for b in blocks if b.lstrip().startswith(starts))


def test_the_python_client_in_the_docs_runs(token_server, tmp_path):
    code = _doc_block("python", '"""Play a WAV file')
    assert len(code.strip().splitlines()) <= 35
    url = ws_url(token_server.url)
    code = code.replace('"ws://127.0.0.1:7860/api/v1/stream", None', f'"{url}", "{token_server.token}"')
    (tmp_path / "client.py").write_text(code, "utf-8")
    data, rate = speech(SENTENCES[1]) if espeak_available() else (tone(3.0, 22050)[:, 0], 22050)
    clip = write_audio(tmp_path / "clip.wav", np.concatenate([np.zeros(rate // 2, np.float32), data]), rate, "wav")
    proc = subprocess.run([sys.executable, str(tmp_path / "client.py"), str(clip)], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert any(line.startswith("[") and line.endswith(" s]") for line in lines), lines  # a tag line
    assert "'type': 'done'" in lines[-1] and "outputs_" in lines[-1]
