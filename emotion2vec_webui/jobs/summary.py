"""A batch folder's summary: ``summary.jsonl`` written row by row, ``summary.csv`` at the end.

Every finished input appends one JSON line, flushed and fsynced, so a killed
batch loses nothing it finished. ``--resume`` reads the lines back; an input
counts as done only when its row says ``ok`` *and* its run folder is complete
(run folders are renamed into place atomically, so a half-written run never
exists). The window between a run folder landing and its row being appended
is closed too: each input's run carries a request id derived from the batch
and the input (:func:`item_request_id`), and :meth:`BatchSummary.adopt_orphans`
turns such a run back into its row instead of running the input again.

At the end :meth:`BatchSummary.finalize` keeps the last row per input, in
input order, and rewrites ``summary.jsonl`` and ``summary.csv`` atomically.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from pathlib import Path

from emotion2vec_webui.files import write_atomic
from emotion2vec_webui.jobs.inputs import BatchItem
from emotion2vec_webui.labels import EMOTIONS
from emotion2vec_webui.runs.storage import RUN_ID_RE
from emotion2vec_webui.user_text import csv_cell

SUMMARY_FIELDS: tuple[str, ...] = (
    "file",
    "label",
    "status",
    "emotion",
    "confidence",
    *EMOTIONS,
    "duration_s",
    "error_code",
    "error_message",
    "run_folder",
    "processing_s",
    "head",  # a trained head (--head): its name, top label and confidence; empty without one
    "head_label",
    "head_confidence",
    "uncertain",  # --min-confidence: true when the answer abstained (its top emotion kept above); empty without
    "head_uncertain",
    "dimensions",  # a regression head (--head): its targets' values, "arousal=3.2;valence=-0.41"; empty without
)


def item_request_id(batch_name: str, file: str) -> str:
    """A request id that is the same every time this batch meets this input."""
    return "b" + hashlib.sha1(f"{batch_name}\0{file}".encode()).hexdigest()[:15]


def row_key(row: dict) -> str:
    """The input a row belongs to (``input``; rows written before it existed have only ``file``)."""
    return row.get("input") or row["file"]


def ok_row(item: BatchItem, result: dict, run_folder: str) -> dict:
    """The summary row of an input that was classified (``result`` is its result.json object).

    ``file`` is the input as the user knows it (an upload's original name, not the server's
    temporary path); ``input`` (summary.jsonl only) is the path read, the row's identity on resume.
    """
    return {
        "file": item.display,
        "input": item.file,
        "label": item.label,
        "status": "ok",
        "emotion": result["emotion"],
        "confidence": result["confidence"],
        **{k: result["scores"][k] for k in EMOTIONS},
        "duration_s": result["audio"]["duration_s"],
        "error_code": None,
        "error_message": None,
        "run_folder": run_folder,
        "processing_s": result.get("processing_time_s"),
        **_head_columns(result.get("head")),
        **_abstention_columns(result),
        **_dimension_columns(result.get("dimensions")),
    }


def _dimension_columns(dims: dict | None) -> dict:
    """A regression head's name (the ``head`` column) and values (``dimensions``), else an empty ``dimensions``."""
    if not dims or not isinstance(dims.get("values"), dict):
        return {"dimensions": None}
    values = ";".join(f"{k}={v}" for k, v in dims["values"].items())
    return {"head": dims.get("name"), "dimensions": values}


def _abstention_columns(result: dict) -> dict:
    """``uncertain`` and ``head_uncertain`` when the run had a threshold (runs/confidence.py), else empty."""
    if result.get("min_confidence") is None:
        return {"uncertain": None, "head_uncertain": None}
    head = result.get("head") or {}
    return {"uncertain": bool(result.get("uncertain")), "head_uncertain": head.get("uncertain")}


def _head_columns(head: dict | None) -> dict:
    if not head:
        return {"head": None, "head_label": None, "head_confidence": None}
    return {"head": head["name"], "head_label": head["label"], "head_confidence": head["confidence"]}


def error_row(item: BatchItem, code: str, message: str) -> dict:
    """The summary row of an input that failed."""
    return {
        **dict.fromkeys(SUMMARY_FIELDS),
        "file": item.display,
        "input": item.file,
        "label": item.label,
        "status": "error",
        "error_code": code,
        "error_message": message,
    }


class BatchSummary:
    """The summary files of one batch folder.

    Args:
        folder: the batch folder (created if missing).
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.jsonl = self.folder / "summary.jsonl"
        self.csv = self.folder / "summary.csv"
        self._fh = None

    def exists(self) -> bool:
        return self.jsonl.exists()

    def rows(self) -> list[dict]:
        """Every row written so far (a torn last line from a kill is ignored)."""
        if not self.jsonl.exists():
            return []
        out = []
        for line in self.jsonl.read_text("utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def run_complete(self, run_folder: str | None) -> bool:
        return bool(run_folder) and (self.folder / run_folder / "result.json").is_file()

    def done(self) -> dict[str, dict]:
        """Inputs already done: file → its ok row whose run folder is complete."""
        return {row_key(r): r for r in self.rows() if r.get("status") == "ok" and self.run_complete(r.get("run_folder"))}

    def adopt_orphans(self, pending: list[BatchItem]) -> list[dict]:
        """Rows for runs that landed without their summary row (killed in between); appended here.

        Args:
            pending: the inputs not yet done.

        Returns:
            The rows appended.
        """
        if not pending:
            return []
        wanted = {item_request_id(self.folder.name, it.file): it for it in pending}
        listed = {r.get("run_folder") for r in self.rows()}
        adopted = []
        for run in sorted(p for p in self.folder.iterdir() if RUN_ID_RE.match(p.name) and p.name not in listed):
            try:
                result = json.loads((run / "result.json").read_text("utf-8"))
            except (OSError, ValueError):
                continue
            item = wanted.pop(result.get("request_id"), None)
            if item is not None:
                row = ok_row(item, result, run.name)
                self.append(row)
                adopted.append(row)
        return adopted

    def append(self, row: dict) -> None:
        """Append one row durably (write, flush, fsync)."""
        if self._fh is None:
            self._repair_tail()
            self._fh = self.jsonl.open("a", encoding="utf-8")
        self._fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def _repair_tail(self) -> None:
        # A kill mid-write can leave a torn last line; cut it so the next row starts on its own line.
        if not self.jsonl.exists():
            return
        data = self.jsonl.read_bytes()
        if data and not data.endswith(b"\n"):
            with self.jsonl.open("r+b") as fh:
                fh.truncate(data.rfind(b"\n") + 1)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def finalize(self, items: list[BatchItem]) -> list[dict]:
        """Rewrite both summaries: one row per input (the latest), in input order, then other rows.

        Returns:
            The final rows.
        """
        self.close()
        latest: dict[str, dict] = {}
        for row in self.rows():
            latest[row_key(row)] = row
        order = [it.file for it in items if it.file in latest]
        order += [f for f in latest if f not in set(order)]
        rows = [latest[f] for f in order]
        write_atomic(self.jsonl, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        write_atomic(self.csv, summary_csv(rows))
        return rows


def summary_csv(rows: list[dict]) -> str:
    """Rows as CSV text with the :data:`SUMMARY_FIELDS` header (formula-like text quoted: :func:`user_text.csv_cell`)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=SUMMARY_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else csv_cell(row.get(k)) for k in SUMMARY_FIELDS})
    return buf.getvalue()
