"""Every recognition option's allowed values and bounds, defined once, with its bilingual error text.

The model is whisper's ``DecodingTask._verify_options``: one place checks every
option before any work. :class:`runs.recognize.RecognizeOptions` calls these
checks in ``__post_init__`` (before any decode, download or model call); the
faces only translate: argparse ``choices``, pydantic ``Literal`` fields and the
OpenAPI enums, Gradio choices and the stream's start message are generated
from :data:`CHOICES` and :data:`BOUNDS`. ``tests/test_options.py`` fails when
an option's values are spelled as a set anywhere else in the package.

Form fields (multipart, Gradio) arrive as text: :func:`parse_bool` is the one
boolean rule — ``1/true/yes/on`` and ``0/false/no/off`` (any case), and a
missing or empty field means the option's default.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from emotion2vec_webui.errors import E2VError


@dataclass(frozen=True)
class Choice:
    """An option with a fixed set of values (an enum): ``values[0]`` is not implied to be the default."""

    name: str  # the option's field name (RecognizeOptions, REST, result.json)
    values: tuple[str, ...]
    default: str
    labels: dict[str, tuple[str, str]] = field(default_factory=dict)  # value → (English, 中文), for menus

    def check(self, value, field_name: str | None = None) -> str:
        """``value`` (any case, spaces trimmed; None or "" → the default) as one of :attr:`values`.

        Raises:
            E2VError: ``bad_request`` naming the field and the values it takes.
        """
        text = self.default if value is None or value == "" else str(value).strip().lower()
        if text in self.values:
            return text
        name, allowed = field_name or self.name, ", ".join(self.values)
        raise E2VError("bad_request", f"{name} must be one of {allowed}, not {str(value)[:40]!r}. "
                                      f"/ {name} 必须是 {allowed} 之一。")  # fmt: skip

    def label(self, value: str) -> str:
        """``"中文 / English"`` for a menu, as ``labels.bilingual`` writes UI labels (the value when it has none)."""
        en, zh = self.labels.get(value, (value, value))
        return f"{zh} / {en}" if en != zh else en

    def menu(self) -> list[tuple[str, str]]:
        """``[(label, value)]`` for a Gradio radio or dropdown."""
        return [(self.label(v), v) for v in self.values]


@dataclass(frozen=True)
class Bounds:
    """An integer option with inclusive bounds."""

    name: str
    low: int
    high: int

    def check(self, value, field_name: str | None = None) -> int | None:
        """``value`` (an int or digits; None or "" → None) within ``[low, high]``.

        Raises:
            E2VError: ``bad_request`` naming the field and its bounds.
        """
        if value is None or value == "":
            return None
        number = None
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, float) and value.is_integer():  # a Gradio Number gives 2.0
            number = int(value)
        elif isinstance(value, str) and _ascii_digits(value.strip().lstrip("-"), 18):
            number = int(value.strip())
        if number is None or not self.low <= number <= self.high:
            name = field_name or self.name
            raise E2VError("bad_request", f"{name} must be an integer from {self.low} to {self.high}, not "
                                          f"{str(value)[:40]!r}. / {name} 必须是 {self.low} 到 {self.high} 之间的整数。")  # fmt: skip
        return number


# -- the options ------------------------------------------------------------------------
GRANULARITY = Choice(
    "granularity", ("utterance", "frame"), "utterance",
    {"utterance": ("Utterance", "整句"), "frame": ("Frame", "逐帧")},
)  # fmt: skip
SEGMENTATION = Choice(
    "segmentation", ("frames", "vad"), "frames",
    {"frames": ("Segments from frame emotions", "按逐帧情感分段"), "vad": ("Split by speech (VAD)", "按语音分句")},
)  # fmt: skip
SPEAKERS = Choice(
    "speakers", ("none", "channels", "auto"), "none",
    {"none": ("One speaker", "单人"), "channels": ("One per channel", "每声道一人"), "auto": ("Automatic", "自动分离")},
)  # fmt: skip
PRECISION = Choice("precision", ("auto", "fp32", "bf16", "fp16", "int8", "onnx", "onnx-int8"), "auto")
HUB = Choice("hub", ("ms", "hf"), "ms", {"ms": ("ModelScope", "ModelScope"), "hf": ("Hugging Face", "Hugging Face")})
CHANNEL_NAMES = Choice(
    "channels", ("mix", "left", "right"), "mix",
    {"mix": ("Mix", "混合"), "left": ("Left", "左声道"), "right": ("Right", "右声道")},
)  # fmt: skip  … or a channel index (CHANNEL_INDEX)
ASR_MODEL_NAMES = ("sensevoice_small", "paraformer_zh")  # or a hub id or a directory (model/conversation_models.py)

NUM_SPEAKERS = Bounds("num_speakers", 1, 32)
AUDIO_STREAM = Bounds("audio_stream", 0, 255)
CHANNEL_INDEX = Bounds("channels", 0, 255)

CHOICES: dict[str, Choice] = {c.name: c for c in (GRANULARITY, SEGMENTATION, SPEAKERS, PRECISION, HUB)}
BOUNDS: dict[str, Bounds] = {b.name: b for b in (NUM_SPEAKERS, AUDIO_STREAM)}

MAX_MODEL_NAME = 300  # characters of asr_model (a name, hub id or directory)
HEAD_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # a head's folder name under E2V_HEADS_DIR
# (a calibration's name too: <E2V_HEADS_DIR>/.calibrations/<name>, runs/stores/calibration_store.py)
MIN_CONFIDENCE = (0.0, 1.0)  # min_confidence's bounds: below it a result is "uncertain" / 不确定 (abstention)
BOOL_TRUE = ("1", "true", "yes", "on")
BOOL_FALSE = ("0", "false", "no", "off")


def parse_bool(value, field_name: str, default: bool = False) -> bool:
    """The one boolean rule for text fields: 1/true/yes/on, 0/false/no/off; None or "" → ``default``.

    Raises:
        E2VError: ``bad_request`` for anything else.
    """
    if isinstance(value, bool):
        return value
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    text = str(value).strip().lower()
    if text in BOOL_TRUE:
        return True
    if text in BOOL_FALSE:
        return False
    raise E2VError("bad_request", f"{field_name} must be true or false, not {str(value)[:40]!r}. "
                                  f"/ {field_name} 必须是 true 或 false。")  # fmt: skip


def _ascii_digits(text: str, most: int) -> bool:
    """0–9 only, at most ``most`` of them: ``str.isdigit()`` also takes "²" and "٣" (int() refuses the first),
    and int() of over 4,300 digits raises (CPython's conversion limit) — each a 500 before."""
    return 0 < len(text) <= most and text.isascii() and text.isdigit()


def normalise_channels(value) -> str:
    """``mix``/``left``/``right``/an index 0–255 (int or digits) → its canonical string; None or "" → ``mix``.

    Raises:
        E2VError: ``bad_request``, the one text for a bad ``channels`` on every face.
    """
    text = "mix" if value is None or value == "" else str(value).strip().lower()
    if text in CHANNEL_NAMES.values:
        return text
    if _ascii_digits(text, 18) and int(text) <= CHANNEL_INDEX.high:
        return str(int(text))
    raise E2VError(
        "bad_request",
        f"channels must be mix, left, right or a channel index from 0 to {CHANNEL_INDEX.high}, not "
        f"{str(value)[:20]!r}. / channels 只能是 mix、left、right 或 0–{CHANNEL_INDEX.high} 的声道序号。",
    )


def _folder_name(name, required: bool, what: tuple[str, str]) -> str | None:
    """A name usable as a folder name (letters, digits, ``_ . -``; 1–64), None for none (unless ``required``);
    ``what``: the thing named, in English and Chinese, for the message."""
    text = "" if name is None else str(name).strip()
    if not text and not required:
        return None
    if not HEAD_NAME_RE.match(text) or ".." in text:
        raise E2VError(
            "bad_request",
            f"{what[0]} {text[:80]!r} must be 1-64 letters, digits, '_', '.' or '-' (starting with a letter or "
            f"digit). / {what[1]} {text[:80]!r} 只能包含字母、数字、“_”“.”“-”(1-64 个字符)。",
        )
    return text


def check_head_name(name, required: bool = False) -> str | None:
    """A head name usable as a folder name (letters, digits, ``_ . -``; 1–64), None for none (unless ``required``).

    Raises:
        E2VError: ``bad_request``.
    """
    return _folder_name(name, required, ("Head name", "分类头名称"))


def check_model_name(value, field_name: str = "asr_model") -> str | None:
    """An ASR model name, hub id or directory (at most :data:`MAX_MODEL_NAME` characters), None for the default."""
    if value is None or not str(value).strip():
        return None
    text = str(value).strip()
    if len(text) > MAX_MODEL_NAME or not text.isprintable():
        raise E2VError("bad_request", f"{field_name} must be a name of at most {MAX_MODEL_NAME} printable "
                                      f"characters. / {field_name} 必须是至多 {MAX_MODEL_NAME} 个可显示字符的名称。")  # fmt: skip
    return text


def check_calibration_name(name, required: bool = False) -> str | None:
    """A calibration name (the head-name rule: letters, digits, ``_ . -``; 1–64), None for none (unless ``required``).

    Raises:
        E2VError: ``bad_request``.
    """
    return _folder_name(name, required, ("Calibration name", "校准名称"))


def check_min_confidence(value, field_name: str = "min_confidence") -> float | None:
    """The abstention threshold: a number from 0 to 1 (text from a form accepted); None or "" → None (no abstention).

    Raises:
        E2VError: ``bad_request`` naming the field and its bounds.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    low, high = MIN_CONFIDENCE
    number = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str) and len(value) <= 40:
        try:
            number = float(value.strip())
        except ValueError:
            number = None
    if number is None or not low <= number <= high:  # NaN fails the comparison too
        raise E2VError("bad_request", f"{field_name} must be a number from {low:g} to {high:g}, not "
                                      f"{str(value)[:40]!r}. / {field_name} 必须是 {low:g} 到 {high:g} 之间的数。")  # fmt: skip
    return number
