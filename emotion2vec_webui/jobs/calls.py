"""Across calls: a conversation batch's ``calls.csv``, ``calls.json`` and ``calls_report.html``.

A batch with ``--speakers`` holds one run folder per call, each with a
``summary`` block in its result.json (``engine/call_summary.py``; recomputed
for a run written before it). This reads them back and makes:

- one row per call (:func:`call_record`): duration, speech, speakers with their
  talk share, dominant emotion, mean negativity and balance, escalations and
  emotion shares; the call's escalations, first escalation, worst moment and
  turning points — ``calls.csv`` (speakers as numbered column groups, cells
  quoted like every CSV: :func:`user_text.csv_row`) and ``calls.json``;
- the calls ranked by escalation (:func:`rank_calls`: most escalations first,
  then the lowest worst moment);
- aggregates per speaker label (:func:`label_aggregates`): when a batch's
  speakers are named consistently (``batch --speaker-names left=Agent,right=Customer``,
  or renames), "Agent" across all calls; otherwise the ids (``left``/``right``).

``GET /api/v1/batches/{id}/calls`` answers ``calls.json`` (made on request for a
batch that has none). The HTML page is :mod:`calls_report`.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

from emotion2vec_webui.engine.call_summary import summary_for_result
from emotion2vec_webui.files import write_atomic
from emotion2vec_webui.labels import EMOTIONS
from emotion2vec_webui.runs.storage import RUN_ID_RE
from emotion2vec_webui.user_text import csv_row

CALLS_CSV, CALLS_JSON, CALLS_REPORT = "calls.csv", "calls.json", "calls_report.html"
CALL_COLUMNS = ("rank", "file", "run_folder", "duration_s", "speech_s", "speakers", "turns", "escalations",
                "first_escalation_s", "worst_moment_s", "worst_arc", "turning_points")  # fmt: skip
SPEAKER_COLUMNS = ("id", "label", "talk_share", "dominant_emotion", "mean_negativity", "mean_balance", "escalations")


def call_record(file: str, run_folder: str, result: dict) -> dict | None:
    """One call's row from its result.json (None when it is not a conversation)."""
    if result.get("turns") is None:
        return None
    summary = result.get("summary") or summary_for_result(result)
    worst = summary["worst_moment"] or {}
    firsts = [e["time_s"] for e in summary["events"] if e["type"] == "escalation"]
    speakers = [{
        "id": s["id"], "label": s["label"], "talk_s": s["talk_s"], "talk_share": s["talk_share"],
        "dominant_emotion": max(s["emotion_share"], key=s["emotion_share"].get) if s["talk_s"] else None,
        "mean_negativity": s["mean_negativity"], "mean_balance": s["mean_balance"], "escalations": s["escalations"],
        "emotion_share": s["emotion_share"],
    } for s in summary["speakers"]]  # fmt: skip
    return {
        "file": file, "run_folder": run_folder, "duration_s": summary["duration_s"], "speech_s": summary["speech_s"],
        "turns": len(result["turns"]), "escalations": summary["escalations"],
        "first_escalation_s": min(firsts) if firsts else None,
        "worst_moment_s": worst.get("time_s"), "worst_arc": worst.get("arc"),
        "turning_points": len(summary["turning_points"]), "speakers": speakers, "arc": summary["arc"],
    }  # fmt: skip


def rank_calls(calls: list[dict]) -> list[dict]:
    """``calls`` ranked by escalation, each with its ``rank`` (1 …): most escalations first, then the lowest worst
    moment, then the earliest first escalation."""
    late = float("inf")  # a call without an arc or an escalation ranks after those with one

    def key(c: dict) -> tuple:
        worst = late if c["worst_arc"] is None else c["worst_arc"]
        return -c["escalations"], worst, late if c["first_escalation_s"] is None else c["first_escalation_s"]

    ordered = sorted(calls, key=key)
    return [{"rank": i + 1, **c} for i, c in enumerate(ordered)]


def label_aggregates(calls: list[dict]) -> list[dict]:
    """Per speaker label across calls: calls, talk time, time-weighted negativity, balance and emotion shares,
    escalations and the calls with one; in order of first appearance."""
    acc: dict[str, dict] = {}
    for c in calls:
        for s in c["speakers"]:
            a = acc.setdefault(s["label"], {"label": s["label"], "calls": 0, "talk_s": 0.0, "share_sum": 0.0,
                                             "neg": 0.0, "bal": 0.0, "escalations": 0, "calls_escalated": 0,
                                             "emotion": dict.fromkeys(EMOTIONS, 0.0)})  # fmt: skip
            a["calls"] += 1
            a["talk_s"] += s["talk_s"]
            a["share_sum"] += s["talk_share"]
            a["neg"] += s["mean_negativity"] * s["talk_s"]
            a["bal"] += s["mean_balance"] * s["talk_s"]
            a["escalations"] += s["escalations"]
            a["calls_escalated"] += s["escalations"] > 0
            for k in EMOTIONS:
                a["emotion"][k] += s["emotion_share"][k] * s["talk_s"]
    out = []
    for a in acc.values():
        t = a["talk_s"] or 1.0
        out.append({
            "label": a["label"], "calls": a["calls"], "talk_s": round(a["talk_s"], 3),
            "mean_talk_share": round(a["share_sum"] / a["calls"], 4), "mean_negativity": round(a["neg"] / t, 4),
            "mean_balance": round(a["bal"] / t, 4), "escalations": a["escalations"],
            "calls_escalated": a["calls_escalated"], "emotion_share": {k: round(v / t, 4) for k, v in a["emotion"].items()},
        })  # fmt: skip
    return out


def run_dir(folder: Path, run_folder: str) -> Path | None:
    """The run folder a summary row names, only when it lies inside the batch ``folder`` (else None)."""
    run = Path(run_folder)
    run = (run if run.is_absolute() else folder / run).resolve()
    return run if run.parent == folder.resolve() and RUN_ID_RE.match(run.name) else None


def ok_runs(folder: str | Path, rows: list[dict]) -> Iterator[tuple[dict, Path, dict]]:
    """``(row, run folder, result.json)`` of every ok run a batch ``folder``'s summary ``rows`` name, in row order.

    A row naming a folder outside the batch is skipped, and so is a run whose result.json is gone or unreadable
    (removed since by retention or a delete).
    """
    folder = Path(folder)
    for row in rows:
        if row.get("status") != "ok" or not row.get("run_folder"):
            continue
        run = run_dir(folder, row["run_folder"])
        if run is None:
            continue
        try:
            result = json.loads((run / "result.json").read_text("utf-8"))
        except (OSError, ValueError):
            continue
        yield row, run, result


def read_calls(folder: str | Path, rows: list[dict]) -> list[dict]:
    """Every ok conversation run of a batch ``folder`` (its summary ``rows``), in row order."""
    calls = []
    for row, _, result in ok_runs(folder, rows):
        record = call_record(row.get("file") or "", row["run_folder"], result)
        if record is not None:
            calls.append(record)
    return calls


def calls_table(folder: str | Path, rows: list[dict]) -> dict:
    """``calls.json``: ``{"calls": ranked rows, "by_label": per-label aggregates}``."""
    calls = read_calls(folder, rows)
    return {"calls": rank_calls(calls), "by_label": label_aggregates(calls)}


def calls_csv_text(calls: list[dict]) -> str:
    """``calls.csv``: :data:`CALL_COLUMNS`, then per speaker slot ``speaker<i>_…`` and its nine emotion shares."""
    slots = max((len(c["speakers"]) for c in calls), default=0)
    header = list(CALL_COLUMNS)
    for i in range(1, slots + 1):
        header += [f"speaker{i}_{k}" for k in SPEAKER_COLUMNS] + [f"speaker{i}_share_{k}" for k in EMOTIONS]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for c in calls:
        names = "; ".join(f"{s['id']}={s['label']}" for s in c["speakers"])
        values = [c["rank"], c["file"], c["run_folder"], c["duration_s"], c["speech_s"], names, c["turns"],
                  c["escalations"], c["first_escalation_s"], c["worst_moment_s"], c["worst_arc"], c["turning_points"]]  # fmt: skip
        for i in range(slots):
            s = c["speakers"][i] if i < len(c["speakers"]) else None
            values += [s[k] if s else None for k in SPEAKER_COLUMNS]
            values += [s["emotion_share"][k] if s else None for k in EMOTIONS]
        writer.writerow(csv_row(["" if v is None else v for v in values]))
    return out.getvalue()


def write_calls(folder: str | Path, rows: list[dict]) -> dict | None:
    """Write ``calls.csv``, ``calls.json`` and ``calls_report.html`` in a batch ``folder`` (None: no calls)."""
    from emotion2vec_webui.jobs.calls_report import calls_report_html

    folder = Path(folder)
    table = calls_table(folder, rows)
    if not table["calls"]:
        return None
    write_atomic(folder / CALLS_CSV, calls_csv_text(table["calls"]))
    write_atomic(folder / CALLS_JSON, json.dumps(table, ensure_ascii=False) + "\n")
    write_atomic(folder / CALLS_REPORT, calls_report_html(table, folder.name))
    return table


def name_speakers(folder: str | Path, rows: list[dict], names: dict[str, str]) -> int:
    """Give every ok run of a batch its speakers' ``names`` (id → name; ids a run lacks are skipped); runs renamed."""
    from emotion2vec_webui.runs.speaker_names import rename_speakers

    done = 0
    for _, run, result in ok_runs(folder, rows):
        ids = {s["id"] for s in result.get("speakers") or []}
        mine = {k: v for k, v in names.items() if k in ids}
        if mine:
            rename_speakers(run, mine)
            done += 1
    return done


def read_calls_table(folder: str | Path) -> dict:
    """A batch folder's ``calls.json`` while it is current, else the same made from its ``summary.jsonl`` (a batch
    still running, written before calls existed, or with a run renamed since: a result.json newer than
    calls.json). Rows that do not parse are skipped; the last row per input counts."""
    from emotion2vec_webui.jobs.summary import row_key

    folder = Path(folder)
    try:
        stored = json.loads((folder / CALLS_JSON).read_text("utf-8"))
        if _current(folder, stored, (folder / CALLS_JSON).stat().st_mtime):
            return stored
    except (OSError, ValueError, KeyError, TypeError):
        pass
    latest: dict[str, dict] = {}
    try:
        lines = (folder / "summary.jsonl").read_text("utf-8").splitlines()
    except OSError:
        lines = []
    for line in lines:
        try:
            row = json.loads(line)
            latest[row_key(row)] = row
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
    return calls_table(folder, list(latest.values()))


def _current(folder: Path, stored: dict, written: float) -> bool:
    """Whether no call's result.json changed (a speaker rename) after ``calls.json`` was written."""
    for call in stored["calls"]:
        run = run_dir(folder, call["run_folder"])
        if run is None or (run / "result.json").stat().st_mtime > written:
            return False
    return True
