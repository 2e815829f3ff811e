"""Hostile audio made in milliseconds: long silent many-channel FLACs that are small on the wire.

libFLAC takes ~12 s to encode 900 s of 8-channel 192 kHz silence; every frame
of silence is the same CONSTANT subframes, so :func:`silent_flac` writes the
frames itself (header, one 3-byte subframe per channel, CRC-8 and CRC-16 as
the FLAC format specifies). 900 s of 8-channel 192 kHz is ~1.4 MB that
decodes into 1.38 G input samples. Used by ``test_decode_budget.py`` and
``benchmarks/starvation_probes.py``.
"""

from __future__ import annotations

import struct

BLOCK = 4096  # samples per channel per frame (the FLAC block size code 0b1100)
_RATE_CODES = {88200: 1, 176400: 2, 192000: 3, 8000: 4, 16000: 5, 22050: 6, 24000: 7, 32000: 8, 44100: 9,
               48000: 10, 96000: 11}  # fmt: skip


def _crc_table(poly: int, width: int) -> list[int]:
    top, mask = 1 << (width - 1), (1 << width) - 1
    table = []
    for byte in range(256):
        crc = byte << (width - 8)
        for _ in range(8):
            crc = ((crc << 1) ^ poly) if crc & top else (crc << 1)
        table.append(crc & mask)
    return table


_CRC8 = _crc_table(0x07, 8)
_CRC16 = _crc_table(0x8005, 16)


def _crc8(data: bytes) -> int:
    crc = 0
    for b in data:
        crc = _CRC8[crc ^ b]
    return crc


def _crc16(data: bytes) -> int:
    crc = 0
    for b in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC16[(crc >> 8) ^ b]
    return crc


def _utf8_number(n: int) -> bytes:
    """FLAC's "UTF-8" coding of a frame number (up to 31 bits here)."""
    if n < 0x80:
        return bytes([n])
    for length, lead in ((2, 0xC0), (3, 0xE0), (4, 0xF0), (5, 0xF8), (6, 0xFC)):
        if n < 1 << (6 * (length - 1) + (7 - length)):
            out = [0x80 | ((n >> (6 * i)) & 0x3F) for i in range(length - 1)]
            return bytes([lead | (n >> (6 * (length - 1)))] + out[::-1])
    raise ValueError("frame number too large")


def silent_flac(seconds: float, rate: int = 192000, channels: int = 8, declare_length: bool = True) -> bytes:
    """A 16-bit FLAC of ``seconds`` of digital silence.

    Args:
        seconds: its length.
        rate: a sample rate FLAC codes in a frame header (8 kHz … 192 kHz).
        channels: 1 to 8.
        declare_length: False writes 0 ("unknown") as STREAMINFO's total samples, as a streaming encoder
            does: then only decoding tells the length.
    """
    total = int(round(seconds * rate))
    info = struct.pack(">HH", BLOCK, BLOCK) + b"\0" * 6  # block sizes; frame sizes unknown
    packed = (rate << 44) | ((channels - 1) << 41) | (15 << 36) | (total if declare_length else 0)
    info += packed.to_bytes(8, "big") + b"\0" * 16  # MD5 unknown (all zero: not checked)
    out = [b"fLaC", bytes([0x80, 0, 0, 34]), info]  # the last (only) metadata block: STREAMINFO
    subframes = b"\0\0\0" * channels  # CONSTANT subframe, value 0, per channel
    rate_code, chan_code = _RATE_CODES[rate], channels - 1
    frame_number, done = 0, 0
    while done < total:
        n = min(BLOCK, total - done)
        size_code, extra = (0b1100, b"") if n == BLOCK else (0b0111, struct.pack(">H", n - 1))
        header = bytes([0xFF, 0xF8, (size_code << 4) | rate_code, (chan_code << 4) | (0b100 << 1)])
        header += _utf8_number(frame_number) + extra
        header += bytes([_crc8(header)])
        frame = header + subframes
        out.append(frame + struct.pack(">H", _crc16(frame)))
        frame_number += 1
        done += n
    return b"".join(out)
