"""The two readers behind :func:`decode.decode_audio`: soundfile for wav/flac/aiff/au, PyAV for the rest.

Both mix each decoded block to mono at once and stream it through soxr
(:class:`MonoSink`), so memory is bound by one block, not by the file's
channels × rate; both enforce the limits (duration, input samples) on the
length the container declares before decoding (``format.check_declared``), and
on each block while decoding; PyAV's packets and frames are counted too
(``format.piece_cap``: each costs time however few samples it holds), and
frames under ``SMALL_ROWS`` are mixed in batches. Why PyAV's planes are read by hand: ``decode.py``.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Iterator

import numpy as np

from emotion2vec_webui.audio.declared_length import header_duration, ogg_ends_cleanly, wav_declared_frames
from emotion2vec_webui.audio.format import (
    SAMPLE_RATE,
    AudioLimits,
    DecodeOptions,
    check_declared,
    frame_cap,
    over_limit,
    piece_cap,
    too_many_pieces,
)
from emotion2vec_webui.errors import AudioError

log = logging.getLogger(__name__)

MIN_SOURCE_RATE = 8000  # docs/README.md: any rate from 8 kHz …
MAX_SOURCE_RATE = 192000  # … to 192 kHz
MAX_CHANNELS = 256  # sanity bound against lying headers
BLOCK_SAMPLES = 1 << 20  # values (frames × channels) per block mixed to mono at once: 4 MB as float32
SMALL_ROWS = 256  # MonoSink mixes and resamples blocks of fewer frames in batches (the per-call cost, not samples)
_STAT_STEP = 8  # MonoSink's mix warnings measure channel energies on every 8th frame


def _check_rate_channels(rate: int, channels: int, name: str) -> None:
    if not (MIN_SOURCE_RATE <= rate <= MAX_SOURCE_RATE):
        raise AudioError(
            "audio_undecodable",
            f"{name} declares a sample rate of {rate} Hz; supported rates are 8–192 kHz.",
        )
    if not (1 <= channels <= MAX_CHANNELS):
        raise AudioError("audio_undecodable", f"{name} declares {channels} channels.")


class _ClampedBytesIO(io.BytesIO):
    """BytesIO that treats a seek before the start as a seek to 0.

    libsndfile probes corrupt headers with negative seeks; BytesIO raises, and
    soundfile's cffi callback then prints a traceback to stderr and returns 0.
    Clamping returns the same 0, without the noise in the server log.
    """

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return super().seek(max(offset, 0) if whence == io.SEEK_SET else offset, whence)


def _no_stream(name: str, what: str) -> AudioError:
    return AudioError("audio_no_stream", f"{name}: {what}")


def _channel_index(options: DecodeOptions, channels: int, name: str) -> int | None:
    try:
        return options.channel_index(channels)
    except ValueError as exc:
        raise _no_stream(name, str(exc)) from None


def read_soundfile(
    data: bytes, name: str, limits: AudioLimits, warnings: list[str], options: DecodeOptions = DecodeOptions()
) -> MonoSink:
    import soundfile as sf

    with sf.SoundFile(_ClampedBytesIO(data)) as f:
        rate, channels = int(f.samplerate), int(f.channels)
        _check_rate_channels(rate, channels, name)
        if options.audio_stream not in (None, 0):
            raise _no_stream(
                name, f"audio_stream={options.audio_stream}: the file has one audio stream. / 文件只有一个音频流。"
            )
        declared = f.frames if 0 < f.frames < 2**62 else None  # 2**63 - 1: a FLAC that does not say
        check_declared(name, limits, rate, channels, declared / rate if declared else None, exact=True)
        sink = MonoSink(rate, channels, name, limits, _channel_index(options, channels, name))
        block_frames = max(1, BLOCK_SAMPLES // channels)
        while True:
            block = f.read(block_frames, dtype="float32", always_2d=True)
            if block.shape[0] == 0:
                break
            sink.add(block)
    declared = wav_declared_frames(data, channels)
    if declared is not None and declared > sink.frames:
        warnings.append(
            f"file appears truncated: header declares {declared / rate:.2f} s, "
            f"decoded {sink.frames / rate:.2f} s; analysed what was decoded / "
            f"文件似乎不完整：文件头声明 {declared / rate:.2f} 秒，解码出 {sink.frames / rate:.2f} 秒；已分析解码出的部分"
        )
    return sink


def read_pyav(
    data: bytes,
    kind: str,
    name: str,
    limits: AudioLimits,
    warnings: list[str],
    options: DecodeOptions = DecodeOptions(),
) -> MonoSink:
    """Decode with the FFmpeg demuxer ``kind`` (never auto-detected; mov's external data references stay off)."""
    import av

    try:
        container = av.open(
            io.BytesIO(data),
            mode="r",
            format=kind if kind != "wav" else None,
            options={"enable_drefs": "0"} if kind == "mov" else None,
        )
    except MemoryError:
        raise
    except Exception as exc:
        raise AudioError("audio_undecodable", f"{name} cannot be decoded as {kind}: {_short(exc)}") from exc
    with container:
        streams = [s for s in container.streams if s.type == "audio"]
        if not streams:
            raise _no_stream(name, "the file has no audio stream (a video without sound?). / 文件中没有音频流。")
        index = options.audio_stream or 0
        if index >= len(streams):
            raise _no_stream(
                name,
                f"audio_stream={index} asked for, but the file has {len(streams)} audio stream(s) (counted from 0). "
                f"/ 文件只有 {len(streams)} 个音频流。",
            )
        stream = streams[index]
        if stream.codec_context is None:  # FFmpeg has no decoder for it (e.g. a wav with a bogus format tag)
            raise AudioError("audio_undecodable", f"{name} uses an audio codec that cannot be decoded.")
        rate = int(stream.codec_context.sample_rate or stream.rate or 0)
        channels = int(stream.codec_context.channels or 0)
        _check_rate_channels(rate, max(channels, 1), name)
        # A container's duration is its longest stream's (a video's): used only when the audio is all it holds.
        declared = header_duration(container, stream, whole=len(container.streams) == 1)
        check_declared(name, limits, rate, max(channels, 1), declared, exact=False)
        sink: MonoSink | None = None
        error: Exception | None = None
        try:
            for frame in _counted_frames(container, stream, name, limits):
                if frame.samples == 0:
                    continue
                if frame.sample_rate and frame.sample_rate != rate:
                    raise AudioError("audio_undecodable", f"{name} changes sample rate mid-stream.")
                n_ch = frame.layout.nb_channels or 1
                if sink is None:
                    _check_rate_channels(rate, n_ch, name)
                    sink = MonoSink(rate, n_ch, name, limits, _channel_index(options, n_ch, name))
                    sink.stream_index = index
                elif n_ch != sink.channels:
                    raise AudioError("audio_undecodable", f"{name} changes channel count mid-stream.")
                for block in _frame_blocks(frame, name):
                    sink.add(block)
        except (AudioError, MemoryError):
            raise
        except Exception as exc:  # corrupt data after a good start: keep what decoded
            error = exc
        header_s = header_duration(container, stream)
    if sink is None or sink.frames == 0:
        if error is not None:
            raise AudioError("audio_undecodable", f"{name} cannot be decoded: {_short(error)}") from error
        raise AudioError("audio_empty", f"{name} holds no audio samples.")
    decoded_s = sink.frames / rate
    if error is not None:
        warnings.append(f"decoding stopped at {decoded_s:.2f} s ({_short(error)}); analysed what was decoded / "
                        f"解码在 {decoded_s:.2f} 秒处中止；已分析解码出的部分")  # fmt: skip
    elif kind == "ogg" and not ogg_ends_cleanly(data):
        warnings.append(f"file appears truncated (the Ogg stream has no end page); analysed {decoded_s:.2f} s / "
                        f"文件似乎不完整（Ogg 流没有结束页）；已分析 {decoded_s:.2f} 秒")  # fmt: skip
    elif header_s is not None and decoded_s < header_s - max(0.25, 0.02 * header_s):
        warnings.append(
            f"file appears truncated: header says {header_s:.2f} s, decoded {decoded_s:.2f} s; "
            f"analysed what was decoded / 文件似乎不完整：文件头为 {header_s:.2f} 秒，解码出 {decoded_s:.2f} 秒；"
            "已分析解码出的部分"
        )
    return sink


def _counted_frames(container, stream, name: str, limits: AudioLimits) -> Iterator:
    """``container.decode(stream)`` (what PyAV does inside it), stopped past :func:`format.piece_cap` packets
    or frames: a file cut into one-sample packets would otherwise hold a decoder until its timeout."""
    cap, packets, frames = piece_cap(limits), 0, 0
    for packet in container.demux(stream):
        packets += 1
        for frame in packet.decode():
            frames += 1
            if frames > cap:
                raise too_many_pieces(name, limits)
            yield frame
        if packets > cap:
            raise too_many_pieces(name, limits)


# PyAV sample format → numpy dtype (planar and packed share one).
_PYAV_DTYPES = {"u8": "u1", "s16": "<i2", "s32": "<i4", "s64": "<i8", "flt": "<f4", "dbl": "<f8"}


def _frame_blocks(frame, name: str) -> Iterator[np.ndarray]:
    """One PyAV frame as float32 ``[samples, channels]`` blocks of at most ``BLOCK_SAMPLES`` values.

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
    rows = max(1, BLOCK_SAMPLES // n_ch)
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


class MonoSink:
    """Takes float32 ``[frames, channels]`` blocks; keeps only the 16 kHz mono signal.

    Each block is checked (finite, duration cap), averaged to mono (float64
    accumulate, float32 result, as a whole-file mean would give) — or, with
    ``channel`` set, reduced to that one channel, unchanged — and pushed
    through a streaming soxr resampler, whose output equals one-shot
    ``soxr.resample`` bit for bit.

    While mixing it also sums each channel's energy and the mix's, for
    :meth:`mix_warnings`: channels nearly opposite in phase (the mix is over
    6 dB below the channels' mean energy: a correlation under -0.5) or more
    than 20 dB apart in level (a quiet voice drowned in the mix).
    """

    def __init__(self, rate: int, channels: int, name: str, limits: AudioLimits, channel: int | None = None) -> None:
        self.rate, self.channels, self.name, self.limits = rate, channels, name, limits
        self.channel_index = channel  # None: mix all channels
        self.stream_index = 0
        self._channel_energy = np.zeros(channels, np.float64)
        self._mix_energy = 0.0
        self._stat_frames = 0  # frames the energies were summed over
        self.frames = 0
        self.cap = frame_cap(rate, channels, limits)  # the duration cap or the input-sample budget, the lower
        self.resample_s = 0.0
        self._out = np.empty(min(int(self.cap * SAMPLE_RATE / rate) + 4096, 3600 * SAMPLE_RATE), np.float32)
        self._n = 0
        self._small: list[np.ndarray] = []  # blocks under SMALL_ROWS frames, mixed together once they add up
        self._small_rows = 0
        self._stream = None
        if rate != SAMPLE_RATE:
            import soxr

            self._stream = soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")

    def add(self, block: np.ndarray) -> None:
        if block.shape[0] == 0:
            return
        self.frames += block.shape[0]
        if self.frames > self.cap:
            raise over_limit(self.name, self.limits, self.rate, self.channels)
        if block.shape[0] < SMALL_ROWS or self._small:  # tiny frames: one numpy and soxr call per SMALL_ROWS
            self._small.append(block)
            self._small_rows += block.shape[0]
            if self._small_rows < SMALL_ROWS:
                return
            block, self._small, self._small_rows = np.concatenate(self._small), [], 0
        self._mix(block)

    def _mix(self, block: np.ndarray) -> None:
        if not np.isfinite(block).all():
            raise AudioError("audio_nonfinite", f"{self.name} contains NaN or infinite sample values.")
        if self.channel_index is not None:
            mono = np.array(block[:, self.channel_index], dtype=np.float32)  # exactly that channel, a copy
        elif block.shape[1] > 1:
            mix = block.mean(axis=1, dtype=np.float64)
            # Every 8th frame is plenty for the warnings' energies, and keeps their cost small beside the mix.
            sub, mix_sub = block[::_STAT_STEP], mix[::_STAT_STEP]
            self._channel_energy += np.einsum("ij,ij->j", sub, sub, dtype=np.float64)
            self._mix_energy += float(np.einsum("i,i->", mix_sub, mix_sub))
            self._stat_frames += sub.shape[0]
            mono = mix.astype(np.float32)
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

    def mix_warnings(self) -> list[str]:
        """Warnings about the mono mix of several channels (none when one channel was chosen or all are silent)."""
        if self.channel_index is not None or self.channels < 2 or self._stat_frames == 0:
            return []
        energy = self._channel_energy / self._stat_frames  # mean square per channel
        mean = float(energy.mean())
        if mean <= 1e-10:  # all channels below -100 dBFS: nothing to hide
            return []
        out = []
        ratio = self._mix_energy / self._stat_frames / mean
        if ratio < 0.25:
            db = -10 * np.log10(max(ratio, 1e-12))
            out.append(
                f"the channels are nearly opposite in phase: the mono mix is {db:.0f} dB quieter than the channels, "
                "so it can hide a voice; try channels=left or channels=right / "
                f"各声道相位近乎相反：混合后的单声道比原声道低 {db:.0f} dB，可能掩盖人声；请尝试 channels=left 或 right"
            )
        loud, quiet = int(np.argmax(energy)), int(np.argmin(energy))
        if energy[quiet] * 100 < energy[loud]:
            if energy[quiet] <= 1e-12:
                gap, gap_zh = f"is silent, unlike channel {loud}", "无声"
            else:
                db = 10 * np.log10(energy[loud] / energy[quiet])
                gap, gap_zh = f"is {db:.0f} dB quieter than channel {loud}", f"比声道 {loud} 低 {db:.0f} dB"
            out.append(
                f"channel {quiet} {gap}: the mix may hide a quieter voice; try channels={quiet} or channels={loud} "
                f"/ 声道 {quiet} {gap_zh}：混合后可能掩盖较轻的人声；请尝试 channels={quiet} 或 channels={loud}"
            )
        return out

    def finish(self) -> np.ndarray:
        """The whole 16 kHz mono signal, a fresh array of ours (empty when no frame was added)."""
        if self.frames == 0:
            return np.zeros(0, np.float32)
        if self._small:
            self._mix(np.concatenate(self._small))
            self._small, self._small_rows = [], 0
        self._push(np.zeros(0, np.float32), last=True)
        return self._out[: self._n]


def _short(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."
