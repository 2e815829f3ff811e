"""What a live stream asks for (the ``start`` message of ``/api/v1/stream``), each field's values and bounds once.

:meth:`StreamOptions.from_message` is the one check: every field's type,
allowed values and bounds, with a message in both languages naming the field,
before any audio is taken. The WebSocket face, the ``stream`` command and the
message schemas (``serving/stream_schemas/start.schema.json``, checked
against this module in tests) follow these definitions.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from emotion2vec_webui.engine.conversation import MAX_SPEAKER_CHANNELS
from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.options import GRANULARITY, check_calibration_name, check_head_name, check_min_confidence
from emotion2vec_webui.options import SPEAKERS as SPEAKER_OPTION
from emotion2vec_webui.user_text import clean_name

# encoding → (numpy dtype, bytes per sample) of the samples fed to the take (opus: as its decoder gives them)
ENCODINGS: dict[str, tuple[str, int]] = {"pcm_s16le": ("<i2", 2), "f32le": ("<f4", 4), "opus": ("<f4", 4)}
COMPRESSED = ("opus",)  # frames are container pages (Ogg or WebM), decoded by audio/stream_decode.py
OPUS_RATE = 48000  # what an Opus decoder gives, whatever the start message's sample_rate says
SEGMENTATIONS = ("vad", "fixed")  # utterances from speech detection, or back-to-back pieces of segment_ms
# options.SPEAKERS but auto (a stream has no diarization): channels = one speaker per channel (a stereo call)
SPEAKERS = tuple(v for v in SPEAKER_OPTION.values if v != "auto")
# (low, high) inclusive bounds of the numeric fields
BOUNDS: dict[str, tuple[int, int]] = {
    "sample_rate": (8000, 48000),
    "channels": (1, MAX_SPEAKER_CHANNELS),
    "interval_ms": (250, 10000),
    "window_ms": (500, 30000),
    "segment_ms": (1000, 30000),
}
CHOICES: dict[str, tuple[str, ...]] = {
    "encoding": tuple(ENCODINGS),
    "granularity": GRANULARITY.values,
    "segmentation": SEGMENTATIONS,
    "speakers": SPEAKERS,
}
MAX_NAME = 200  # characters of source_name
CLIENT_ONLY = ("type", "token")  # start fields that are not options


@dataclass(frozen=True)
class StreamOptions:
    sample_rate: int = 16000  # Hz of the audio frames, 8000-48000
    encoding: str = "pcm_s16le"  # pcm_s16le | f32le, little-endian, channels interleaved; opus in Ogg/WebM pages
    channels: int = 1  # interleaved channels per frame, 1-8 (mixed to mono unless speakers=channels)
    granularity: str = "frame"  # the saved run: utterance | frame (result.json frames, frames.csv)
    interval_ms: int = 1000  # an interval message every this much audio
    window_ms: int = 3000  # each interval classifies the audio of this trailing window
    segmentation: str = "vad"  # utterance events: vad (speech detection) | fixed (pieces of segment_ms)
    segment_ms: int = 3000  # fixed segmentation's piece length
    head: str | None = None  # a trained head (GET /api/v1/heads): its label in intervals, utterances and the run
    calibration: str | None = None  # a saved calibration (GET /api/v1/calibrations): calibrated confidence everywhere
    min_confidence: float | None = None  # abstention: below it intervals, utterances and the run are "uncertain"
    speakers: str = "none"  # none | channels (each channel is a speaker: utterances per channel)
    tags: bool = False  # utterance_end carries "tag": "[angry 0.71 · right · 12.4–15.0 s]"
    embedding: bool = False  # the saved run keeps embedding.npy
    source_name: str = "stream.wav"  # result.json audio.source_name

    @property
    def sample_bytes(self) -> int:
        """Bytes of one sample of one channel."""
        return ENCODINGS[self.encoding][1]

    @property
    def compressed(self) -> bool:
        """Frames are pages of a compressed container (opus), not raw samples."""
        return self.encoding in COMPRESSED

    @property
    def decoded_rate(self) -> int:
        """Hz of the samples the take is made of: the frames' own, or the decoder's (48 kHz for opus)."""
        return OPUS_RATE if self.compressed else self.sample_rate

    @property
    def bytes_per_second(self) -> int:
        """Bytes of raw frames per second of audio (of the decoded samples, for opus)."""
        return self.decoded_rate * self.channels * self.sample_bytes

    @classmethod
    def from_message(cls, message: object) -> StreamOptions:
        """The options of a ``start`` message (``type`` and ``token`` are the face's), checked.

        Raises:
            E2VError: ``bad_request`` naming the first field that is unknown, of the wrong type or out of bounds.
        """
        if not isinstance(message, dict):
            raise _bad("the start message must be a JSON object", "start 消息必须是 JSON 对象")
        known = {f.name for f in fields(cls)}
        for key in message:
            if key not in known and key not in CLIENT_ONLY:
                name = str(key)[:40]
                raise _bad(f"unknown field {name!r} in start (known: {', '.join(sorted(known))})",
                           f"start 中有未知字段 {name!r}")  # fmt: skip
        values = {k: v for k, v in message.items() if k in known}
        for key, (low, high) in BOUNDS.items():
            if key in values:
                value = values[key]
                if isinstance(value, bool) or not isinstance(value, int):
                    raise _bad(f"{key} must be an integer", f"{key} 必须是整数")
                if not low <= value <= high:
                    raise _bad(
                        f"{key} must be between {low} and {high}, not {value}", f"{key} 必须在 {low} 到 {high} 之间"
                    )
        for key, allowed in CHOICES.items():
            if key in values and values[key] not in allowed:
                shown = str(values[key])[:40]
                raise _bad(f"{key} must be one of {', '.join(allowed)}, not {shown!r}",
                           f"{key} 必须是 {', '.join(allowed)} 之一")  # fmt: skip
        for key in ("tags", "embedding"):
            if key in values and not isinstance(values[key], bool):
                raise _bad(f"{key} must be true or false", f"{key} 必须是 true 或 false")
        if values.get("head") is not None:
            if not isinstance(values["head"], str) or not values["head"].strip():
                raise _bad("head must be a head's name", "head 必须是分类头的名称")
            values["head"] = check_head_name(values["head"])  # as every face checks it (options.py)
        if values.get("calibration") is not None:
            if not isinstance(values["calibration"], str) or not values["calibration"].strip():
                raise _bad("calibration must be a saved calibration's name", "calibration 必须是已保存校准的名称")
            values["calibration"] = check_calibration_name(values["calibration"])  # options.py, as REST checks it
        if values.get("min_confidence") is not None:
            if isinstance(values["min_confidence"], bool | str):  # JSON: a number (check_min_confidence takes text)
                raise _bad("min_confidence must be a number from 0 to 1", "min_confidence 必须是 0 到 1 之间的数")
            values["min_confidence"] = check_min_confidence(values["min_confidence"])
        if values.get("source_name") is not None:
            value = values["source_name"]
            if not isinstance(value, str) or len(value) > MAX_NAME or not clean_name(value):
                raise _bad(f"source_name must be a name of 1-{MAX_NAME} printable characters",
                           f"source_name 必须是 1–{MAX_NAME} 个可显示字符的名称")  # fmt: skip
            values["source_name"] = clean_name(value)
        options = cls(**values)
        if options.speakers == "channels" and options.channels < 2:
            raise _bad("speakers=channels needs channels of 2 or more", "speakers=channels 需要至少 2 个声道")
        if options.window_ms < options.interval_ms:
            raise _bad("window_ms must not be shorter than interval_ms", "window_ms 不能短于 interval_ms")
        return options


def _bad(english: str, chinese: str) -> E2VError:
    """A refused start field, in both languages (every caller passes the two halves)."""
    message = f"{english}. / {chinese}。"
    return E2VError("bad_request", message)


def tag_line(emotion: str, confidence: float, start_s: float, end_s: float, speaker: str | None = None,
             uncertain: bool = False) -> str:  # fmt: skip
    """An utterance as one compact line for an LLM's context: ``[angry 0.71 · right · 12.4–15.0 s]``;
    abstained (below ``min_confidence``): ``[uncertain: angry 0.41 · right · 12.4–15.0 s]``."""
    who = f" · {speaker}" if speaker else ""
    mark = "uncertain: " if uncertain else ""
    return f"[{mark}{emotion} {confidence:.2f}{who} · {start_s:.1f}–{end_s:.1f} s]"
