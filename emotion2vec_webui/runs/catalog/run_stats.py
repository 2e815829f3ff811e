"""Batches and counts from the run catalog: a page of batches, one batch's summary, a dashboard's numbers.

The batch rows come from each batch folder's manifest, summary and ``metrics.json``
(:func:`run_index.read_batch_folder`); a batch's confusion matrix is read from its folder when asked
for (the folder is the source of truth). Counts take the same filters as the run listing
(:class:`run_query.RunFilter`).
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from emotion2vec_webui.runs.catalog.run_index import RunIndex, has_text_index
from emotion2vec_webui.runs.catalog.run_query import RunFilter, decode_cursor, encode_cursor

BATCH_ACTIVE_S = 15 * 60  # a batch without report.txt and newer activity than this is still being written
MAX_STATS_ROWS = 1000  # rows per breakdown in stats (days, batches, speakers)


# -- batches -------------------------------------------------------------------------------------
def batch_state(row: dict, now: float | None = None) -> str:
    """``done`` (report.txt written), ``running`` (activity in the last 15 minutes) or ``stopped``."""
    if row.get("done"):
        return "done"
    return "running" if (row.get("activity") or 0) > (now or time.time()) - BATCH_ACTIVE_S else "stopped"


def list_batches(index: RunIndex, limit: int = 20, cursor: str | None = None, q: str | None = None) -> dict:
    """A page of batches, newest first: ``{batches, total, next_cursor}`` (each with its run count)."""
    terms, params = ["1"], []
    if q:
        terms.append("(batch_id LIKE ? ESCAPE '\\' OR input LIKE ? ESCAPE '\\')")
        like = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        params += [like, like]
    where = " AND ".join(terms)

    def query(conn: sqlite3.Connection) -> dict:
        conn.row_factory = sqlite3.Row
        try:
            total = conn.execute(f"SELECT COUNT(*) FROM batches WHERE {where}", params).fetchone()[0]
            after = [decode_cursor(cursor)] if cursor else []
            sql = (f"SELECT b.*, (SELECT COUNT(*) FROM runs r WHERE r.batch = b.batch_id) AS runs FROM batches b "
                   f"WHERE {where}{' AND batch_id < ?' if cursor else ''} ORDER BY batch_id DESC LIMIT ?")  # fmt: skip
            rows = [dict(r) for r in conn.execute(sql, [*params, *after, limit + 1])]
        finally:
            conn.row_factory = None
        more = len(rows) > limit
        rows = rows[:limit]
        for r in rows:
            r["state"] = batch_state(r)
            r.pop("sig", None)
        return {"batches": rows, "total": total, "next_cursor": encode_cursor(rows[-1]["batch_id"]) if more else None}

    return index.call(query)


def batch_detail(index: RunIndex, batch: str) -> dict | None:
    """One batch: its row, emotion counts of its runs, and its metrics with the confusion matrix (metrics.json)."""

    def query(conn: sqlite3.Connection):
        conn.row_factory = sqlite3.Row
        try:
            row = conn.execute("SELECT * FROM batches WHERE batch_id=?", (batch,)).fetchone()
            if row is None:
                return None
            counts = conn.execute(
                "SELECT emotion, COUNT(*) FROM runs WHERE batch=? GROUP BY emotion ORDER BY COUNT(*) DESC", (batch,)
            ).fetchall()
            stats = conn.execute(
                "SELECT COUNT(*), AVG(confidence), SUM(duration_s), SUM(conversation) FROM runs WHERE batch=?", (batch,)
            ).fetchone()
        finally:
            conn.row_factory = None
        return dict(row), [tuple(c) for c in counts], tuple(stats)

    found = index.call(query)
    if found is None:
        return None
    row, counts, (runs, mean_conf, audio_s, conversations) = found
    row.pop("sig", None)
    row["state"] = batch_state(row)
    metrics = _read_metrics(index.root / batch / "metrics.json")
    confusion = None
    if metrics and isinstance(metrics.get("labels"), list) and isinstance(metrics.get("confusion"), list):
        confusion = {"labels": metrics["labels"], "matrix": metrics["confusion"]}
    summary = {
        "runs": runs, "emotions": {str(k): n for k, n in counts}, "mean_confidence": mean_conf,
        "audio_s": audio_s, "conversations": conversations or 0,
    }  # fmt: skip
    return {**row, "summary": summary, "metrics": metrics, "confusion_matrix": confusion}


def _read_metrics(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


# -- counts for a dashboard ----------------------------------------------------------------------
def stats(index: RunIndex, flt: RunFilter = RunFilter()) -> dict:
    """Emotion counts of the runs ``flt`` selects: in all, by day, by batch, and by speaker (turns).

    Returns:
        ``{"runs", "emotions": {emotion: n}, "by_day": [{"day", "emotions"}], "by_batch": [{"batch", "emotions"}],
        "by_speaker": [{"speaker", "emotions"}]}``; days newest first, batches newest first, speakers by
        turn count. A speaker is counted by name (its label) over the turns of the selected runs.
    """
    def query(conn: sqlite3.Connection) -> dict:
        where, params = flt.where(has_text_index(conn))
        total = conn.execute(f"SELECT COUNT(*) FROM runs WHERE {where}", params).fetchone()[0]
        overall = conn.execute(f"SELECT emotion, COUNT(*) FROM runs WHERE {where} GROUP BY emotion", params).fetchall()
        days = conn.execute(
            f"SELECT day, emotion, COUNT(*) FROM runs WHERE {where} GROUP BY day, emotion ORDER BY day DESC", params
        ).fetchall()
        batches = conn.execute(
            f"SELECT batch, emotion, COUNT(*) FROM runs WHERE batch IS NOT NULL AND {where} "
            "GROUP BY batch, emotion ORDER BY batch DESC",
            params,
        ).fetchall()
        speakers = conn.execute(
            "SELECT COALESCE(s.label, t.speaker), t.emotion, COUNT(*) FROM turns t "
            "LEFT JOIN speakers s ON s.run_id = t.run_id AND s.speaker = t.speaker "
            f"WHERE t.run_id IN (SELECT run_id FROM runs WHERE conversation = 1 AND {where}) "
            "GROUP BY 1, 2",
            params,
        ).fetchall()
        return {
            "runs": total,
            "emotions": {str(e): n for e, n in overall},
            "by_day": _grouped(days, "day"),
            "by_batch": _grouped(batches, "batch"),
            "by_speaker": sorted(_grouped(speakers, "speaker"), key=lambda g: -g["total"]),
        }

    return index.call(query)


def _grouped(rows: list, key: str) -> list[dict]:
    groups: dict = {}
    for name, emotion, n in rows:
        g = groups.setdefault(name, {key: name, "total": 0, "emotions": {}})
        g["emotions"][str(emotion)] = n
        g["total"] += n
    return list(groups.values())[:MAX_STATS_ROWS]
