"""Decode any supported audio file into the 16 kHz mono float32 signal the model sees.

This module knows nothing about models. Choices:

* **soundfile** (libsndfile) for wav/flac/aiff/au: fast and exact for PCM,
  float, u8 and mu-law wav.
* **PyAV** for everything else (mp3, ogg/vorbis, opus, m4a/aac, webm): its
  wheels bundle FFmpeg, so no system FFmpeg is needed. We pick the demuxer
  ourselves from the file's magic bytes, so FFmpeg never auto-detects a
  playlist or concat format that could open other files or URLs.
* Channels are averaged by us (PyAV's resampler mix adds +3 dB and clips).
* Resampling to 16 kHz with soxr at high quality.
* Memory is bound by the block, not the file: every soundfile block (at most
  ``_BLOCK_SAMPLES`` values, frames × channels) or PyAV frame is mixed to mono
  at once (float64 sum, float32 result) and fed to a streaming soxr resampler
  (bit-identical to one-shot ``soxr.resample``), so an 8-channel 192 kHz file
  never holds more than one block of its channels; what grows is only the
  16 kHz mono output.
* PyAV's ``AudioFrame.planes`` walks ``extended_data`` until it finds a NULL
  pointer, which for planar audio with 8 or more channels runs past the array
  (PyAV 18.1: 9 "planes" for 7.1 Opus/AAC) and ``to_ndarray()`` then reads a
  wild pointer and segfaults. We never call either: we read exactly
  ``layout.nb_channels`` planes, each with ``count=frame.samples``.

This module decodes in the calling process; :mod:`decoder_pool` runs it in
guarded worker processes for untrusted input.

Limits (bytes, duration) are enforced while decoding: a 10-hour file is
rejected after reading just past the limit, never decoded whole. Header
durations are never trusted. A file that decodes only in part (truncated) is
kept as far as it decodes, with a warning.
"""

from __future__ import annotations

import io
import logging
import os
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from .errors import AudioError

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000  # what the model expects
MIN_MODEL_SAMPLES = 400  # the conv front-end needs at least this many samples
MIN_SOURCE_RATE = 8000  # SPEC.md: any rate from 8 kHz …
MAX_SOURCE_RATE = 192000  # … to 192 kHz
MAX_CHANNELS = 256  # sanity bound against lying headers
_BLOCK_SAMPLES = 1 << 20  # values (frames × channels) per block mixed to mono at once: 4 MB as float32

# Demuxers we hand FFmpeg explicitly, by magic bytes (see _sniff_format).
_SOUNDFILE_KINDS = {"wav", "flac", "aiff", "au"}


@dataclass(frozen=True)
class DecodedAudio:
    waveform: np.ndarray  # float32, mono, SAMPLE_RATE Hz: exactly what the model sees
    sample_rate: int  # always SAMPLE_RATE
    original_sample_rate: int  # the file's own rate
    original_channels: int  # the file's channel count before the mono mix
    source_name: str  # the file name shown to people (never a server path)
    container: str  # detected format: wav, flac, mp3, ogg, mp4, webm, …
    warnings: tuple[str, ...] = ()  # e.g. truncation, clipping
    decode_s: float = 0.0  # seconds spent decoding
    resample_s: float = 0.0  # seconds spent resampling

    @property
    def duration_s(self) -> float:
        return len(self.waveform) / self.sample_rate


@dataclass(frozen=True)
class AudioLimits:
    max_bytes: int = 100 * 1024 * 1024  # E2V_MAX_UPLOAD_MB
    max_duration_s: float = 600.0  # E2V_MAX_DURATION_S
    min_duration_s: float = 0.1  # E2V_MIN_DURATION_S

    @classmethod
    def from_settings(cls, settings) -> AudioLimits:
        return cls(settings.max_upload_bytes, settings.max_duration_s, settings.min_duration_s)


def decode_audio(
    source: str | os.PathLike | bytes,
    *,
    source_name: str | None = None,
    limits: AudioLimits | None = None,
) -> DecodedAudio:
    """Decode a file or its bytes into 16 kHz mono float32.

    Args:
        source: a path, or the file's bytes.
        source_name: the name to report (defaults to the path's file name).
        limits: byte and duration limits; defaults to SPEC.md's.

    Returns:
        The decoded audio with its metadata and warnings.

    Raises:
        AudioError: with code file_too_large, audio_too_long, audio_too_short,
            audio_empty, audio_undecodable or audio_nonfinite.
    """
    limits = limits or AudioLimits()
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        name = source_name or "upload"
        size = len(data)
    else:
        path = Path(source)
        name = source_name or path.name
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise AudioError("audio_undecodable", f"{name}: cannot read the file ({exc.strerror}).") from exc
        data = None
    if size > limits.max_bytes:
        raise AudioError(
            "file_too_large",
            f"{name} is {size / 1e6:.1f} MB; the limit is {limits.max_bytes / 1024 / 1024:g} MB (E2V_MAX_UPLOAD_MB).",
        )
    if size == 0:
        raise AudioError("audio_empty", f"{name} is empty (0 bytes).")
    if data is None:
        data = Path(source).read_bytes()

    t0 = time.perf_counter()
    kind = _sniff_format(data)
    if kind is None:
        raise AudioError(
            "audio_undecodable",
            f"{name} is not a recognised audio file (expected wav, flac, mp3, ogg, opus, m4a/aac, webm, aiff or au).",
        )
    warnings: list[str] = []
    sink: _MonoSink | None = None
    if kind in _SOUNDFILE_KINDS:
        try:
            sink = _decode_soundfile(data, name, limits, warnings)
        except (AudioError, MemoryError):
            raise
        except Exception as exc:  # libsndfile refuses: let FFmpeg try (e.g. mp3-in-wav)
            log.debug("soundfile could not read %s (%s); trying PyAV", name, exc)
            warnings.clear()
    if sink is None:
        sink = _decode_pyav(data, kind, name, limits, warnings)
    if sink.frames == 0:
        raise AudioError("audio_empty", f"{name} holds no audio samples.")
    mono = sink.finish()
    resample_s = sink.resample_s
    decode_s = time.perf_counter() - t0 - resample_s
    rate, channels = sink.rate, sink.channels
    mono = _to_pcm16_grid(mono, warnings)

    min_samples = max(MIN_MODEL_SAMPLES, int(round(limits.min_duration_s * SAMPLE_RATE)))
    if len(mono) < min_samples:
        raise AudioError(
            "audio_too_short",
            f"{name} is {len(mono) / SAMPLE_RATE:.3f} s long; at least {min_samples / SAMPLE_RATE:.3f} s "
            "is needed (E2V_MIN_DURATION_S).",
        )
    return DecodedAudio(
        waveform=mono,
        sample_rate=SAMPLE_RATE,
        original_sample_rate=int(rate),
        original_channels=int(channels),
        source_name=name,
        container=kind,
        warnings=tuple(warnings),
        decode_s=decode_s,
        resample_s=resample_s,
    )


def _to_pcm16_grid(mono: np.ndarray, warnings: list[str]) -> np.ndarray:
    """Put the signal on the 16-bit PCM grid, so processed_audio.wav is exactly what the model saw.

    The model layer-normalises the waveform, so its level does not change the
    result: a signal over full scale (float wav) is scaled down, not clipped.
    Works in place, block by block (``mono`` is ours): no float64 copy of a long signal.
    """
    peak = max((float(np.max(np.abs(mono[i : i + _BLOCK_SAMPLES]))) for i in range(0, mono.size, _BLOCK_SAMPLES)),
               default=0.0)  # fmt: skip
    if peak > 1.0:
        warnings.append(
            f"samples exceeded full scale (peak {peak:.2f}); scaled down to fit "
            "(the model normalises level, so results are unaffected)"
        )
    for i in range(0, mono.size, _BLOCK_SAMPLES):
        block = mono[i : i + _BLOCK_SAMPLES]
        if peak > 1.0:
            block = block / peak
        mono[i : i + _BLOCK_SAMPLES] = pcm16_from_float(block).astype(np.float32) / 32768.0
    return mono


def pcm16_from_float(waveform: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1] → int16 (scale 32768, as soundfile reads them back), in blocks (no big float64 copy)."""
    out = np.empty(waveform.shape, np.int16)
    flat_in, flat_out = waveform.reshape(-1), out.reshape(-1)
    for i in range(0, flat_in.size, _BLOCK_SAMPLES):
        block = flat_in[i : i + _BLOCK_SAMPLES].astype(np.float64) * 32768.0
        np.round(block, out=block)
        np.clip(block, -32768, 32767, out=block)
        flat_out[i : i + _BLOCK_SAMPLES] = block
    return out


def _sniff_format(data: bytes) -> str | None:
    """Name the container from magic bytes; None when it is not audio we accept."""
    head = data[:16]
    if head[:4] in (b"RIFF", b"RIFX", b"RF64") and data[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:4] == b"FORM" and data[8:12] in (b"AIFF", b"AIFC"):
        return "aiff"
    if head[:4] == b".snd":
        return "au"
    if head[:4] == b"OggS":
        return "ogg"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "matroska"  # webm and mka
    if data[4:8] == b"ftyp":
        return "mov"  # mp4, m4a, 3gp
    if head[:4] == b"caff":
        return "caf"
    if head[:3] == b"ID3":
        return "mp3"
    if head[:4] == b"ADIF":
        return "aac"
    if len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0:
        return "aac" if (head[1] & 0x06) == 0 else "mp3"
    return None


def _check_rate_channels(rate: int, channels: int, name: str) -> None:
    if not (MIN_SOURCE_RATE <= rate <= MAX_SOURCE_RATE):
        raise AudioError(
            "audio_undecodable",
            f"{name} declares a sample rate of {rate} Hz; supported rates are 8–192 kHz.",
        )
    if not (1 <= channels <= MAX_CHANNELS):
        raise AudioError("audio_undecodable", f"{name} declares {channels} channels.")


def _too_long(name: str, limits: AudioLimits) -> AudioError:
    return AudioError(
        "audio_too_long",
        f"{name} is longer than the {limits.max_duration_s:g} s limit (E2V_MAX_DURATION_S).",
    )


class _ClampedBytesIO(io.BytesIO):
    """BytesIO that treats a seek before the start as a seek to 0.

    libsndfile probes corrupt headers with negative seeks; BytesIO raises, and
    soundfile's cffi callback then prints a traceback to stderr and returns 0.
    Clamping returns the same 0, without the noise in the server log.
    """

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return super().seek(max(offset, 0) if whence == io.SEEK_SET else offset, whence)


def _decode_soundfile(data: bytes, name: str, limits: AudioLimits, warnings: list[str]) -> _MonoSink:
    import soundfile as sf

    with sf.SoundFile(_ClampedBytesIO(data)) as f:
        rate, channels = int(f.samplerate), int(f.channels)
        _check_rate_channels(rate, channels, name)
        sink = _MonoSink(rate, channels, name, limits)
        block_frames = max(1, _BLOCK_SAMPLES // channels)
        while True:
            block = f.read(block_frames, dtype="float32", always_2d=True)
            if block.shape[0] == 0:
                break
            sink.add(block)
    declared = _wav_declared_frames(data, channels)
    if declared is not None and declared > sink.frames:
        warnings.append(
            f"file appears truncated: header declares {declared / rate:.2f} s, "
            f"decoded {sink.frames / rate:.2f} s; analysed what was decoded"
        )
    return sink


def _wav_declared_frames(data: bytes, channels: int) -> int | None:
    """Frames the RIFF header promises (None when not a plain RIFF wav or unknown)."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    pos, block_align = 12, None
    while pos + 8 <= len(data):
        cid, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        if cid == b"fmt " and pos + 22 <= len(data):
            block_align = struct.unpack("<H", data[pos + 20 : pos + 22])[0]
        if cid == b"data":
            if size in (0, 0xFFFFFFFF) or not block_align:
                return None  # streaming placeholder: length unknown
            return size // block_align
        pos += 8 + size + (size & 1)
    return None


def _decode_pyav(data: bytes, kind: str, name: str, limits: AudioLimits, warnings: list[str]) -> _MonoSink:
    import av

    try:
        container = av.open(io.BytesIO(data), mode="r", format=kind if kind != "wav" else None)
    except MemoryError:
        raise
    except Exception as exc:
        raise AudioError("audio_undecodable", f"{name} cannot be decoded as {kind}: {_short(exc)}") from exc
    with container:
        streams = [s for s in container.streams if s.type == "audio"]
        if not streams:
            raise AudioError("audio_undecodable", f"{name} contains no audio stream.")
        stream = streams[0]
        if stream.codec_context is None:  # FFmpeg has no decoder for it (e.g. a wav with a bogus format tag)
            raise AudioError("audio_undecodable", f"{name} uses an audio codec that cannot be decoded.")
        rate = int(stream.codec_context.sample_rate or stream.rate or 0)
        channels = int(stream.codec_context.channels or 0)
        _check_rate_channels(rate, max(channels, 1), name)
        sink: _MonoSink | None = None
        error: Exception | None = None
        try:
            for frame in container.decode(stream):
                if frame.samples == 0:
                    continue
                if frame.sample_rate and frame.sample_rate != rate:
                    raise AudioError("audio_undecodable", f"{name} changes sample rate mid-stream.")
                n_ch = frame.layout.nb_channels or 1
                if sink is None:
                    _check_rate_channels(rate, n_ch, name)
                    sink = _MonoSink(rate, n_ch, name, limits)
                elif n_ch != sink.channels:
                    raise AudioError("audio_undecodable", f"{name} changes channel count mid-stream.")
                for block in _frame_blocks(frame, name):
                    sink.add(block)
        except (AudioError, MemoryError):
            raise
        except Exception as exc:  # corrupt data after a good start: keep what decoded
            error = exc
        header_s = _header_duration(container, stream)
    if sink is None or sink.frames == 0:
        if error is not None:
            raise AudioError("audio_undecodable", f"{name} cannot be decoded: {_short(error)}") from error
        raise AudioError("audio_empty", f"{name} holds no audio samples.")
    decoded_s = sink.frames / rate
    if error is not None:
        warnings.append(f"decoding stopped at {decoded_s:.2f} s ({_short(error)}); analysed what was decoded")
    elif kind == "ogg" and not _ogg_ends_cleanly(data):
        warnings.append(f"file appears truncated (the Ogg stream has no end page); analysed {decoded_s:.2f} s")
    elif header_s is not None and decoded_s < header_s - max(0.25, 0.02 * header_s):
        warnings.append(
            f"file appears truncated: header says {header_s:.2f} s, decoded {decoded_s:.2f} s; "
            "analysed what was decoded"
        )
    return sink


def _ogg_ends_cleanly(data: bytes) -> bool:
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


# PyAV sample format → numpy dtype (planar and packed share one).
_PYAV_DTYPES = {"u8": "u1", "s16": "<i2", "s32": "<i4", "s64": "<i8", "flt": "<f4", "dbl": "<f8"}


def _frame_blocks(frame, name: str) -> Iterator[np.ndarray]:
    """One PyAV frame as float32 ``[samples, channels]`` blocks of at most ``_BLOCK_SAMPLES`` values.

    Reads exactly ``layout.nb_channels`` planes (planar) or one (packed), each
    with an explicit count, never ``frame.planes`` / ``frame.to_ndarray()``
    (see the module docstring: they segfault for 8+ planar channels).
    """
    from av.audio.plane import AudioPlane

    fmt = frame.format
    dtype = _PYAV_DTYPES.get(fmt.name.rstrip("p") if fmt.is_planar else fmt.name)
    if dtype is None:
        raise AudioError("audio_undecodable", f"{name} uses an unsupported sample format ({fmt.name}).")
    n_ch = frame.layout.nb_channels or 1
    n = frame.samples
    if fmt.is_planar:
        # np.frombuffer checks each plane's buffer holds `count` values (ValueError otherwise).
        planes = [np.frombuffer(AudioPlane(frame, i), dtype=dtype, count=n) for i in range(n_ch)]
    else:
        packed = np.frombuffer(AudioPlane(frame, 0), dtype=dtype, count=n * n_ch).reshape(n, n_ch)
    rows = max(1, _BLOCK_SAMPLES // n_ch)
    for start in range(0, n, rows):
        if fmt.is_planar:
            raw = np.stack([p[start : start + rows] for p in planes], axis=1)
        else:
            raw = packed[start : start + rows]
        yield _to_float32(raw)


def _to_float32(arr: np.ndarray) -> np.ndarray:
    """Integer or float samples → float32 in [-1, 1) (the scales libsndfile uses)."""
    if arr.dtype == np.uint8:
        return (arr.astype(np.float32) - 128.0) / 128.0
    if arr.dtype == np.int16:
        return arr.astype(np.float32) / 32768.0
    if arr.dtype == np.int32:
        return arr.astype(np.float32) / 2147483648.0
    if arr.dtype == np.int64:
        return (arr / 9223372036854775808.0).astype(np.float32)
    return arr.astype(np.float32)  # a copy: the frame's buffer is not ours to keep


class _MonoSink:
    """Takes float32 ``[frames, channels]`` blocks; keeps only the 16 kHz mono signal.

    Each block is checked (finite, duration cap), averaged to mono (float64
    accumulate, float32 result, as a whole-file mean would give) and pushed
    through a streaming soxr resampler, whose output equals one-shot
    ``soxr.resample`` bit for bit.
    """

    def __init__(self, rate: int, channels: int, name: str, limits: AudioLimits) -> None:
        self.rate, self.channels, self.name, self.limits = rate, channels, name, limits
        self.frames = 0
        self.cap = int(limits.max_duration_s * rate)
        self.resample_s = 0.0
        self._out = np.empty(min(int(self.cap * SAMPLE_RATE / rate) + 4096, 3600 * SAMPLE_RATE), np.float32)
        self._n = 0
        self._stream = None
        if rate != SAMPLE_RATE:
            import soxr

            self._stream = soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")

    def add(self, block: np.ndarray) -> None:
        if block.shape[0] == 0:
            return
        self.frames += block.shape[0]
        if self.frames > self.cap:
            raise _too_long(self.name, self.limits)
        if not np.isfinite(block).all():
            raise AudioError("audio_nonfinite", f"{self.name} contains NaN or infinite sample values.")
        if block.shape[1] > 1:
            mono = block.mean(axis=1, dtype=np.float64).astype(np.float32)
        else:
            mono = np.array(block[:, 0], dtype=np.float32)  # a copy: the block may view a decoder buffer
        self._push(mono, last=False)

    def _push(self, mono: np.ndarray, last: bool) -> None:
        if self._stream is None:
            self._append(mono)
            return
        t = time.perf_counter()
        out = self._stream.resample_chunk(mono, last=last)
        self.resample_s += time.perf_counter() - t
        self._append(out)

    def _append(self, chunk: np.ndarray) -> None:
        # One buffer sized for the duration cap: pages never written are never touched (no RSS), and there
        # is no list of chunks to join at the end (that join doubled the peak).
        end = self._n + chunk.size
        if end > self._out.size:
            grown = np.empty(max(end, 2 * self._out.size), np.float32)
            grown[: self._n] = self._out[: self._n]
            self._out = grown
        self._out[self._n : end] = chunk
        self._n = end

    def finish(self) -> np.ndarray:
        """The whole 16 kHz mono signal, a fresh array of ours (empty when no frame was added)."""
        if self.frames == 0:
            return np.zeros(0, np.float32)
        self._push(np.zeros(0, np.float32), last=True)
        return self._out[: self._n]


def _header_duration(container, stream) -> float | None:
    try:
        if stream.duration is not None and stream.time_base is not None:
            return float(stream.duration * stream.time_base)
        if container.duration is not None:
            return container.duration / 1_000_000
    except Exception:
        return None
    return None


def _short(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def write_wav_pcm16(path: str | os.PathLike | BinaryIO, waveform: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write a mono float waveform as 16-bit PCM wav, bit-exact for signals on the PCM16 grid.

    Reading the file back with soundfile (float32) returns the same samples
    that :func:`decode_audio` produced.
    """
    import soundfile as sf

    sf.write(path, pcm16_from_float(waveform), sample_rate, subtype="PCM_16", format="WAV")
