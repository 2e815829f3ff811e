"""What a file says of its own length: a WAV's data size, an Ogg's end page, FFmpeg's stream durations.

The readers (``readers.py``) refuse a file on what it declares before decoding
(``format.check_declared``) and warn when less decodes than was declared (a
truncated file). Nothing here is trusted as a bound: a file that declares
nothing, or too little, is stopped while it decodes.
"""

from __future__ import annotations

import struct

MAX_WAV_CHUNKS = 10_000  # a WAV of millions of 8-byte chunks is not walked in Python to the end


def wav_declared_frames(data: bytes, channels: int) -> int | None:
    """Frames the RIFF header promises (None when not a plain RIFF wav or unknown)."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    pos, block_align, chunks = 12, None, 0
    while pos + 8 <= len(data) and chunks < MAX_WAV_CHUNKS:
        chunks += 1
        cid, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        if cid == b"fmt " and pos + 22 <= len(data):
            block_align = struct.unpack("<H", data[pos + 20 : pos + 22])[0]
        if cid == b"data":
            if size in (0, 0xFFFFFFFF) or not block_align:
                return None  # streaming placeholder: length unknown
            return size // block_align
        pos += 8 + size + (size & 1)
    return None


def ogg_ends_cleanly(data: bytes) -> bool:
    """True when the last Ogg page is complete and flagged end-of-stream (Ogg has no length header)."""
    pos = data.rfind(b"OggS")
    if pos < 0 or pos + 27 > len(data):
        return False
    n_segments = data[pos + 26]
    if pos + 27 + n_segments > len(data):
        return False
    body = sum(data[pos + 27 : pos + 27 + n_segments])
    complete = pos + 27 + n_segments + body <= len(data)
    return complete and bool(data[pos + 5] & 0x04)


def header_duration(container, stream, whole: bool = True) -> float | None:
    """Seconds PyAV's stream (or, when ``whole``, its container) declares; None when unknown (may be an estimate)."""
    try:
        if stream.duration is not None and stream.time_base is not None:
            return float(stream.duration * stream.time_base)
        if whole and container.duration is not None:
            return container.duration / 1_000_000
    except Exception:
        return None
    return None
