"""What the model sees: the one definition of its input format and frame grid, and what decoding returns.

Every module that cuts, counts or times samples and frames imports these;
none defines its own copy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from emotion2vec_webui.errors import AudioError, E2VError
from emotion2vec_webui.options import AUDIO_STREAM
from emotion2vec_webui.options import normalise_channels as _normalise_channels

SAMPLE_RATE = 16000  # Hz: decoded audio is always 16 kHz mono float32
MIN_MODEL_SAMPLES = 400  # the conv front-end's receptive field: fewer samples give no frame
FRAME_HOP = 320  # samples per feature frame (20 ms)
FRAME_HOP_S = FRAME_HOP / SAMPLE_RATE  # 0.02 s


def num_frames(num_samples: int) -> int:
    """Feature frames the model emits for ``num_samples`` samples (``(n - 400) // 320 + 1``, 0 when too short)."""
    return 0 if num_samples < MIN_MODEL_SAMPLES else (num_samples - MIN_MODEL_SAMPLES) // FRAME_HOP + 1


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
    channels: str = "mix"  # the channel choice applied: mix, left, right or an index (DecodeOptions.channels)
    channel_index: int | None = None  # the channel taken (0 = left), None when the channels were mixed
    audio_stream: int | None = None  # which audio stream was decoded (0 = the first), None for wav/flac/aiff/au

    @property
    def duration_s(self) -> float:
        return len(self.waveform) / self.sample_rate


@dataclass(frozen=True)
class DecodeOptions:
    """What to take from a file: which audio stream (PyAV formats) and which channel.

    ``channels``: ``mix`` (the average of all channels, the default), ``left``
    (channel 0), ``right`` (channel 1) or a channel index counted from 0.
    ``audio_stream``: the index among the file's audio streams, counted from 0
    (None: the first).
    """

    channels: str = "mix"
    audio_stream: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", normalise_channels(self.channels))
        try:
            AUDIO_STREAM.check(self.audio_stream)
        except E2VError as exc:
            raise ValueError(exc.message) from None

    def channel_index(self, n_channels: int) -> int | None:
        """The channel to take from a file with ``n_channels`` (None: mix); ValueError when it has no such channel."""
        if self.channels == "mix":
            return None
        index = {"left": 0, "right": 1}.get(self.channels)
        index = int(self.channels) if index is None else index
        if index >= n_channels:
            raise ValueError(
                f"channels={self.channels} needs at least {index + 1} channels; the file has {n_channels}. / "
                f"所选声道 {self.channels} 不存在：文件只有 {n_channels} 个声道。"
            )
        return index


def normalise_channels(value) -> str:
    """``mix``/``left``/``right``/an index (int or digits) → its canonical string; ValueError otherwise.

    The rule and its text are :func:`emotion2vec_webui.options.normalise_channels` (one definition).
    """
    try:
        return _normalise_channels(value)
    except E2VError as exc:
        raise ValueError(exc.message) from None


@dataclass(frozen=True)
class AudioFormat:
    kind: str  # our name for it, reported as result.json's audio.container
    demuxer: str | None  # the FFmpeg demuxer we name explicitly (None: read with libsndfile)
    extensions: tuple[str, ...]  # file name extensions, for batch folders and the UI's upload filter
    description: str


# The accepted formats: the one list (decode.py sniffs them by magic bytes; batch and `formats` read it).
# Every FFmpeg demuxer here reads only the bytes it is given: no playlists (hls, dash, concat), image
# sequences, device inputs or external references (mov's data references stay off: enable_drefs=0).
FORMATS: tuple[AudioFormat, ...] = (
    AudioFormat("wav", None, (".wav", ".wave", ".rf64", ".bwf"), "WAV / RF64 (PCM, float, u8, mu-law, …)"),
    AudioFormat("flac", None, (".flac",), "FLAC"),
    AudioFormat("aiff", None, (".aiff", ".aif", ".aifc"), "AIFF / AIFF-C"),
    AudioFormat("au", None, (".au", ".snd"), "Sun/NeXT au"),
    AudioFormat("mp3", "mp3", (".mp3",), "MP3"),
    AudioFormat("aac", "aac", (".aac",), "AAC (ADTS / ADIF)"),
    AudioFormat("ogg", "ogg", (".ogg", ".oga", ".opus", ".spx"), "Ogg: Vorbis, Opus, Speex, FLAC"),
    AudioFormat("mov", "mov", (".mp4", ".m4a", ".m4b", ".m4v", ".mov", ".3gp", ".3g2"),
                "MP4 / MOV / M4A / 3GP (video files: the first audio stream)"),  # fmt: skip
    AudioFormat("matroska", "matroska", (".mkv", ".mka", ".webm"), "Matroska / WebM (video files too)"),
    AudioFormat("asf", "asf", (".wma", ".asf", ".wmv"), "Windows Media (WMA, ASF, WMV)"),
    AudioFormat("amr", "amr", (".amr",), "AMR-NB / AMR-WB (phone recordings)"),
    AudioFormat("caf", "caf", (".caf",), "Apple Core Audio Format"),
    AudioFormat("wv", "wv", (".wv",), "WavPack"),
    AudioFormat("ape", "ape", (".ape",), "Monkey's Audio"),
    AudioFormat("ac3", "ac3", (".ac3",), "Dolby Digital AC-3"),
    AudioFormat("eac3", "eac3", (".eac3", ".ec3"), "Dolby Digital Plus E-AC-3"),
    AudioFormat("avi", "avi", (".avi",), "AVI video (the first audio stream)"),
    AudioFormat("flv", "flv", (".flv",), "Flash video (the first audio stream)"),
    AudioFormat("mpeg", "mpeg", (".mpg", ".mpeg", ".vob"), "MPEG program stream (the first audio stream)"),
    AudioFormat("mpegts", "mpegts", (".mts", ".m2ts"), "MPEG transport stream (camcorders; .ts too)"),
)
FORMAT_BY_KIND = {f.kind: f for f in FORMATS}
AUDIO_EXTENSIONS = frozenset(ext for f in FORMATS for ext in f.extensions)


@dataclass(frozen=True)
class AudioLimits:
    max_bytes: int = 100 * 1024 * 1024  # E2V_MAX_UPLOAD_MB
    max_duration_s: float = 600.0  # E2V_MAX_DURATION_S
    min_duration_s: float = 0.1  # E2V_MIN_DURATION_S

    @classmethod
    def from_settings(cls, settings) -> AudioLimits:
        return cls(settings.max_upload_bytes, settings.max_duration_s, settings.min_duration_s)

    @property
    def max_input_samples(self) -> int:
        """The decode budget in input samples (frames × channels): ``max_duration_s`` of 48 kHz stereo.

        Decoding costs in proportion to the samples read, not to the seconds
        kept: 600 s of 8-channel 192 kHz is 16 times 600 s of 48 kHz stereo.
        A file over this budget is ``audio_too_long`` (readers.py).
        """
        return int(self.max_duration_s * BUDGET_RATE * BUDGET_CHANNELS)


BUDGET_RATE = 48000  # the decode budget is E2V_MAX_DURATION_S of audio at this rate …
BUDGET_CHANNELS = 2  # … with this many channels (AudioLimits.max_input_samples)


# -- what the limits allow ---------------------------------------------------------------------------
# Checked twice by both readers (readers.py): on the length the container declares, before decoding
# (soundfile's frame count is exact: a FLAC's STREAMINFO, a WAV's data size clamped to the bytes present;
# PyAV's stream or container duration may be an estimate from the bit rate, so it must be 10 % over), and
# on what each decoded block holds (MonoSink). A silent 8-channel 192 kHz FLAC that declares 900 s is then
# refused in milliseconds, and one that declares nothing stops after 37.5 s of its audio (600 s cap).

_DECLARED_SLACK = 1.10  # a duration FFmpeg declares may be an estimate: refuse on it only when 10 % over


def frame_cap(rate: int, channels: int, limits: AudioLimits) -> int:
    """Frames a file of ``rate`` × ``channels`` may hold: the duration cap or the input-sample budget, the lower."""
    return min(int(limits.max_duration_s * rate), limits.max_input_samples // max(1, channels))


def over_limit(name: str, limits: AudioLimits, rate: int, channels: int, declared_s: float | None = None) -> AudioError:
    """``audio_too_long`` for a file over :func:`frame_cap`, naming the limit that binds."""
    if limits.max_input_samples // max(1, channels) >= int(limits.max_duration_s * rate):
        return AudioError(
            "audio_too_long",
            f"{name} is longer than the {limits.max_duration_s:g} s limit (E2V_MAX_DURATION_S). / "
            f"{name} 超过 {limits.max_duration_s:g} 秒的时长上限。",
        )
    allowed_s = limits.max_input_samples / (rate * channels)
    what = f"declares {declared_s:.1f} s" if declared_s is not None else "is longer"
    what_zh = f"声明时长 {declared_s:.1f} 秒" if declared_s is not None else "更长"
    return AudioError(
        "audio_too_long",
        f"{name} {what} at {rate} Hz × {channels} channels; decoding is limited to the samples of "
        f"{limits.max_duration_s:g} s of 48 kHz stereo (E2V_MAX_DURATION_S), which is {allowed_s:.1f} s "
        f"at this rate and channel count. / {name} 为 {rate} Hz × {channels} 声道，{what_zh}；解码量上限为 "
        f"{limits.max_duration_s:g} 秒 48 kHz 立体声的采样数，按此采样率和声道数即 {allowed_s:.1f} 秒。",
    )


def check_declared(name: str, limits: AudioLimits, rate: int, channels: int, seconds: float | None, exact: bool) -> None:
    """Refuse a file from the length its container declares, before a sample is decoded.

    Args:
        seconds: the declared length (None or not positive: unknown, nothing to check).
        exact: the length is counted, not estimated (soundfile); otherwise it must be 10 % over a limit.
    """
    if seconds is None or not (0 < seconds < 1e9) or rate <= 0 or channels <= 0:
        return
    if seconds * rate * (1.0 if exact else 1 / _DECLARED_SLACK) > frame_cap(rate, channels, limits):
        raise over_limit(name, limits, rate, channels, seconds)


# Packets and frames cost time however few samples they hold (~0.1 ms of PyAV and numpy each): 1.4 MB of
# one-sample PCM packets in Matroska kept a decoder busy 49 s for 1 s of audio, far under every sample limit.
MIN_FRAME_S = 0.0025  # the shortest frame of a codec we accept (Opus): a decode takes one per this much, at most


def piece_cap(limits: AudioLimits) -> int:
    """Packets (and, apart, frames) one PyAV decode may take: one per :data:`MIN_FRAME_S` of the duration cap.

    240,000 for 600 s: a 600 s Opus of its shortest (2.5 ms) frames fits; a real file's frames are longer.
    """
    return int(limits.max_duration_s / MIN_FRAME_S) + 16  # + headers and the decoder's flush


def too_many_pieces(name: str, limits: AudioLimits) -> AudioError:
    """``audio_too_large_decoded`` for a file cut into more packets or frames than :func:`piece_cap`."""
    cap, ms = piece_cap(limits), MIN_FRAME_S * 1000
    return AudioError(
        "audio_too_large_decoded",
        f"{name} is cut into more than {cap} packets or frames (one per {ms:g} ms of the {limits.max_duration_s:g} s "
        f"limit, E2V_MAX_DURATION_S): decoding it would hold a decoder far longer than its audio is worth. / "
        f"{name} 被切分成超过 {cap} 个数据包或帧（按 {limits.max_duration_s:g} 秒上限每 {ms:g} 毫秒一个），"
        "解码会长时间占用解码进程。",
    )
