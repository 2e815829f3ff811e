"""The nine emotion classes: English keys, Chinese names, emoji, and FunASR labels.

FunASR returns labels in ``tokens.txt`` order as bilingual strings
(``'生气/angry'`` … ``'<unk>'``); everything in this package uses the English
keys below, in the same order.
"""

from __future__ import annotations

# English keys in the model's token order.
EMOTIONS: tuple[str, ...] = (
    "angry",
    "disgusted",
    "fearful",
    "happy",
    "neutral",
    "other",
    "sad",
    "surprised",
    "unknown",
)

EMOTIONS_ZH: dict[str, str] = {
    "angry": "生气",
    "disgusted": "厌恶",
    "fearful": "恐惧",
    "happy": "开心",
    "neutral": "中立",
    "other": "其他",
    "sad": "难过",
    "surprised": "吃惊",
    "unknown": "未知",
}

EMOJI: dict[str, str] = {
    "angry": "😠",
    "disgusted": "🤢",
    "fearful": "😨",
    "happy": "😊",
    "neutral": "😐",
    "other": "🤔",
    "sad": "😢",
    "surprised": "😲",
    "unknown": "❓",
}


# One colour per emotion: the UI's cards and charts (ui/text.py, ui/charts.py) and the HTML report (runs/report.py).
EMOTION_COLORS: dict[str, str] = {
    "angry": "#e5484d",
    "disgusted": "#7c9a2d",
    "fearful": "#8e4ec6",
    "happy": "#f5a524",
    "neutral": "#8b8d98",
    "other": "#12a594",
    "sad": "#3e63dd",
    "surprised": "#e54da3",
    "unknown": "#b9bbc6",
}


def english_key(token: str) -> str:
    """Map one FunASR label (``'生气/angry'``, ``'<unk>'``, ``'angry'``) to its English key.

    Args:
        token: a label as found in ``tokens.txt`` or FunASR's output.

    Returns:
        The English key, one of ``EMOTIONS``.

    Raises:
        ValueError: the token is not one of the nine classes.
    """
    tok = token.strip()
    if tok in ("<unk>", "unk", "unknown"):
        return "unknown"
    name = tok.split("/")[-1].strip().lower()
    if name in EMOTIONS:
        return name
    raise ValueError(f"unknown emotion label {token!r}")


def bilingual(en: str, zh: str) -> str:
    """A UI label in both languages: ``"中文 / English"``."""
    return f"{zh} / {en}"
