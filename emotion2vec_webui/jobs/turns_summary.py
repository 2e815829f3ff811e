"""Batch's second summary for conversations: ``turns_summary.csv``, one row per turn of every input.

Each run folder of a conversation batch (``--speakers channels|auto``) holds
its own ``turns.csv``; this joins them, with the input's name and run folder
in front, so a whole batch of calls can be read as one table. Every cell goes
through :func:`user_text.csv_cell` again: cells quoted in ``turns.csv`` stay as
they are, and a ``turns.csv`` written before cells were quoted is quoted here.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from emotion2vec_webui.files import write_atomic
from emotion2vec_webui.runs.transcripts import TURN_COLUMNS, TURNS_CSV
from emotion2vec_webui.user_text import csv_row

TURNS_SUMMARY = "turns_summary.csv"


def write_turns_summary(folder: str | Path, rows: list[dict]) -> Path | None:
    """Write ``turns_summary.csv`` in the batch ``folder`` from the ok ``rows``' run folders (None: no turns)."""
    folder = Path(folder)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["file", "run_folder", *TURN_COLUMNS])
    found = False
    for row in rows:
        if row.get("status") != "ok" or not row.get("run_folder"):
            continue
        run = Path(row["run_folder"])
        turns = (run if run.is_absolute() else folder / run) / TURNS_CSV
        if not turns.is_file():
            continue
        found = True
        with turns.open(encoding="utf-8", newline="") as f:
            reader = csv.reader(f)
            next(reader, None)
            for values in reader:
                writer.writerow(csv_row([row.get("file"), row["run_folder"], *values]))
    if not found:
        return None
    write_atomic(folder / TURNS_SUMMARY, out.getvalue())
    return folder / TURNS_SUMMARY
