"""Malformed (and a few legitimately odd) audio files, generated: the decoder fuzz corpus.

Every case is ``(label, bytes)``. Nothing is checked in; the corpus is rebuilt
from tones each time, deterministically (fixed seeds).
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np

from emotion2vec_webui.audio.signals import tone, write_audio

# Formats of the base clips, and the rate each is written at (opus/webm need an Opus rate).
BASE_FORMATS = {
    "wav": 16000,
    "wav24": 22050,
    "wavf32": 16000,
    "wavu8": 8000,
    "wavulaw": 8000,
    "flac": 22050,
    "ogg": 22050,
    "aiff": 16000,
    "au": 16000,
    "mp3": 22050,
    "m4a": 22050,
    "opus": 16000,
    "webm": 48000,
}
# Absolute truncation points (bytes), plus fractions of the file added per clip.
_CUTS = (1, 2, 3, 4, 8, 12, 16, 24, 32, 36, 40, 44, 48, 60, 64, 100, 200, 512, 1000, 2000)
_FRACTIONS = (0.25, 0.5, 0.75, 0.99)


def base_clips(folder: Path) -> dict[str, bytes]:
    """A 0.6 s stereo tone in every base format."""
    clips = {}
    for fmt, rate in BASE_FORMATS.items():
        path = write_audio(folder / f"base.{fmt}", tone(0.6, rate, channels=2), rate, fmt)
        clips[fmt] = path.read_bytes()
    return clips


def _wav(
    payload: bytes,
    *,
    fmt_tag: int = 1,
    channels: int = 1,
    rate: int = 16000,
    bits: int = 16,
    block_align: int | None = None,
    byte_rate: int | None = None,
    data_size: int | None = None,
    riff_size: int | None = None,
    fmt_size: int = 16,
) -> bytes:
    """A RIFF/WAVE file whose header fields can all lie."""
    block_align = channels * bits // 8 if block_align is None else block_align
    byte_rate = rate * block_align if byte_rate is None else byte_rate
    fmt_body = struct.pack(
        "<HHIIHH",
        fmt_tag,
        channels & 0xFFFF,
        rate & 0xFFFFFFFF,
        byte_rate & 0xFFFFFFFF,
        block_align & 0xFFFF,
        bits & 0xFFFF,
    )
    data_size = len(payload) if data_size is None else data_size
    body = b"WAVE" + b"fmt " + struct.pack("<I", fmt_size) + fmt_body + b"data" + struct.pack("<I", data_size) + payload
    riff_size = len(body) if riff_size is None else riff_size
    return b"RIFF" + struct.pack("<I", riff_size & 0xFFFFFFFF) + body


def _pcm16(seconds: float, rate: int = 16000, channels: int = 1) -> bytes:
    x = tone(seconds, rate, channels=channels)
    return (x * 32767).astype("<i2").tobytes()


def _f32(values: np.ndarray) -> bytes:
    return values.astype("<f4").tobytes()


def _au(payload: bytes, rate: int, channels: int, encoding: int = 3) -> bytes:
    return b".snd" + struct.pack(">IIIII", 24, len(payload), encoding, rate, channels) + payload


def _png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"\x00\xff\x00\x00" * 1
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def _zip(inner: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("clip.wav", inner)
    return buf.getvalue()


def header_lies() -> list[tuple[str, bytes]]:
    """WAV/AU headers that lie, plus odd-but-valid layouts."""
    one_s = _pcm16(1.0)
    cases = [
        ("wav data_size=0xFFFFFFFF", _wav(one_s, data_size=0xFFFFFFFF)),
        ("wav riff_size=0xFFFFFFFF", _wav(one_s, riff_size=0xFFFFFFFF)),
        ("wav data_size=0", _wav(one_s, data_size=0)),
        ("wav data_size>file", _wav(one_s, data_size=len(one_s) * 50)),
        ("wav rate=0", _wav(one_s, rate=0)),
        ("wav rate=1", _wav(one_s, rate=1)),
        ("wav rate=7999", _wav(one_s, rate=7999)),
        ("wav rate=4e9", _wav(one_s, rate=4_000_000_000)),
        ("wav channels=0", _wav(one_s, channels=0, block_align=2)),
        ("wav channels=65535", _wav(one_s, channels=65535)),
        ("wav channels=64 (valid)", _wav(_pcm16(0.5, 16000, 64), channels=64)),
        ("wav bits=0", _wav(one_s, bits=0, block_align=2)),
        ("wav bits=7", _wav(one_s, bits=7, block_align=2)),
        ("wav bits=64 pcm", _wav(one_s, bits=64)),
        ("wav block_align=0", _wav(one_s, block_align=0)),
        ("wav byte_rate=0", _wav(one_s, byte_rate=0)),
        ("wav format_tag=0x9999", _wav(one_s, fmt_tag=0x9999)),
        ("wav format_tag=0", _wav(one_s, fmt_tag=0)),
        ("wav float tag with 16 bits", _wav(one_s, fmt_tag=3)),
        ("wav fmt_size=0xFFFFFFF0", _wav(one_s, fmt_size=0xFFFFFFF0)),
        ("wav fmt_size=2", _wav(one_s, fmt_size=2)),
        ("wav header only", _wav(b"")),
        ("wav 1 sample", _wav(b"\x10\x00")),
        ("wav 0 samples, odd byte", _wav(b"\x10")),
        ("wav 399 samples", _wav(_pcm16(399 / 16000))),
        ("wav no data chunk", _wav(one_s)[:36]),
        (
            "wav no fmt chunk",
            b"RIFF" + struct.pack("<I", 4 + 8 + len(one_s)) + b"WAVEdata" + struct.pack("<I", len(one_s)) + one_s,
        ),
        ("wav RIFX big-endian claim", b"RIFX" + _wav(one_s)[4:]),
        ("wav RF64 claim", b"RF64" + _wav(one_s)[4:]),
        ("wav silence 1 s (valid)", _wav(b"\0\0" * 16000)),
        ("wav 192 kHz (valid)", _wav(_pcm16(0.3, 192000), rate=192000)),
    ]
    n = 16000
    clean = tone(1.0, 16000)[:, 0]
    for label, bad in (("NaN", np.nan), ("+Inf", np.inf), ("-Inf", -np.inf)):
        x = clean.copy()
        x[n // 2] = bad
        cases.append((f"float wav one {label}", _wav(_f32(x), fmt_tag=3, bits=32)))
    cases.append(("float wav all NaN", _wav(_f32(np.full(n, np.nan)), fmt_tag=3, bits=32)))
    cases.append(("float wav huge values 1e30", _wav(_f32(np.full(n, 1e30)), fmt_tag=3, bits=32)))
    cases.append(("float64 wav with NaN", _wav(np.full(n, np.nan).astype("<f8").tobytes(), fmt_tag=3, bits=64)))
    for rate, channels in ((0, 1), (1, 1), (16000, 0), (16000, 1000), (0xFFFFFFFF, 1)):
        cases.append(
            (f"au rate={rate} channels={channels}", _au(one_s[: 3200 * max(1, min(channels, 4))], rate, channels))
        )
    cases.append(("au encoding=99", _au(one_s, 16000, 1, encoding=99)))
    cases.append(("au data offset past end", b".snd" + struct.pack(">IIIII", 10_000_000, 100, 3, 16000, 1)))
    return cases


def not_audio() -> list[tuple[str, bytes]]:
    """Files of other kinds, renamed as audio, and magic-only stubs."""
    rng = np.random.default_rng(7)
    one_s = _wav(_pcm16(0.5))
    return [
        ("zero bytes", b""),
        ("one byte", b"\x00"),
        ("text", b"hello, this is not audio at all\n" * 20),
        ("json", b'{"audio": "nope", "path": "/etc/passwd"}'),
        ("html", b"<!doctype html><html><body><audio src='x.wav'></audio></body></html>"),
        ("png", _png()),
        ("zip with a wav inside", _zip(one_s)),
        ("gzip", zlib.compress(one_s)),
        ("elf", b"\x7fELF\x02\x01\x01" + b"\0" * 200),
        ("pdf", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\n"),
        ("m3u playlist", b"#EXTM3U\n#EXTINF:1,x\n/etc/passwd\nhttp://127.0.0.1:1/x.wav\n"),
        ("hls playlist", b"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n"),
        ("ffconcat", b"ffconcat version 1.0\nfile /etc/passwd\nfile 'http://127.0.0.1:1/a.wav'\n"),
        ("sdp", b"v=0\no=- 0 0 IN IP4 127.0.0.1\ns=x\nc=IN IP4 127.0.0.1\nt=0 0\nm=audio 5004 RTP/AVP 0\n"),
        ("magic RIFF only", b"RIFF"),
        ("magic fLaC only", b"fLaC"),
        ("magic OggS only", b"OggS"),
        ("magic ID3 only", b"ID3"),
        ("ID3 with huge size", b"ID3\x04\x00\x00\x7f\x7f\x7f\x7f" + b"\0" * 100),
        ("ID3 then garbage", b"ID3\x03\x00\x00\x00\x00\x00\x10" + bytes(rng.integers(0, 256, 4000, dtype=np.uint8))),
        ("mp3 sync words only", b"\xff\xfb\x90\x00" * 500),
        ("ftyp box only", b"\0\0\0\x18ftypM4A \0\0\0\0M4A mp42isom"),
        ("EBML header only", b"\x1aE\xdf\xa3\x9fB\x86\x81\x01B\xf7\x81\x01B\xf2\x81\x04"),
        ("FORM AIFF stub", b"FORM\0\0\0\x04AIFF"),
        ("random 10 bytes", bytes(rng.integers(0, 256, 10, dtype=np.uint8))),
        ("random 1 kB", bytes(rng.integers(0, 256, 1000, dtype=np.uint8))),
        ("random 100 kB", bytes(rng.integers(0, 256, 100_000, dtype=np.uint8))),
        ("zeros 10 kB", b"\0" * 10_000),
        ("0xFF 10 kB", b"\xff" * 10_000),
    ]


def truncations(clips: dict[str, bytes]) -> list[tuple[str, bytes]]:
    cases = []
    for fmt, data in clips.items():
        cuts = sorted({c for c in _CUTS if c < len(data)} | {int(len(data) * f) for f in _FRACTIONS})
        cases += [(f"{fmt} truncated at {c}/{len(data)}", data[:c]) for c in cuts]
    return cases


def byte_flips(clips: dict[str, bytes]) -> list[tuple[str, bytes]]:
    rng = np.random.default_rng(1234)
    cases = []
    for fmt, data in clips.items():
        for count in (1, 8, 64, 512):
            buf = bytearray(data)
            # Header bytes are the interesting ones: half the flips land in the first 64 bytes.
            head = rng.integers(0, min(64, len(buf)), count // 2 + 1)
            rest = rng.integers(0, len(buf), count // 2)
            for i in np.concatenate([head, rest]):
                buf[int(i)] ^= int(rng.integers(1, 256))
            cases.append((f"{fmt} with {count} flipped bytes", bytes(buf)))
    return cases


def long_opus(folder: Path, seconds: float) -> tuple[str, bytes]:
    """A few kB of Opus that decodes to ``seconds`` of audio (beyond E2V_MAX_DURATION_S)."""
    path = write_audio(folder / "long.opus", np.zeros((int(16000 * seconds), 1), np.float32), 16000, "opus")
    return (f"opus {path.stat().st_size} bytes decoding to {seconds:g} s", path.read_bytes())


def corpus(folder: Path, max_duration_s: float) -> list[tuple[str, bytes]]:
    """The whole fuzz corpus (over 300 cases)."""
    clips = base_clips(folder)
    return [
        *truncations(clips),
        *byte_flips(clips),
        *header_lies(),
        *not_audio(),
        long_opus(folder, max_duration_s * 6),
    ]
