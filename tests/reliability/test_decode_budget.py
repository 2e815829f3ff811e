"""Fair use of the decoders (issue 26, items 2 and 11).

* Decoding is budgeted on input samples (rate × channels × seconds): no more
  than ``E2V_MAX_DURATION_S`` of 48 kHz stereo would cost. A file whose
  container declares more is refused before a sample is decoded; one that
  declares nothing is stopped once it has decoded its budget.
* A request waits a bounded time (``E2V_DECODE_WAIT_S``) for a free decoder,
  then gets ``503 overloaded`` with ``Retry-After``.
* A worker that dies at its memory limit (FFmpeg segfaults on some failed
  allocations) is ``422 audio_too_large_decoded``, not "the decoder crashed";
  a limit too small to decode one second is refused at start.

The hostile files are those of the attack: silent 8-channel 192 kHz FLACs of
900 s, ~1.4 MB each (``hostile_audio.silent_flac``), and a valid MP4 with 300
AC-3 streams that needs ~200 MB to open.
"""

from __future__ import annotations

import io
import statistics
import threading
import time

import httpx
import numpy as np
import pytest

from emotion2vec_webui.audio import readers
from emotion2vec_webui.audio.decode import decode_audio
from emotion2vec_webui.audio.decoder_pool import _TEST_HOOK_ENV, DecoderPool, PoolConfig
from emotion2vec_webui.audio.format import AudioLimits
from emotion2vec_webui.audio.signals import tone, write_audio
from emotion2vec_webui.errors import AudioError, E2VError
from tests.reliability.conftest import DECODE_TIMEOUT_S
from tests.reliability.hostile_audio import silent_flac

BUDGET = int(600 * 48000 * 2)  # input samples the default E2V_MAX_DURATION_S allows


@pytest.fixture(scope="module")
def hostile() -> bytes:
    return silent_flac(900)  # declares its 900 s in STREAMINFO


@pytest.fixture(scope="module")
def hostile_undeclared() -> bytes:
    return silent_flac(900, declare_length=False)


@pytest.fixture(scope="module")
def hostile_mka(hostile) -> bytes:
    """The same FLAC frames in Matroska (read by PyAV, whose container declares 900 s)."""
    import av

    src = av.open(io.BytesIO(hostile), format="flac")
    buf = io.BytesIO()
    out = av.open(buf, "w", format="matroska")
    stream = out.add_stream_from_template(src.streams.audio[0])
    for packet in src.demux(src.streams.audio[0]):
        if packet.dts is not None:
            packet.stream = stream
            out.mux(packet)
    out.close()
    src.close()
    return buf.getvalue()


@pytest.fixture(scope="module")
def many_streams_mp4() -> bytes:
    """A valid MP4 with 300 AC-3 streams of 0.3 s: FFmpeg opens a decoder per stream (~200 MB in all)."""
    import av

    rate = 48000
    coded = io.BytesIO()
    with av.open(coded, "w", format="ac3") as out:
        stream = out.add_stream("ac3", rate=rate, layout="stereo")
        x = (0.1 * np.sin(np.arange(int(0.3 * rate)) / 10)).astype(np.float32)
        frame = av.AudioFrame.from_ndarray(np.stack([x, x]), format="fltp", layout="stereo")
        frame.sample_rate = rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    src = av.open(io.BytesIO(coded.getvalue()), format="ac3")
    packets = [p for p in src.demux(src.streams.audio[0]) if p.dts is not None]
    buf = io.BytesIO()
    out = av.open(buf, "w", format="mp4")
    streams = [out.add_stream_from_template(src.streams.audio[0]) for _ in range(300)]
    for p in packets:
        for s in streams:
            q = av.Packet(bytes(p))
            q.pts, q.dts, q.time_base, q.stream = p.pts, p.dts, p.time_base, s
            out.mux(q)
    out.close()
    src.close()
    return buf.getvalue()


@pytest.fixture
def counted(monkeypatch) -> list[int]:
    """Input samples (frames × channels) handed to the mono mix, block by block."""
    seen: list[int] = []
    add = readers.MonoSink.add

    def counting(self, block):
        seen.append(int(block.shape[0]) * self.channels)
        return add(self, block)

    monkeypatch.setattr(readers.MonoSink, "add", counting)
    return seen


def _refused(data: bytes, name: str, limits: AudioLimits | None = None) -> tuple[AudioError, float]:
    t = time.perf_counter()
    with pytest.raises(AudioError) as err:
        decode_audio(data, source_name=name, limits=limits)
    return err.value, time.perf_counter() - t


# -- the input-sample budget ----------------------------------------------------------------------


@pytest.mark.parametrize("which", ["flac", "mka"])
def test_a_declared_long_file_is_refused_before_decoding(hostile, hostile_mka, counted, which):
    data = {"flac": hostile, "mka": hostile_mka}[which]
    err, seconds = _refused(data, f"hostile.{which}")
    assert err.code == "audio_too_long", err
    assert counted == [], f"{sum(counted)} input samples decoded before the refusal"
    assert seconds < 2.0, f"{seconds:.1f} s to refuse"
    assert "E2V_MAX_DURATION_S" in err.message and "48 kHz" in err.message and " / " in err.message, err.message


def test_an_undeclared_long_file_stops_at_the_input_budget(hostile_undeclared, counted):
    err, _ = _refused(hostile_undeclared, "streamed.flac")
    assert err.code == "audio_too_long", err
    assert sum(counted) <= BUDGET + readers.BLOCK_SAMPLES, f"{sum(counted) / BUDGET:.1f} × the budget decoded"
    assert "E2V_MAX_DURATION_S" in err.message


def test_the_budget_is_rate_times_channels_times_seconds():
    limits = AudioLimits(max_duration_s=1.0)  # 96,000 input samples
    for seconds, rate, channels in ((0.9, 48000, 2), (0.9, 16000, 6)):  # 86,400 each: decoded
        d = decode_audio(silent_flac(seconds, rate, channels), source_name="ok.flac", limits=limits)
        assert abs(d.duration_s - seconds) < 0.01
    for seconds, rate, channels in ((0.3, 192000, 8), (0.3, 48000, 8)):  # 460,800 and 115,200: refused
        for declared in (True, False):
            data = silent_flac(seconds, rate, channels, declare_length=declared)
            err, _ = _refused(data, "wide.flac", limits)
            assert err.code == "audio_too_long", (seconds, rate, channels, declared)


# -- the pool: a bounded wait, memory deaths, the start-up check, names ---------------------------


@pytest.fixture
def hooked(monkeypatch):
    monkeypatch.setenv(_TEST_HOOK_ENV, "1")  # inherited by the spawned workers


def test_waiting_for_a_busy_decoder_is_bounded(hooked, tone_wav):
    pool = DecoderPool(PoolConfig(workers=1, timeout_s=3.0, wait_s=0.5))
    try:
        pool.prestart(wait=True)
        hung = threading.Thread(target=lambda: pytest.raises(AudioError, pool.decode, b"E2V-TEST:hang"))
        hung.start()
        time.sleep(0.3)
        t = time.perf_counter()
        with pytest.raises(E2VError) as err:
            pool.decode(tone_wav)
        waited = time.perf_counter() - t
        assert err.value.code == "overloaded", err.value
        assert 0.4 <= waited < 2.0, f"waited {waited:.2f} s"
        assert "E2V_DECODE_WAIT_S" in err.value.message and " / " in err.value.message
        hung.join(10)
        assert pool.decode(tone_wav).duration_s > 0.5  # the hung worker was replaced
    finally:
        pool.shutdown()


def test_a_worker_killed_at_its_memory_limit_is_audio_too_large_decoded(hooked, many_streams_mp4, tone_wav):
    pool = DecoderPool(PoolConfig(workers=1, timeout_s=30.0, memory_mb=100))
    try:
        with pytest.raises(AudioError) as err:  # FFmpeg segfaults opening the 300 decoders under 100 MB
            pool.decode(many_streams_mp4, source_name="streams.mp4")
        assert err.value.code == "audio_too_large_decoded", err.value
        assert "E2V_DECODE_MEMORY_MB" in err.value.message and " / " in err.value.message
        assert pool.decode(tone_wav).duration_s > 0.5
        with pytest.raises(AudioError) as err:  # a crash away from the limit is still a crash
            pool.decode(b"E2V-TEST:segv", source_name="bad.opus")
        assert err.value.code == "audio_undecodable" and "SIGSEGV" in err.value.message
    finally:
        pool.shutdown()


def test_a_memory_limit_too_small_for_one_second_is_refused_at_start():
    pool = DecoderPool(PoolConfig(workers=1, memory_mb=4))
    try:
        with pytest.raises(SystemExit) as stop:
            pool.check_memory_limit(AudioLimits())
        message = str(stop.value.code)
        assert "E2V_DECODE_MEMORY_MB=4" in message and " / " in message and "\n" not in message, message
    finally:
        pool.shutdown()
    fine = DecoderPool(PoolConfig(workers=1, memory_mb=200))
    try:
        fine.check_memory_limit(AudioLimits())  # no exception
        assert len(fine.worker_pids()) == 1  # the worker it measured with is kept
    finally:
        fine.shutdown()


def test_decode_errors_never_show_server_paths(tmp_path):
    folder = tmp_path / "uploads" / "a.wav"
    folder.mkdir(parents=True)  # a folder where a file is expected: the read fails with an OSError
    pool = DecoderPool(PoolConfig(workers=1))
    try:
        for decode in (pool.decode, decode_audio):
            with pytest.raises(AudioError) as err:
                decode(folder)
            assert str(tmp_path) not in err.value.message and "a.wav" in err.value.message, err.value.message
    finally:
        pool.shutdown()


def test_decode_settings_are_read_in_config(monkeypatch):
    from emotion2vec_webui.config import load_settings

    for name, value in (("WORKERS", "3"), ("TIMEOUT_S", "7"), ("MEMORY_MB", "300"), ("WAIT_S", "2.5")):
        monkeypatch.setenv(f"E2V_DECODE_{name}", value)
    s = load_settings()
    assert (s.decode_workers, s.decode_timeout_s, s.decode_memory_mb, s.decode_wait_s) == (3, 7.0, 300.0, 2.5)
    assert PoolConfig.from_settings(s) == PoolConfig(workers=3, timeout_s=7.0, memory_mb=300.0, wait_s=2.5)


# -- through the server ---------------------------------------------------------------------------


def _post(url: str, name: str, data: bytes, timeout: float = 120) -> tuple[int, str, float, dict]:
    t = time.perf_counter()
    r = httpx.post(url + "/api/v1/recognize", files={"file": (name, data)}, timeout=timeout)
    code = "" if r.status_code == 200 else r.json()["error"]["code"]
    return r.status_code, code, time.perf_counter() - t, dict(r.headers)


def test_hostile_flacs_leave_one_second_probes_answered(decode_server, hostile, hostile_undeclared, tmp_path):
    probe = write_audio(tmp_path / "probe.wav", tone(1.0, 16000), 16000, "wav").read_bytes()
    done = threading.Event()
    hostile_answers: list[tuple[int, str]] = []

    def attack(data: bytes) -> None:  # each attacker sends its file again half a second after every answer
        while not done.is_set():
            status, code, _, _ = _post(decode_server.url, "bomb.flac", data)
            hostile_answers.append((status, code))
            done.wait(0.5)

    attackers = [threading.Thread(target=attack, args=(d,)) for d in (hostile, hostile, hostile, hostile_undeclared)]
    for a in attackers:
        a.start()
    probes = []
    try:
        time.sleep(0.5)
        for _ in range(12):
            started = time.perf_counter()
            status, code, seconds, _ = _post(decode_server.url, "probe.wav", probe, timeout=60)
            probes.append((status, code, seconds))
            time.sleep(max(0.0, 0.5 - (time.perf_counter() - started)))
    finally:
        done.set()
        for a in attackers:
            a.join(180)
    latencies = [s for _, _, s in probes]
    assert all(status == 200 for status, _, _ in probes), probes
    assert statistics.median(latencies) <= 3.0 and max(latencies) <= 10.0, latencies
    # Refused (the budget); on a very busy machine the undeclared one may also run past E2V_DECODE_TIMEOUT_S
    # (audio_too_large_decoded) or wait past E2V_DECODE_WAIT_S for a decoder (overloaded).
    typed = ((422, "audio_too_long"), (422, "audio_too_large_decoded"), (503, "overloaded"))
    others = [a for a in hostile_answers if a not in typed]
    assert (422, "audio_too_long") in hostile_answers and not others, others


def test_a_request_that_waits_too_long_for_a_decoder_gets_503(decode_server, tone_wav):
    hang = [threading.Thread(target=_post, args=(decode_server.url, "hang.wav", b"E2V-TEST:hang")) for _ in range(2)]
    for h in hang:
        h.start()
    try:
        time.sleep(1.0)  # both decoders are now stuck until E2V_DECODE_TIMEOUT_S
        status, code, seconds, headers = _post(decode_server.url, "probe.wav", open(tone_wav, "rb").read())
        assert (status, code) == (503, "overloaded"), (status, code, seconds)
        assert "retry-after" in headers and seconds < DECODE_TIMEOUT_S, (headers, seconds)
    finally:
        for h in hang:
            h.join(60)
    status, *_ = _post(decode_server.url, "probe.wav", open(tone_wav, "rb").read())
    assert status == 200


def test_a_decode_over_the_memory_limit_is_422(decode_server, many_streams_mp4):
    status, code, _, _ = _post(decode_server.url, "streams.mp4", many_streams_mp4)
    assert (status, code) == (422, "audio_too_large_decoded")
