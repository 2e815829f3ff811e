"""A live stream's audio: raw PCM frames in, 16 kHz signals on disk out, the way a decoded file would be.

* :func:`pcm_block` reads one frame of ``pcm_s16le`` or ``f32le`` samples
  (channels interleaved) into float32 ``[frames, channels]``: int16 / 32768,
  as soundfile reads a 16-bit WAV; NaN or infinity is ``audio_nonfinite``.
* :class:`Signal16k` turns a stream of mono blocks at the source's rate into
  the 16 kHz signal the model sees, exactly as decoding the same samples from
  a file does (``audio/readers.py`` ``MonoSink``: channels averaged in
  float64 to a float32 mix, soxr's streaming resampler at high quality,
  whose output equals one-shot ``soxr.resample`` bit for bit; then the 16-bit
  PCM grid of processed_audio.wav). The one difference: a file's samples
  over full scale are scaled down by its peak, which a stream cannot know in
  advance, so a stream's are clipped (and the take says so).
* :class:`Spool` keeps that signal as 16-bit samples in an unnamed temporary
  file beside the run folders (``O_TMPFILE`` where the system has it: gone
  with the process, whatever happens), so a connection's memory does not
  grow with its take; windows and utterances are read back by position.
* :class:`FixedSegmenter`: ``segmentation=fixed``'s back-to-back pieces, told
  like :class:`engine.vad_stream.SpeechTracker`'s speech spans.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

import numpy as np

from emotion2vec_webui.audio.format import SAMPLE_RATE
from emotion2vec_webui.engine.vad_stream import SpeechEvent
from emotion2vec_webui.errors import AudioError, E2VError, StorageError

MIN_PIECE_S = 0.25  # a fixed piece shorter than this (the take's last) is not an utterance


def pcm_block(data: bytes, dtype: str, channels: int) -> np.ndarray:
    """One frame's samples as float32 ``[frames, channels]``.

    Raises:
        E2VError: ``bad_request`` when the bytes are not whole samples of every channel;
            ``audio_nonfinite`` for NaN or infinite float samples.
    """
    size = np.dtype(dtype).itemsize * channels
    if len(data) % size:
        raise E2VError(
            "bad_request",
            f"A binary frame of {len(data)} bytes does not hold whole samples: it must be a multiple of {size} "
            f"bytes ({channels} channel(s) × {size // channels} bytes). / 二进制帧长度 {len(data)} 字节不是完整采样"
            f"（应为 {size} 字节的整数倍）。",
        )
    raw = np.frombuffer(data, dtype).reshape(-1, channels)
    if raw.dtype.kind == "i":
        return raw.astype(np.float32) / np.float32(32768.0)
    block = raw.astype(np.float32)
    if not np.isfinite(block).all():
        raise AudioError(
            "audio_nonfinite", "The stream sent NaN or infinite samples. / 音频流含有 NaN 或无穷大的采样值。"
        )
    return block


def mix(block: np.ndarray) -> np.ndarray:
    """The mono mix of ``[frames, channels]`` as a decoded file gets it (float64 mean, float32 result)."""
    if block.shape[1] == 1:
        return np.array(block[:, 0], dtype=np.float32)
    return block.mean(axis=1, dtype=np.float64).astype(np.float32)


class Spool:
    """16-bit samples appended to an unnamed temporary file; any range read back as float32.

    Written from one thread, read from others: a read never goes past what was written.
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        folder = Path(folder)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            self._file = tempfile.TemporaryFile(dir=folder, prefix=".stream-")
        except OSError as exc:
            raise _storage_error(exc) from None
        self._fd = self._file.fileno()
        self.samples = 0

    def append(self, pcm: np.ndarray) -> None:
        data = np.ascontiguousarray(pcm, dtype="<i2").tobytes()
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as exc:
            raise _storage_error(exc) from None
        self.samples += len(pcm)

    def read(self, start: int, end: int) -> np.ndarray:
        """Samples ``start`` … ``end - 1`` (clamped to what was written) as float32 on the 16-bit grid."""
        start, end = max(0, start), min(end, self.samples)
        if end <= start:
            return np.zeros(0, np.float32)
        raw = os.pread(self._fd, (end - start) * 2, start * 2)
        return np.frombuffer(raw, "<i2").astype(np.float32) / np.float32(32768.0)

    def close(self) -> None:
        self._file.close()


def _storage_error(exc: OSError) -> StorageError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageError("storage_full", "The output folder's disk is full. / 输出目录所在磁盘已满。")
    return StorageError(
        "storage_unavailable", f"The output folder cannot be written ({exc.strerror}). / 无法写入输出目录。"
    )


class Signal16k:
    """Mono blocks at ``rate`` → the 16 kHz signal on the 16-bit grid, spooled (see the module docstring).

    Args:
        rate: the source's sample rate.
        folder: where the spool file lives (the outputs folder).
    """

    def __init__(self, rate: int, folder: str | os.PathLike) -> None:
        self.rate = rate
        self.spool = Spool(folder)
        self.clipped = 0  # samples clipped to full scale
        self._stream = None
        if rate != SAMPLE_RATE:
            import soxr

            self._stream = soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")

    def add(self, mono: np.ndarray, last: bool = False) -> np.ndarray:
        """Resample, put on the grid and spool ``mono``; the new 16 kHz samples (float32, maybe none)."""
        from emotion2vec_webui.audio.decode import pcm16_from_float

        out = mono if self._stream is None else self._stream.resample_chunk(mono, last=last)
        if out.size == 0:
            return np.zeros(0, np.float32)
        self.clipped += int(np.count_nonzero(np.abs(out) > 32767 / 32768))
        pcm = pcm16_from_float(out)
        self.spool.append(pcm)
        return pcm.astype(np.float32) / np.float32(32768.0)

    def close(self) -> np.ndarray:
        """The resampler's tail (the audio has ended)."""
        return self.add(np.zeros(0, np.float32), last=True) if self._stream is not None else np.zeros(0, np.float32)


class FixedSegmenter:
    """Back-to-back pieces of ``length`` samples: a piece's start is told once it holds :data:`MIN_PIECE_S`."""

    def __init__(self, length: int) -> None:
        self.length = length
        self.min_len = int(MIN_PIECE_S * SAMPLE_RATE)
        self.samples = 0
        self.piece = 0  # the open piece's first sample
        self.told = False

    def push(self, samples: np.ndarray) -> list[SpeechEvent]:
        self.samples += len(samples)
        events: list[SpeechEvent] = []
        while True:
            if not self.told and self.samples - self.piece >= self.min_len:
                self.told = True
                events.append(SpeechEvent("start", self.piece))
            if self.samples < self.piece + self.length:
                return events
            events.append(SpeechEvent("end", self.piece, self.piece + self.length))
            self.piece += self.length
            self.told = False

    def flush(self) -> list[SpeechEvent]:
        if not self.told:
            return []
        self.told = False
        return [SpeechEvent("end", self.piece, self.samples)]
