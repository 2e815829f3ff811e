"""A conversation's turns as subtitles and tables: ``transcript.srt``, ``transcript.vtt``, ``turns.csv``, ``turns.jsonl``.

One cue per turn, its text ``[S1 · 😠 angry 0.82] what was said`` (just the
bracket when there is no transcript). The name in the cue is the speaker's
``label`` in result.json (the id until a rename, :mod:`speaker_names`);
``turns.csv`` has both (``speaker``: the id, ``speaker_label``: the name). The subtitle files are composed with
the ``srt`` package (sequence numbers, ``HH:MM:SS,mmm`` stamps, blank lines
in content are what breaks hand-written SRT) and ``webvtt-py`` (the
``WEBVTT`` header, ``.``-millisecond stamps, cue rules); both are small,
pure-Python and well kept, and the tests parse the files back with them.
``turns.jsonl`` is for programs (a voice-agent pipeline handing turns to an
LLM): one compact JSON object per turn, with its speaker's name, text, emotion,
confidence, the turn's own balance and the call's arc at its middle
(``engine/call_summary.py``).
The run folder writer (``storage.write_run``) writes these texts inside its
temporary folder, so they appear atomically with the rest of the run.
"""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import timedelta

from emotion2vec_webui.engine.call_summary import arc_at, balance, summary_for_result
from emotion2vec_webui.labels import EMOJI, EMOTIONS
from emotion2vec_webui.user_text import csv_row

TRANSCRIPT_SRT, TRANSCRIPT_VTT, TURNS_CSV, TURNS_JSONL = "transcript.srt", "transcript.vtt", "turns.csv", "turns.jsonl"
TURN_COLUMNS = ("index", "speaker", "speaker_label", "start_s", "end_s", "emotion", "emotion_zh", "confidence", "asr_emotion",
                "language", "text") + tuple(f"score_{k}" for k in EMOTIONS)  # fmt: skip


def cue_text(turn: dict, labels: dict[str, str] | None = None) -> str:
    """``[S1 · 😠 angry 0.82] text`` on one line (no blank line or ``-->`` can break a cue).

    ``labels`` maps speaker ids to display names (result.json ``speakers[].label``); the id when absent.
    """
    name = re.sub(r"\s+", " ", (labels or {}).get(turn["speaker"]) or turn["speaker"]).replace("-->", "→")
    head = f"[{name} · {EMOJI[turn['emotion']]} {turn['emotion']} {turn['confidence']:.2f}]"
    text = re.sub(r"\s+", " ", (turn.get("text") or "")).replace("-->", "→").strip()
    return f"{head} {text}" if text else head


def _span(turn: dict) -> tuple[float, float]:
    start = max(0.0, float(turn["start_s"]))
    return start, max(start + 0.001, float(turn["end_s"]))


def srt_text(turns: list[dict], labels: dict[str, str] | None = None) -> str:
    """The turns as SubRip (composed by the ``srt`` package); ``labels``: speaker names (:func:`cue_text`)."""
    import srt

    subs = [
        srt.Subtitle(index=i + 1, start=timedelta(seconds=s), end=timedelta(seconds=e), content=cue_text(t, labels))
        for i, t in enumerate(turns)
        for s, e in [_span(t)]
    ]
    return srt.compose(subs, reindex=False)


def _vtt_stamp(seconds: float) -> str:
    ms = int(round(seconds * 1000))
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"


def vtt_text(turns: list[dict], labels: dict[str, str] | None = None) -> str:
    """The turns as WebVTT (composed by ``webvtt-py``), each cue named by its turn (``turn-0`` …)."""
    import webvtt

    vtt = webvtt.WebVTT()
    for t in turns:
        s, e = _span(t)
        vtt.captions.append(webvtt.Caption(_vtt_stamp(s), _vtt_stamp(e), cue_text(t, labels), identifier=f"turn-{t['index']}"))
    return vtt.content


def turns_csv_text(turns: list[dict], extra: dict | None = None, labels: dict[str, str] | None = None) -> str:
    """One row per turn (:data:`TURN_COLUMNS`, after the ``extra`` columns when given, e.g. the file for batch).

    Text cells that look like a formula (``=…``, ``+…``, ``-…``, ``@…``) get a leading ``'`` (:func:`user_text.csv_cell`).
    """
    out = io.StringIO()
    extra = extra or {}
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(csv_row(list(extra) + list(TURN_COLUMNS)))
    for t in turns:
        writer.writerow(csv_row(list(extra.values()) + turn_row(t, labels)))
    return out.getvalue()


def turn_row(turn: dict, labels: dict[str, str] | None = None) -> list:
    """The :data:`TURN_COLUMNS` values of one turn (``labels``: speaker names, the id when absent)."""
    label = (labels or {}).get(turn["speaker"]) or turn["speaker"]
    base = [turn["index"], turn["speaker"], label, turn["start_s"], turn["end_s"], turn["emotion"], turn["emotion_zh"],
            turn["confidence"], turn.get("asr_emotion") or "", turn.get("language") or "",
            re.sub(r"\s+", " ", turn.get("text") or "").strip()]  # one line per turn  # fmt: skip
    return base + [turn["scores"][k] for k in EMOTIONS]


def conversation_files(result: dict) -> dict[str, str]:
    """The conversation files of a result.json (none when it has no ``turns``)."""
    turns = result.get("turns")
    if turns is None:
        return {}
    labels = speaker_labels(result)
    return {TRANSCRIPT_SRT: srt_text(turns, labels), TRANSCRIPT_VTT: vtt_text(turns, labels),
            TURNS_CSV: turns_csv_text(turns, labels=labels), TURNS_JSONL: turns_jsonl_text(result)}  # fmt: skip


def turn_records(result: dict) -> list[dict]:
    """One compact record per turn: ``index, speaker, label, start_s, end_s, text, emotion, confidence, balance, arc``.

    ``balance`` is the turn's own (happy − angry − disgusted − fearful − sad); ``arc`` is the call's smoothed
    balance at the turn's middle (result.json ``summary.arc``; recomputed for a run written before it). ``text``
    is null without a transcript.
    """
    turns = result.get("turns") or []
    summary = result.get("summary") or summary_for_result(result)
    labels = speaker_labels(result)
    return [{
        "index": t["index"], "speaker": t["speaker"], "label": labels.get(t["speaker"]) or t["speaker"],
        "start_s": t["start_s"], "end_s": t["end_s"],
        "text": re.sub(r"\s+", " ", t["text"]).strip() if t.get("text") is not None else None,
        "emotion": t["emotion"], "confidence": t["confidence"], "balance": round(balance(t["scores"]), 4),
        "arc": arc_at(summary, (t["start_s"] + t["end_s"]) / 2) if summary else None,
    } for t in turns]  # fmt: skip


def turns_jsonl_text(result: dict) -> str:
    """``turns.jsonl``: :func:`turn_records`, one JSON object per line (UTF-8, not ASCII-escaped)."""
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in turn_records(result))


def speaker_labels(result: dict) -> dict[str, str]:
    """Speaker id → display name (``speakers[].label``) of a result.json."""
    return {s["id"]: s.get("label") or s["id"] for s in result.get("speakers") or []}
