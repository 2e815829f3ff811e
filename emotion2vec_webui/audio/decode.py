"""Decode any supported audio file into the 16 kHz mono float32 signal the model sees.

This module knows nothing about models. Choices:

* **soundfile** (libsndfile) for wav/flac/aiff/au: fast and exact for PCM,
  float, u8 and mu-law wav.
* **PyAV** for everything else (mp3, ogg/vorbis, opus, m4a/aac, webm, wma,
  amr, 3gp, mp4/mov/mkv video, caf, wavpack, ape, ac3, …: ``format.FORMATS``):
  its wheels bundle FFmpeg, so no system FFmpeg is needed. We pick the demuxer
  ourselves from the file's magic bytes, from an allow-list of demuxers that
  read only the bytes given, so FFmpeg never auto-detects a playlist, concat,
  HLS, image-sequence or device format that could open other files or URLs.
  From a video the first audio stream is taken (or ``DecodeOptions.audio_stream``);
  a file without one is ``audio_no_stream``.
* ``DecodeOptions.channels`` picks one channel (left, right, an index) instead
  of the mix; the mix warns when its channels nearly cancel (opposite phase)
  or differ by more than 20 dB (see ``readers.MonoSink``).
* Channels are averaged by us (PyAV's resampler mix adds +3 dB and clips).
* Resampling to 16 kHz with soxr at high quality.
* Memory is bound by the block, not the file: every soundfile block (at most
  ``BLOCK_SAMPLES`` values, frames × channels) or PyAV frame is mixed to mono
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
guarded worker processes for untrusted input. The two readers are in
``readers.py``.

Limits (bytes, duration, and the input-sample budget: rate × channels ×
seconds may not exceed ``E2V_MAX_DURATION_S`` of 48 kHz stereo) are checked
on the length the container declares, before decoding (a long file is refused
in milliseconds), and again while decoding, on the samples each block really
holds: a file that declares nothing, or too little, is rejected after reading
just past the limit, never decoded whole (``readers.py``); a file cut into
one-sample packets is stopped after one packet per 2.5 ms of the limit
(``format.piece_cap``). A file that
decodes only in part (truncated) is kept as far as it decodes, with a warning.
Messages name the file by ``source_name`` (or the path's last part), never by
a server path.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import BinaryIO

import numpy as np

from emotion2vec_webui.audio import readers
from emotion2vec_webui.audio.format import (
    FORMAT_BY_KIND,
    FORMATS,
    MIN_MODEL_SAMPLES,
    SAMPLE_RATE,
    AudioLimits,
    DecodedAudio,
    DecodeOptions,
)
from emotion2vec_webui.audio.readers import MonoSink, read_pyav, read_soundfile
from emotion2vec_webui.errors import AudioError

log = logging.getLogger(__name__)


# Demuxers we hand FFmpeg explicitly, by magic bytes (see _sniff_format).
_SOUNDFILE_KINDS = {f.kind for f in FORMATS if f.demuxer is None}
_ACCEPTED = ", ".join(ext.lstrip(".") for f in FORMATS for ext in f.extensions[:3])


def decode_audio(
    source: str | os.PathLike | bytes,
    *,
    source_name: str | None = None,
    limits: AudioLimits | None = None,
    options: DecodeOptions | None = None,
) -> DecodedAudio:
    """Decode a file or its bytes into 16 kHz mono float32.

    Args:
        source: a path, or the file's bytes.
        source_name: the name to report (defaults to the path's file name).
        limits: byte and duration limits; defaults as in docs/settings.md.
        options: which audio stream and channel to take (default: the first stream, channels mixed).

    Returns:
        The decoded audio with its metadata and warnings.

    Raises:
        AudioError: with code file_too_large, audio_too_long, audio_too_short,
            audio_empty, audio_undecodable, audio_nonfinite, audio_no_stream
            (no audio stream, or no such stream or channel).
    """
    limits = limits or AudioLimits()
    options = options or DecodeOptions()
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
            raise _unreadable(name, exc) from exc
        data = None
    if size > limits.max_bytes:
        raise AudioError(
            "file_too_large",
            f"{name} is {size / 1e6:.1f} MB; the limit is {limits.max_bytes / 1024 / 1024:g} MB (E2V_MAX_UPLOAD_MB).",
        )
    if size == 0:
        raise AudioError("audio_empty", f"{name} is empty (0 bytes).")
    if data is None:
        try:
            data = Path(source).read_bytes()
        except OSError as exc:  # str(exc) holds the absolute path: only its reason is shown
            raise _unreadable(name, exc) from exc

    t0 = time.perf_counter()
    kind = _sniff_format(data)
    if kind is None:
        raise AudioError(
            "audio_undecodable",
            f"{name} is not a recognised audio or video file (accepted: {_ACCEPTED}; "
            "`emotion2vec-webui formats` lists them). / 无法识别的音频或视频格式。",
        )
    warnings: list[str] = []
    sink: MonoSink | None = None
    if kind in _SOUNDFILE_KINDS:
        try:
            sink = read_soundfile(data, name, limits, warnings, options)
        except (AudioError, MemoryError):
            raise
        except Exception as exc:  # libsndfile refuses: let FFmpeg try (e.g. mp3-in-wav)
            log.debug("soundfile could not read %s (%s); trying PyAV", name, exc)
            warnings.clear()
    if sink is None:
        sink = read_pyav(data, FORMAT_BY_KIND[kind].demuxer or kind, name, limits, warnings, options)
    if sink.frames == 0:
        raise AudioError("audio_empty", f"{name} holds no audio samples.")
    mono = sink.finish()
    warnings.extend(sink.mix_warnings())
    resample_s = sink.resample_s
    decode_s = time.perf_counter() - t0 - resample_s
    rate, channels = sink.rate, sink.channels
    mono = _to_pcm16_grid(mono, warnings)

    min_samples = max(MIN_MODEL_SAMPLES, int(round(limits.min_duration_s * SAMPLE_RATE)))
    if len(mono) < min_samples:
        raise AudioError(
            "audio_too_short",
            f"{name} is {len(mono) / SAMPLE_RATE:.4f} s long ({len(mono)} samples at 16 kHz); at least "
            f"{min_samples / SAMPLE_RATE:.4f} s ({min_samples} samples) is needed (E2V_MIN_DURATION_S). / "
            f"{name} 时长 {len(mono) / SAMPLE_RATE:.4f} 秒（{len(mono)} 个采样点），"
            f"至少需要 {min_samples / SAMPLE_RATE:.4f} 秒（{min_samples} 个采样点）。",
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
        channels=options.channels,
        channel_index=sink.channel_index,
        audio_stream=sink.stream_index,
    )


def _unreadable(name: str, exc: OSError) -> AudioError:
    reason = exc.strerror or type(exc).__name__
    return AudioError(
        "audio_undecodable", f"{name}: cannot read the file ({reason}). / 无法读取文件 {name}（{reason}）。"
    )


def _to_pcm16_grid(mono: np.ndarray, warnings: list[str]) -> np.ndarray:
    """Put the signal on the 16-bit PCM grid, so processed_audio.wav is exactly what the model saw.

    The model layer-normalises the waveform, so its level does not change the
    result: a signal over full scale (float wav) is scaled down, not clipped.
    Works in place, block by block (``mono`` is ours): no float64 copy of a long signal.
    """
    peak = max((float(np.max(np.abs(mono[i : i + readers.BLOCK_SAMPLES]))) for i in range(0, mono.size, readers.BLOCK_SAMPLES)),
               default=0.0)  # fmt: skip
    if peak > 1.0:
        warnings.append(
            f"samples exceeded full scale (peak {peak:.2f}); scaled down to fit "
            "(the model normalises level, so results are unaffected) / "
            f"采样值超出满量程（峰值 {peak:.2f}），已按比例缩小（模型会归一化音量，结果不受影响）"
        )
    for i in range(0, mono.size, readers.BLOCK_SAMPLES):
        block = mono[i : i + readers.BLOCK_SAMPLES]
        if peak > 1.0:
            block = block / peak
        mono[i : i + readers.BLOCK_SAMPLES] = pcm16_from_float(block).astype(np.float32) / 32768.0
    return mono


def pcm16_from_float(waveform: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1] → int16 (scale 32768, as soundfile reads them back), in blocks (no big float64 copy)."""
    out = np.empty(waveform.shape, np.int16)
    flat_in, flat_out = waveform.reshape(-1), out.reshape(-1)
    for i in range(0, flat_in.size, readers.BLOCK_SAMPLES):
        block = flat_in[i : i + readers.BLOCK_SAMPLES].astype(np.float64) * 32768.0
        np.round(block, out=block)
        np.clip(block, -32768, 32767, out=block)
        flat_out[i : i + readers.BLOCK_SAMPLES] = block
    return out


_ASF_GUID = bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c")


def _sniff_format(data: bytes) -> str | None:
    """Name the container from magic bytes (a kind of ``format.FORMATS``); None when it is not audio we accept."""
    head = data[:16]
    if head[:4] in (b"RIFF", b"RIFX", b"RF64") and data[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"RIFF" and data[8:12] == b"AVI ":
        return "avi"
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
    if data[4:8] == b"ftyp" or (data[4:8] in (b"moov", b"mdat", b"wide", b"free") and len(data) > 16):
        return "mov"  # mp4, m4a, 3gp, mov (QuickTime files may start without ftyp)
    if head[:4] == b"caff":
        return "caf"
    if head == _ASF_GUID:
        return "asf"  # wma, wmv
    if head[:5] == b"#!AMR":
        return "amr"  # "#!AMR\n" (narrow band) and "#!AMR-WB\n"
    if head[:4] == b"wvpk":
        return "wv"
    if head[:4] == b"MAC ":
        return "ape"
    if head[:3] == b"FLV":
        return "flv"
    if head[:4] == b"\x00\x00\x01\xba":
        return "mpeg"
    if _looks_like_mpegts(data):
        return "mpegts"
    if head[:2] == b"\x0b\x77" and len(head) >= 6:
        return "eac3" if (head[5] >> 3) > 10 else "ac3"  # bsid 16: E-AC-3
    if head[:3] == b"ID3":
        return "mp3"
    if head[:4] == b"ADIF":
        return "aac"
    if len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0:
        return "aac" if (head[1] & 0x06) == 0 else "mp3"
    return None


def _looks_like_mpegts(data: bytes) -> bool:
    """Three sync bytes 188 (plain) or 192 (M2TS, a 4-byte time code first) bytes apart."""
    for first, step in ((0, 188), (4, 192)):
        if len(data) > first + 2 * step and all(data[first + i * step] == 0x47 for i in range(3)):
            return True
    return False


def write_wav_pcm16(path: str | os.PathLike | BinaryIO, waveform: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write a mono float waveform as 16-bit PCM wav, bit-exact for signals on the PCM16 grid.

    Reading the file back with soundfile (float32) returns the same samples
    that :func:`decode_audio` produced.
    """
    import soundfile as sf

    sf.write(path, pcm16_from_float(waveform), sample_rate, subtype="PCM_16", format="WAV")
