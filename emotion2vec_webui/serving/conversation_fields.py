"""The conversation artifacts of a run folder, as ``GET /api/v1/runs/{id}/{artifact}`` serves them.

The conversation fields of ``POST /api/v1/recognize`` (``speakers``, ``num_speakers``,
``transcribe``, ``asr_model``) are ``RecognizeOptions`` fields like the others: defined
in ``options.py``, checked when the options are built (``serving/api.py``).
"""

from __future__ import annotations

# The conversation artifacts of a run folder (runs/transcripts.py), for GET /api/v1/runs/{id}/{artifact}.
CONVERSATION_MEDIA_TYPES = {
    "transcript.srt": "application/x-subrip; charset=utf-8",
    "transcript.vtt": "text/vtt; charset=utf-8",
    "turns.csv": "text/csv; charset=utf-8",
    "turns.jsonl": "application/jsonl; charset=utf-8",
}
