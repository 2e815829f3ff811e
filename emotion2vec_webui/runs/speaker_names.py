"""Renaming the speakers of a saved conversation run (``left`` → ``Agent``), so the names stay with the run.

A speaker's ``id`` (``left``, ``S1`` …) never changes: turns, ``most_negative_turns``,
the VTT cue ids and ``turns.csv``'s ``speaker`` column keep it. The name people
read is the speaker's ``label`` in result.json (the id until renamed), and the
files made from the turns show it: the cue heads of ``transcript.srt`` /
``transcript.vtt`` (``[Agent · 😠 angry 0.82] …``) and ``turns.csv``'s
``speaker_label`` column, and result.json's ``summary`` (its speakers' labels and the
agent/customer comparison, which depends on the names: ``engine/call_summary.py``).

:func:`rename_speakers` rewrites those files in the run folder, each one
atomically (:func:`files.write_atomic`), the subtitle files and the table
first and result.json — the record they are made from — last, under one
lock per process. A crash in between leaves every file whole; the worst case
is subtitles already renamed while result.json is not, and renaming again
repairs it.
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

from emotion2vec_webui.engine.call_summary import summary_for_result
from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.files import write_atomic
from emotion2vec_webui.runs.catalog.run_index import record_run_folder
from emotion2vec_webui.runs.report import REPORT_HTML, report_html
from emotion2vec_webui.runs.transcripts import conversation_files
from emotion2vec_webui.user_text import clean_name

MAX_LABEL_CHARS = 40
_lock = threading.Lock()


def parse_names(text: str | None) -> dict[str, str]:
    """``"left=Agent, right=Customer"`` → ``{"left": "Agent", "right": "Customer"}`` (pairs without ``=`` ignored)."""
    out = {}
    for part in (text or "").replace(";", ",").replace("；", ",").replace("，", ",").split(","):
        key, sep, value = part.partition("=")
        if sep and key.strip():
            out[key.strip()] = value.strip()
    return out


SPEAKER_ID_RE = re.compile(r"^(left|right|ch[1-9][0-9]?|S[1-9][0-9]?)$")  # the ids conversations give speakers
MAX_NAMES = 64


def check_names(text: str | None) -> dict[str, str]:
    """``"left=Agent,right=Customer"`` given before any work (``batch --speaker-names``), checked: id → clean name.

    Raises:
        E2VError: ``bad_request`` for text without ``id=name`` pairs, too many pairs, or an id no conversation gives.
    """
    names = parse_names(text)
    if text and text.strip() and not names:
        raise E2VError("bad_request", "Speaker names are id=name pairs, e.g. left=Agent,right=Customer. / "
                                      "说话人名称应为 id=名称，例如 left=Agent,right=Customer。")  # fmt: skip
    bad = [k for k in names if not SPEAKER_ID_RE.match(k)][:3] or (["…"] if len(names) > MAX_NAMES else [])
    if bad:
        raise E2VError(
            "bad_request",
            f"Unknown speaker id(s) {', '.join(bad)}: use left/right, ch1 … (channels) or S1, S2 … (auto), at most "
            f"{MAX_NAMES}. / 未知的说话人 {', '.join(bad)}：请用 left/right、ch1 …（按声道）或 S1、S2 …（自动），至多 {MAX_NAMES} 个。",
        )
    return {k: clean_label(v) for k, v in names.items()}


def clean_label(value: str) -> str:
    """One line, at most :data:`MAX_LABEL_CHARS` characters, no ``-->`` (it would end an SRT/VTT cue head).

    Control and bidi formatting characters are removed (:func:`user_text.clean_name`); a name that looks like a
    spreadsheet formula is kept as written — ``turns.csv`` quotes it (:func:`user_text.csv_cell`).
    """
    return clean_name(value).replace("-->", "→")[:MAX_LABEL_CHARS].strip()


def apply_names(result: dict, names: dict[str, str]) -> dict:
    """``result`` with its speakers' ``label`` set from ``names`` (id → name; an empty name restores the id).

    Raises:
        E2VError: ``bad_request`` when the result has no speakers or a name is for an unknown speaker id.
    """
    speakers = result.get("speakers")
    if not speakers:
        raise E2VError("bad_request", "This run has no speakers to rename (speakers=none). / 此运行没有说话人可重命名。")
    ids = [s["id"] for s in speakers]
    unknown = [k for k in names if k not in ids]
    if unknown:
        raise E2VError(
            "bad_request",
            f"Unknown speaker id(s): {', '.join(unknown)}; this run has {', '.join(ids)}. "
            f"/ 未知的说话人：{', '.join(unknown)}；此运行的说话人为 {', '.join(ids)}。",
        )
    out = dict(result)
    out["speakers"] = [{**s, "label": (clean_label(names[s["id"]]) or s["id"]) if s["id"] in names else s["label"]}
                       for s in speakers]  # fmt: skip
    if out.get("summary") is not None:  # its labels and the agent/customer comparison follow the names
        out["summary"] = summary_for_result(out)
    return out


def rename_speakers(folder: str | Path, names: dict[str, str]) -> dict:
    """Rename speakers in a saved run folder: result.json ``speakers[].label`` and ``summary``, transcript.srt/.vtt,
    turns.csv, turns.jsonl, and report.html when the folder has one.

    Args:
        folder: the run folder (holds result.json).
        names: speaker id → new name (an empty name restores the id); ids not named keep their label.

    Returns:
        The updated result.json content.

    Raises:
        E2VError: ``not_found`` (no result.json), ``bad_request`` (no speakers, unknown id).
    """
    folder = Path(folder)
    path = folder / "result.json"
    with _lock:
        try:
            result = json.loads(path.read_text("utf-8"))
        except FileNotFoundError as exc:
            raise E2VError("not_found", f"No run at {folder.name}. / 找不到运行 {folder.name}。") from exc
        updated = apply_names(result, names)
        for name, text in conversation_files(updated).items():
            write_atomic(folder / name, text)
        if (folder / REPORT_HTML).is_file():  # a report written by recognize --report shows the new names too
            write_atomic(folder / REPORT_HTML, report_html(updated))
        write_atomic(path, json.dumps(updated, ensure_ascii=False, indent=2) + "\n")
    record_run_folder(folder, updated)  # the catalog's speaker names follow (never raises)
    return updated
