"""Files that hide their length, or cut it into one-sample packets, never hold a decoder until its timeout.

* A container that declares no length, or too little — a WAV whose data size
  is 0xFFFFFFFF, an Ogg still being streamed (no granule in its last pages, no
  end page), an MP3 without a Xing header whose first frame lies about the
  bit rate — is stopped as soon as its decoded audio passes the limit
  (``audio_too_long``), having decoded no more than the limit.
* A file of 1-sample packets (1.4 MB of them held a decoder 49 s for 1 s of
  audio, under every sample limit) is stopped after ``format.piece_cap``
  packets or frames: ``audio_too_large_decoded``, in a fraction of the time.

Times are printed; the bounds asserted are generous (the counts are what is exact).
"""

from __future__ import annotations

import io
import struct
import time
from fractions import Fraction

import numpy as np
import pytest

from emotion2vec_webui.audio import readers
from emotion2vec_webui.audio.decode import decode_audio
from emotion2vec_webui.audio.format import AudioLimits, frame_cap, piece_cap
from emotion2vec_webui.errors import AudioError

LIMITS = AudioLimits(max_duration_s=20.0)
SECONDS = 60  # each hostile file holds three times the limit


def _encode(container: str, codec: str, rate: int, bit_rate: int | None = None, options: dict | None = None,
            seconds: float = SECONDS) -> bytes:  # fmt: skip
    """``seconds`` of a quiet tone, mono, encoded with PyAV."""
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format=container, options=options or {}) as out:
        stream = out.add_stream(codec, rate=rate, layout="mono")
        if bit_rate:
            stream.bit_rate = bit_rate
        step, total = 960, int(seconds * rate)
        for start in range(0, total, step):
            x = (300 * np.sin(np.arange(start, start + step) * 0.05)).astype(np.int16)[None, :]
            frame = av.AudioFrame.from_ndarray(x, format="s16", layout="mono")
            frame.sample_rate, frame.pts = rate, start
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def wav_streaming_sizes() -> bytes:
    """8 kHz u8 WAV whose RIFF and data sizes are 0xFFFFFFFF (a recorder that never went back to fill them in)."""
    fmt = struct.pack("<HHIIHH", 1, 1, 8000, 8000, 1, 8)
    samples = (128 + 20 * np.sin(np.arange(SECONDS * 8000) * 0.05)).astype(np.uint8).tobytes()
    chunks = b"WAVEfmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", 0xFFFFFFFF) + samples
    return b"RIFF" + struct.pack("<I", 0xFFFFFFFF) + chunks


def _ogg_crc(page: bytes) -> int:
    crc = 0
    for byte in page:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) & 0xFFFFFFFF if crc & 0x80000000 else (crc << 1) & 0xFFFFFFFF
    return crc


def ogg_still_streaming() -> bytes:
    """An Opus Ogg whose last 70 KB of pages carry no granule position and no end-of-stream flag."""
    data, out, pos = _encode("ogg", "libopus", 48000, 16000), [], 0
    tail = len(data) - 70_000
    while pos < len(data):
        end = pos + 27 + data[pos + 26] + sum(data[pos + 27 : pos + 27 + data[pos + 26]])
        page = bytearray(data[pos:end])
        if pos >= max(tail, 4096):  # never the two header pages
            page[6:14] = struct.pack("<q", -1)  # "no packet ends on this page": FFmpeg finds no length
        page[5] &= ~0x04
        page[22:26] = b"\0\0\0\0"
        page[22:26] = struct.pack("<I", _ogg_crc(bytes(page)))
        out.append(bytes(page))
        pos = end
    return b"".join(out)


def mp3_lying_bit_rate() -> bytes:
    """No Xing/Info header; the first 3 s are 160 kbit/s, the rest 8: FFmpeg's estimate from the first is short."""
    plain = {"write_xing": "0", "id3v2_version": "0", "write_id3v1": "0"}
    head = _encode("mp3", "libmp3lame", 8000, 160_000, plain, seconds=3)
    return head + _encode("mp3", "libmp3lame", 8000, 8000, plain)


def _declared_s(data: bytes, kind: str) -> float | None:
    import av

    with av.open(io.BytesIO(data), format=kind) as c:
        s = c.streams.audio[0]
        return float(s.duration * s.time_base) if s.duration else (c.duration / 1e6 if c.duration else None)


def one_sample_packets(n: int, rate: int = 192000) -> bytes:
    """Matroska, pcm_u8 mono, ``n`` packets of one sample each (~7 bytes a packet)."""
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="matroska") as out:
        stream = out.add_stream("pcm_u8", rate=rate, layout="mono")
        for i in range(n):
            packet = av.Packet(bytes([128 + (i % 16)]))
            packet.pts = packet.dts = i
            packet.time_base, packet.stream = Fraction(1, rate), stream
            out.mux(packet)
    return buf.getvalue()


@pytest.fixture
def counted(monkeypatch) -> list[int]:
    """Frames handed to the mono mix, block by block."""
    seen: list[int] = []
    add = readers.MonoSink.add

    def counting(self, block):
        seen.append(int(block.shape[0]))
        return add(self, block)

    monkeypatch.setattr(readers.MonoSink, "add", counting)
    return seen


def _refused(data: bytes, name: str) -> tuple[AudioError, float]:
    t = time.perf_counter()
    with pytest.raises(AudioError) as err:
        decode_audio(data, source_name=name, limits=LIMITS)
    seconds = time.perf_counter() - t
    print(f"{name}: {len(data) / 1e6:.2f} MB refused in {seconds:.2f} s ({err.value.code})")
    return err.value, seconds


@pytest.mark.parametrize(
    ("name", "make", "rate", "kind"),
    [
        ("streaming.wav", wav_streaming_sizes, 8000, None),
        ("live.opus", ogg_still_streaming, 48000, "ogg"),
        ("lying.mp3", mp3_lying_bit_rate, 8000, "mp3"),
    ],
)
def test_a_file_that_hides_its_length_is_stopped_at_the_limit(name, make, rate, kind, counted):
    data = make()
    if kind is not None:  # FFmpeg is told nothing, or less than the limit: only decoding can tell
        declared = _declared_s(data, kind)
        assert declared is None or declared < LIMITS.max_duration_s, declared
    err, seconds = _refused(data, name)
    assert err.code == "audio_too_long" and "E2V_MAX_DURATION_S" in err.message and " / " in err.message, err
    cap = frame_cap(rate, 1, LIMITS)
    assert sum(counted) <= cap + readers.BLOCK_SAMPLES, f"{sum(counted) / cap:.2f} × the limit decoded"
    assert seconds < 30.0, f"{seconds:.1f} s to refuse {name}"


def test_one_sample_packets_are_stopped_at_the_piece_cap(counted):
    limits = AudioLimits(max_duration_s=10.0)  # 4,016 packets or frames
    data = one_sample_packets(50_000)  # 0.26 s of audio at 192 kHz: under every sample limit
    t = time.perf_counter()
    with pytest.raises(AudioError) as err:
        decode_audio(data, source_name="dust.mka", limits=limits)
    seconds = time.perf_counter() - t
    print(f"dust.mka: {len(data) / 1e6:.2f} MB, 50,000 packets, refused in {seconds:.2f} s")
    assert err.value.code == "audio_too_large_decoded", err.value
    assert "E2V_MAX_DURATION_S" in err.value.message and " / " in err.value.message, err.value.message
    assert len(counted) <= piece_cap(limits), len(counted)
    assert seconds < 20.0, f"{seconds:.1f} s"


def test_real_files_keep_far_from_the_piece_cap():
    """600 s of 20 ms Opus frames is 30,000 frames; the cap for 600 s is 240,016 (2.5 ms frames fit)."""
    assert piece_cap(AudioLimits()) == 240_016
    d = decode_audio(
        one_sample_packets(2000, rate=8000), source_name="short.mka", limits=AudioLimits(max_duration_s=10.0)
    )
    assert abs(d.duration_s - 0.25) < 0.01  # tiny frames under the cap still decode, batched into the mix


def test_one_sample_packets_through_a_decoder_worker_end_long_before_its_timeout():
    from emotion2vec_webui.audio.decoder_pool import DecoderPool, PoolConfig

    pool = DecoderPool(PoolConfig(workers=1, timeout_s=120.0))
    try:
        pool.prestart(wait=True)
        t = time.perf_counter()
        with pytest.raises(AudioError) as err:
            pool.decode(one_sample_packets(50_000), source_name="dust.mka", limits=AudioLimits(max_duration_s=10.0))
        seconds = time.perf_counter() - t
        print(f"through a worker: refused in {seconds:.2f} s")
        assert err.value.code == "audio_too_large_decoded" and "packets or frames" in err.value.message, err.value
        assert seconds < 60.0, f"{seconds:.1f} s"
    finally:
        pool.shutdown()
