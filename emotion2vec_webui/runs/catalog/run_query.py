"""Questions asked of the run catalog (:mod:`runs.run_index`): filters and pages of runs (batches and counts:
:mod:`runs.run_stats`).

Every listing is newest first, in the order the folder walk used (the run folder's time stamp,
its ``_N``, then the batch name), and pages with a cursor: the opaque ``next_cursor`` of one
page fetches the next, and stays right while runs are added or deleted (an offset would skip or
repeat rows). Filters are plain SQL over indexed columns; user text only ever reaches SQLite
as a bound parameter (``LIKE`` wildcards in it are escaped).
"""

from __future__ import annotations

import base64
import binascii
import sqlite3
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.labels import EMOTIONS
from emotion2vec_webui.runs.catalog.run_index import RunIndex, has_text_index

KINDS = ("single", "batch", "live", "stream", "conversation")  # "conversation": any run with speakers
DENSE_MATCHES = 2000  # a name search matching more runs pages along the listing's order instead of sorting them


@dataclass(frozen=True)
class RunFilter:
    q: str | None = None  # part of the source (file) name, case-insensitive
    emotion: tuple[str, ...] = ()  # top emotion is one of these keys
    min_confidence: float | None = None  # top emotion's confidence at least this
    since: float | None = None  # run time ≥ this (seconds since the epoch)
    until: float | None = None  # run time < this
    batch: str | None = None  # runs of this batch folder
    head_label: str | None = None  # a trained head's top label (case-insensitive)
    speaker: str | None = None  # a conversation speaker's id or name (case-insensitive)
    kind: str | None = None  # one of KINDS

    @property
    def phrase(self) -> str:
        """``q`` as one FTS5 phrase: the text as a substring of the name, any case; quotes cannot change the query."""
        return '"' + (self.q or "").replace('"', '""') + '"'

    def where(self, text_index: bool = False, drive: bool = True) -> tuple[str, list]:
        """The SQL condition (``1`` when empty) and its parameters.

        Args:
            text_index: the catalog has its trigram index of names (``run_index.has_text_index``): a
                ``q`` of three characters or more is looked up there instead of scanning every row.
            drive: let SQLite start from the names that match ``q`` (few matches); False keeps it to the
                listing's order and checks each row against them (many matches: the page fills early).
        """
        terms, params = [], []
        if self.q and text_index and len(self.q) >= 3:
            terms.append(f"{'' if drive else '+'}rowid IN (SELECT rowid FROM runs_text WHERE runs_text MATCH ?)")
            params.append(self.phrase)
        elif self.q:
            like = "%" + self.q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            terms.append("source_name LIKE ? ESCAPE '\\'")
            params.append(like)
        if self.emotion:
            terms.append(f"emotion IN ({', '.join('?' * len(self.emotion))})")
            params += list(self.emotion)
        if self.min_confidence is not None:
            terms.append("confidence >= ?")
            params.append(self.min_confidence)
        if self.since is not None:
            terms.append("t >= ?")
            params.append(self.since)
        if self.until is not None:
            terms.append("t < ?")
            params.append(self.until)
        if self.batch:
            terms.append("batch = ?")
            params.append(self.batch)
        if self.head_label:
            terms.append("head_label = ? COLLATE NOCASE")
            params.append(self.head_label)
        if self.speaker:
            terms.append("run_id IN (SELECT run_id FROM speakers WHERE speaker = ? OR label = ? COLLATE NOCASE)")
            params += [self.speaker, self.speaker]
        if self.kind == "conversation":
            terms.append("conversation = 1")
        elif self.kind:
            terms.append("kind = ?")
            params.append(self.kind)
        return (" AND ".join(terms) or "1"), params


def make_filter(
    q: str | None = None,
    emotion: str | None = None,
    min_confidence: float | None = None,
    since: str | None = None,
    until: str | None = None,
    batch: str | None = None,
    head_label: str | None = None,
    speaker: str | None = None,
    kind: str | None = None,
) -> RunFilter:
    """A :class:`RunFilter` from what a face got (text), checked.

    ``emotion`` takes one key or several comma-separated; ``since``/``until`` take a date
    (``2026-12-01``: from its start / through its end, in the server's time zone) or an ISO 8601
    time (``2026-12-01T09:30:00+08:00``).

    Raises:
        E2VError: ``bad_request`` naming the value that is wrong.
    """
    emotions = tuple(e.strip().lower() for e in (emotion or "").split(",") if e.strip())
    unknown = [e for e in emotions if e not in EMOTIONS]
    if unknown:
        raise E2VError("bad_request", f"emotion must be among {', '.join(EMOTIONS)}, not {unknown[0]!r}. "
                                      f"/ emotion 应为 {', '.join(EMOTIONS)} 之一。")  # fmt: skip
    kind = (kind or "").strip().lower() or None
    if kind is not None and kind not in KINDS:
        raise E2VError("bad_request", f"kind must be one of {', '.join(KINDS)}. / kind 应为 {', '.join(KINDS)} 之一。")
    if min_confidence is not None and not 0.0 <= float(min_confidence) <= 1.0:
        raise E2VError("bad_request", "min_confidence must lie in 0…1. / min_confidence 应在 0 到 1 之间。")
    return RunFilter(
        q=_search_text("q", q), emotion=emotions, min_confidence=min_confidence,
        since=parse_time(since, end=False), until=parse_time(until, end=True), batch=_search_text("batch", batch),
        head_label=_search_text("head_label", head_label), speaker=_search_text("speaker", speaker), kind=kind,
    )  # fmt: skip


def _search_text(field: str, value: str | None) -> str | None:
    """A text filter, trimmed; a NUL (FTS5 reads it as the end of its query: "unterminated string", a 500)
    or a lone surrogate (SQLite cannot bind it; the UI's boxes can send one) is ``bad_request``."""
    text = (value or "").strip()
    if "\x00" in text or not text.isascii() and any("\ud800" <= ch <= "\udfff" for ch in text):
        raise E2VError("bad_request", f"{field} holds a NUL character or a lone surrogate. "
                                      f"/ {field} 含有 NUL 字符或孤立的代理字符。")  # fmt: skip
    return text or None


def parse_time(text: str | None, end: bool) -> float | None:
    """A date or an ISO 8601 time → seconds since the epoch (a date's end is the next day's start)."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            day = day + timedelta(days=1) if end else day
            return datetime(day.year, day.month, day.day).astimezone().timestamp()
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return (when if when.tzinfo else when.astimezone()).timestamp()
    except (ValueError, OverflowError, OSError):  # also the edges of the calendar: 9999-12-31's end, year 1 local
        raise E2VError("bad_request", f"{text!r} is not a date (2026-12-01) or ISO 8601 time in range. "
                                      f"/ {text!r} 不是有效范围内的日期（2026-12-01）或 ISO 8601 时间。") from None  # fmt: skip


# -- pages of runs -------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunsPage:
    runs: list[dict]  # rows of the runs table (column → value), speakers as a list of names
    total: int  # runs matching the filter
    next_cursor: str | None  # the next page, or None at the end


def encode_cursor(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    """The order key a cursor holds.

    Raises:
        E2VError: ``bad_request`` for a cursor this server did not give out.
    """
    try:
        key = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        key = ""
    if not key or len(key) > 400:
        raise E2VError("bad_request", "The cursor is not one this server gave out. / 游标无效。")
    return key


def list_runs(index: RunIndex, flt: RunFilter = RunFilter(), limit: int = 20, cursor: str | None = None,
              offset: int = 0) -> RunsPage:  # fmt: skip
    """One page of runs, newest first.

    Args:
        index: the catalog.
        flt: which runs.
        limit: runs per page.
        cursor: ``next_cursor`` of the previous page (then ``offset`` is ignored).
        offset: runs to skip (the older way to page; slower deep down, and shifts as runs arrive).
    """
    def query(conn: sqlite3.Connection) -> RunsPage:
        text_index = has_text_index(conn)
        where, params = flt.where(text_index)
        hits = None
        if flt.q and text_index and len(flt.q) >= 3:
            hits = conn.execute("SELECT COUNT(*) FROM runs_text WHERE runs_text MATCH ?", [flt.phrase]).fetchone()[0]
            if hits <= DENSE_MATCHES and not offset:
                return _searched(conn, where, params)
            where, params = flt.where(text_index, drive=False)  # many matches: walk the listing, stop at a page
        conn.row_factory = sqlite3.Row
        try:
            if hits is not None and flt == RunFilter(q=flt.q):
                total = hits  # the names alone decide: their count is the total
            else:
                total = index.count(conn, f"SELECT COUNT(*) FROM runs WHERE {where}", params)
            if cursor:
                sql = f"SELECT * FROM runs WHERE okey < ? AND {where} ORDER BY okey DESC LIMIT ?"
                rows = conn.execute(sql, [decode_cursor(cursor), *params, limit + 1]).fetchall()
            else:
                sql = f"SELECT * FROM runs WHERE {where} ORDER BY okey DESC LIMIT ? OFFSET ?"
                rows = conn.execute(sql, [*params, limit + 1, offset]).fetchall()
        finally:
            conn.row_factory = None
        more = len(rows) > limit
        rows = rows[:limit]
        return RunsPage([_run_dict(r) for r in rows], total, encode_cursor(rows[-1]["okey"]) if more else None)

    def _searched(conn: sqlite3.Connection, where: str, params: list) -> RunsPage:
        # A name search reads its matches once (the trigram index, then the other filters), and takes both
        # the count and the page from them: the separate COUNT and page queries would each read them again.
        after = decode_cursor(cursor) if cursor else "\U0010ffff"
        sql = (f"WITH m AS MATERIALIZED (SELECT okey FROM runs WHERE {where}) "
               "SELECT (SELECT COUNT(*) FROM m) AS total_matches, r.* FROM "
               "(SELECT okey FROM m WHERE okey < ? ORDER BY okey DESC LIMIT ?) p JOIN runs r ON r.okey = p.okey "
               "ORDER BY r.okey DESC")  # fmt: skip
        conn.row_factory = sqlite3.Row
        try:
            rows = conn.execute(sql, [*params, after, limit + 1]).fetchall()
        finally:
            conn.row_factory = None
        total = rows[0]["total_matches"] if rows else index.count(conn, f"SELECT COUNT(*) FROM runs WHERE {where}", params)
        more = len(rows) > limit
        rows = rows[:limit]
        page = [{k: v for k, v in _run_dict(r).items() if k != "total_matches"} for r in rows]
        return RunsPage(page, total, encode_cursor(rows[-1]["okey"]) if more else None)

    return index.call(query)


def _run_dict(row: sqlite3.Row) -> dict:
    out = {k: row[k] for k in row.keys() if k != "okey"}
    out["conversation"] = bool(out["conversation"])
    out["speakers"] = [s for s in (out["speakers"] or "").split(", ") if s]
    return out


def run_row(index: RunIndex, run_id: str) -> dict | None:
    """One run's row, or None."""

    def query(conn: sqlite3.Connection):
        conn.row_factory = sqlite3.Row
        try:
            return conn.execute("SELECT * FROM runs WHERE run_id=?", (run_id,)).fetchone()
        finally:
            conn.row_factory = None

    row = index.call(query)
    return None if row is None else _run_dict(row)


@dataclass(frozen=True)
class ItemsPage:
    items: list[dict]  # a run's row (``is_batch`` False), or a batch: {item, is_batch, runs, emotions, newest, batch}
    total: int  # single runs plus batches with a matching run
    next_cursor: str | None


def list_items(index: RunIndex, flt: RunFilter = RunFilter(), limit: int = 20, cursor: str | None = None) -> ItemsPage:
    """One page of what History shows as rows: single runs, and each batch as one item, newest first.

    A batch is placed by its newest matching run and carries how many of its runs match and their
    top emotions; batches without a matching run are left out.
    """
    def query(conn: sqlite3.Connection) -> ItemsPage:
        where, params = flt.where(has_text_index(conn))
        union = (f"SELECT run_id AS item, okey, 0 AS is_batch, 1 AS n FROM runs WHERE batch IS NULL AND {where} "
                 f"UNION ALL SELECT batch, MAX(okey), 1, COUNT(*) FROM runs WHERE batch IS NOT NULL AND {where} "
                 "GROUP BY batch")  # fmt: skip
        total = index.count(
            conn,
            f"SELECT (SELECT COUNT(*) FROM runs WHERE batch IS NULL AND {where}) + "
            f"(SELECT COUNT(DISTINCT batch) FROM runs WHERE batch IS NOT NULL AND {where})",
            params * 2,
        )
        after = [decode_cursor(cursor)] if cursor else []
        sql = f"SELECT item, okey, is_batch, n FROM ({union}){' WHERE okey < ?' if cursor else ''} ORDER BY okey DESC LIMIT ?"
        found = conn.execute(sql, [*params, *params, *after, limit + 1]).fetchall()
        more = len(found) > limit
        found = found[:limit]
        conn.row_factory = sqlite3.Row
        try:
            singles = [i for i, _o, b, _n in found if not b]
            rows = {r["run_id"]: _run_dict(r) for r in conn.execute(
                f"SELECT * FROM runs WHERE run_id IN ({', '.join('?' * len(singles))})", singles)} if singles else {}  # fmt: skip
            items = []
            for item, okey, is_batch, n in found:
                if not is_batch:
                    items.append({**rows[item], "item": item, "is_batch": False})
                    continue
                emotions = conn.execute(
                    f"SELECT emotion, COUNT(*) FROM runs WHERE batch = ? AND {where} GROUP BY emotion ORDER BY 2 DESC",
                    [item, *params],
                ).fetchall()
                newest = conn.execute("SELECT * FROM runs WHERE okey = ?", (okey,)).fetchone()
                batch = conn.execute("SELECT * FROM batches WHERE batch_id = ?", (item,)).fetchone()
                items.append({"item": item, "is_batch": True, "runs": n, "emotions": {str(e): c for e, c in emotions},
                              "newest": _run_dict(newest) if newest else {},
                              "batch": dict(batch) if batch else {"batch_id": item}})  # fmt: skip
        finally:
            conn.row_factory = None
        return ItemsPage(items, total, encode_cursor(found[-1][1]) if more else None)

    return index.call(query)
