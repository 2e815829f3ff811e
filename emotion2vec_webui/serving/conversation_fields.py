"""The conversation fields of ``POST /api/v1/recognize``: ``speakers``, ``num_speakers``, ``transcribe``, ``asr_model``.

The same fields in a multipart form and in the JSON body; each becomes the
matching ``RecognizeOptions`` field (``runs/conversation_run.py``).
"""

from __future__ import annotations

import dataclasses

from emotion2vec_webui.engine.conversation import SPEAKER_MODES
from emotion2vec_webui.errors import E2VError

# The conversation artifacts of a run folder (runs/transcripts.py), for GET /api/v1/runs/{id}/{artifact}.
CONVERSATION_MEDIA_TYPES = {
    "transcript.srt": "application/x-subrip; charset=utf-8",
    "transcript.vtt": "text/vtt; charset=utf-8",
    "turns.csv": "text/csv; charset=utf-8",
}


def _bool(value, field: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("", "0", "false", "no", "off"):
        return False
    raise E2VError("bad_request", f"{field} must be true or false, not {str(value)[:40]!r}. / {field} 必须是 true 或 false。")


def with_conversation(options, speakers=None, num_speakers=None, transcribe=None, asr_model=None):
    """``options`` with the conversation fields set (form strings or JSON values).

    Raises:
        E2VError: ``bad_request`` for an unknown mode, a bad count or a bad flag.
    """
    mode = str(speakers or "none").strip().lower()
    if mode not in SPEAKER_MODES:
        raise E2VError("bad_request", f"speakers must be one of {', '.join(SPEAKER_MODES)}. / speakers 必须是 "
                       f"{', '.join(SPEAKER_MODES)} 之一。")  # fmt: skip
    count = None
    if num_speakers not in (None, ""):
        try:
            count = int(num_speakers)
        except (TypeError, ValueError):
            count = -1
        if not 1 <= count <= 32:
            raise E2VError("bad_request", "num_speakers must be between 1 and 32. / num_speakers 必须在 1 到 32 之间。")
    asr = str(asr_model).strip()[:300] if asr_model not in (None, "") else None
    return dataclasses.replace(
        options, speakers=mode, num_speakers=count, transcribe=_bool(transcribe or False, "transcribe"), asr_model=asr
    )
