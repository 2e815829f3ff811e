"""The run catalog: one SQLite file under the outputs root (``.catalog.sqlite3``) that indexes every run.

One concept: the catalog's file — its schema, its connections, the rows written when a run
becomes visible, and its repair (incremental sync, rebuild, a corrupt file replaced). It passes
400 lines because those share one set of invariants that must be read together.

Why SQLite from the standard library (``sqlite3``): it is embedded (no server to run or
configure), one file beside the runs, and its indexes answer a page of 20 runs out of 100,000
in about a millisecond where walking every run folder took seconds. WAL mode lets readers go on
while one writer commits, and several processes share the file safely: the server's REST and UI
threads, a ``batch`` CLI, a second server on the same folder. Each thread has its own connection
(sqlite3 connections are not shared across threads), ``busy_timeout`` waits for another writer's
commit instead of failing, and every write is an idempotent upsert keyed by the run id, so two
writers recording the same run leave one row.

The run folders stay the source of truth. A row is written right after the folder's atomic
rename (:func:`record_run_folder`, called by the one recognise flow, batch runs included); a
process killed between the two leaves a folder without a row, which :meth:`RunIndex.sync`
(at ``serve`` start, and ``emotion2vec-webui catalog sync``) adds back, while rows whose folder
is gone (deleted by hand) are removed. A missing file, a file of an older schema, or a corrupt
one (SQLite reports ``SQLITE_CORRUPT`` / ``SQLITE_NOTADB``, or ``quick_check`` fails at start)
is rebuilt from the folders; the corrupt file is kept beside it as ``.catalog.sqlite3.corrupt``.
A failure to write the catalog never fails a run: it is logged, and the next sync repairs it.

Tables: ``runs`` (one row per run: single, batch member, live, conversation), ``batches`` (one
per batch folder), ``speakers`` and ``turns`` (one row per speaker and per turn of a
conversation run). Queries live in :mod:`runs.run_query`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from emotion2vec_webui.runs.catalog.folders import BATCH_ID_RE, BATCH_MANIFEST, batch_run_id
from emotion2vec_webui.runs.storage import RUN_ID_RE

log = logging.getLogger(__name__)

CATALOG_FILE = ".catalog.sqlite3"  # hidden: never mistaken for a run or batch folder
LOCK_FILE = ".catalog.lock"  # held while a corrupt catalog is replaced (across processes)
SCHEMA_VERSION = 4  # PRAGMA user_version; another value means: rebuild from the folders
BUSY_TIMEOUT_MS = 15_000  # how long a writer waits for another's commit before giving up
CHUNK = 500  # runs per write transaction while syncing (other writers get the lock in between)
_CORRUPT_CODES = (11, 26)  # SQLITE_CORRUPT, SQLITE_NOTADB (primary codes)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,      -- 'outputs_…' or '<batch>~outputs_…'
    okey TEXT NOT NULL,           -- the order of the listing: folder time, its _N, then the batch
    folder TEXT NOT NULL,         -- the run folder's own name
    batch TEXT,                   -- the batch folder's name (NULL for a single run)
    kind TEXT NOT NULL,           -- single | batch | live | stream
    conversation INTEGER NOT NULL DEFAULT 0,  -- 1 when result.json has speakers
    t REAL,                       -- the run's time, seconds since the epoch
    timestamp TEXT,               -- result.json's ISO 8601 time
    day TEXT,                     -- its date as the writer saw it (YYYY-MM-DD)
    source_name TEXT, duration_s REAL, granularity TEXT, emotion TEXT, confidence REAL,
    head TEXT, head_label TEXT,   -- a trained head's name and top label
    speakers TEXT,                -- the speakers' names, ', '-joined (display)
    label TEXT,                   -- the reference label, when a labelled batch gave one
    request_id TEXT
);
CREATE INDEX IF NOT EXISTS runs_okey ON runs(okey);
CREATE INDEX IF NOT EXISTS runs_batch ON runs(batch, okey);
CREATE INDEX IF NOT EXISTS runs_emotion ON runs(emotion, okey);
CREATE INDEX IF NOT EXISTS runs_emotion_t ON runs(emotion, t);  -- counts by emotion and time from the index alone
CREATE INDEX IF NOT EXISTS runs_t ON runs(t);
CREATE TABLE IF NOT EXISTS batches (
    batch_id TEXT PRIMARY KEY, t REAL, created TEXT, input TEXT, granularity TEXT, model TEXT,
    done INTEGER NOT NULL DEFAULT 0,   -- report.txt written: the batch finished
    activity REAL,                     -- the newest mtime of its manifest, summary and folder
    inputs INTEGER, ok INTEGER, failed INTEGER, labelled INTEGER,
    accuracy REAL, weighted_f1 REAL, macro_f1 REAL,
    sig TEXT                           -- the mtimes last read: a change means read it again
);
CREATE TABLE IF NOT EXISTS speakers (
    run_id TEXT NOT NULL, speaker TEXT NOT NULL, label TEXT, turns INTEGER, speaking_s REAL,
    dominant_emotion TEXT, PRIMARY KEY (run_id, speaker)
);
CREATE INDEX IF NOT EXISTS speakers_label ON speakers(label COLLATE NOCASE);
CREATE INDEX IF NOT EXISTS speakers_id ON speakers(speaker);
CREATE TABLE IF NOT EXISTS turns (
    run_id TEXT NOT NULL, idx INTEGER NOT NULL, speaker TEXT, start_s REAL, end_s REAL,
    emotion TEXT, confidence REAL, text TEXT, PRIMARY KEY (run_id, idx)
);
"""
# Search by part of a file name without reading every row: a trigram index of the names (FTS5, in every
# CPython build we know of; where it is missing, searches scan the table with LIKE instead). It follows
# the runs table through triggers; rows are upserted (never REPLACEd, which would skip the delete trigger).
_TEXT_SCHEMA = """
CREATE VIRTUAL TABLE IF NOT EXISTS runs_text USING fts5(
    source_name, content='runs', content_rowid='rowid', tokenize='trigram');
CREATE TRIGGER IF NOT EXISTS runs_text_ai AFTER INSERT ON runs BEGIN
    INSERT INTO runs_text(rowid, source_name) VALUES (new.rowid, new.source_name);
END;
CREATE TRIGGER IF NOT EXISTS runs_text_ad AFTER DELETE ON runs BEGIN
    INSERT INTO runs_text(runs_text, rowid, source_name) VALUES ('delete', old.rowid, old.source_name);
END;
CREATE TRIGGER IF NOT EXISTS runs_text_au AFTER UPDATE OF source_name ON runs BEGIN
    INSERT INTO runs_text(runs_text, rowid, source_name) VALUES ('delete', old.rowid, old.source_name);
    INSERT INTO runs_text(rowid, source_name) VALUES (new.rowid, new.source_name);
END;
"""
_RUN_COLUMNS = (
    "run_id okey folder batch kind conversation t timestamp day source_name duration_s granularity emotion "
    "confidence head head_label speakers label request_id"
).split()
_KIND_BY_CONTAINER = {"microphone": "live", "stream": "stream"}  # the Live tab; /api/v1/stream (WebSocket)
_INSERT_RUN = (
    f"INSERT INTO runs({', '.join(_RUN_COLUMNS)}) VALUES ({', '.join('?' * len(_RUN_COLUMNS))}) ON CONFLICT(run_id) "
    f"DO UPDATE SET {', '.join(f'{c}=excluded.{c}' for c in _RUN_COLUMNS[1:])}"
)


@dataclass(frozen=True)
class SyncReport:
    added: int  # runs found on disk without a row
    removed: int  # rows whose folder is gone
    batches: int  # batch rows (re)read
    runs: int  # rows after the sync
    seconds: float
    rebuilt: bool  # the file was missing, of another schema or corrupt, and was built anew


class RunIndex:
    """The catalog of one outputs root. Use :func:`catalog_for` (one instance per root and process).

    Args:
        root: the outputs root.
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root).resolve()
        self.path = self.root / CATALOG_FILE
        self._local = threading.local()
        self._sync_lock = threading.Lock()
        self._fresh = False  # this process created the file (or found it of another schema): a full sync is due
        self.syncing = False  # a sync is running in this process (listings may be incomplete meanwhile)

    # -- connections ------------------------------------------------------------------------------
    def connect(self) -> sqlite3.Connection:
        """This thread's connection (opened, set up and schema-checked on first use, or after the file changed)."""
        conn = getattr(self._local, "conn", None)
        ino = _inode(self.path)
        if conn is not None and self._local.key == (os.getpid(), ino):
            return conn
        if conn is not None:  # the file was replaced or removed, or we were forked
            with contextlib.suppress(sqlite3.Error):
                conn.close()
            self._local.conn = None
        self.root.mkdir(parents=True, exist_ok=True)
        existed = ino is not None
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            _retry_busy(lambda: conn.execute("PRAGMA journal_mode=WAL").fetchone())
            conn.execute("PRAGMA synchronous=NORMAL")  # WAL: a power cut may lose the last commits, never corrupt
            self._ensure_schema(conn, existed)
        except BaseException:
            conn.close()
            raise
        self._local.conn, self._local.key = conn, (os.getpid(), _inode(self.path))
        self._local.counts = {}
        return conn

    def count(self, conn: sqlite3.Connection, sql: str, params: list) -> int:
        """``sql`` (a ``SELECT COUNT…``) answered, or its answer from before when nothing was written since.

        A listing's ``total`` counts every matching row, which for a broad search means reading many;
        pages of one search (and a list polled again) ask the same count. "Nothing written since" is
        this connection's own changes (``total_changes``) plus any other connection's commits
        (``PRAGMA data_version``), so a cached count is never stale.
        """
        token = (conn.execute("PRAGMA data_version").fetchone()[0], conn.total_changes)
        counts = self._local.__dict__.setdefault("counts", {})
        key = (sql, tuple(params))
        hit = counts.get(key)
        if hit is not None and hit[0] == token:
            return hit[1]
        value = conn.execute(sql, params).fetchone()[0]
        if len(counts) >= 64:
            counts.clear()
        counts[key] = (token, value)
        return value

    def _ensure_schema(self, conn: sqlite3.Connection, existed: bool) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION:
            return
        with self.transaction(conn):
            version = conn.execute("PRAGMA user_version").fetchone()[0]  # another process may have done it
            if version == SCHEMA_VERSION:
                return
            if version:  # an older (or newer) layout: rebuilt from the folders
                for table in ("runs_text", "runs", "batches", "speakers", "turns"):
                    conn.execute(f"DROP TABLE IF EXISTS {table}")
            _create(conn)
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        self._fresh = True
        if existed and version:
            log.info("the run catalog %s had schema %s; rebuilding it from the run folders", self.path, version)

    @contextlib.contextmanager
    def transaction(self, conn: sqlite3.Connection | None = None) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` … ``COMMIT`` (rolled back on error): the write lock is taken up front."""
        conn = conn or self.connect()
        _retry_busy(lambda: conn.execute("BEGIN IMMEDIATE"))
        try:
            yield conn
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def call(self, fn: Callable[[sqlite3.Connection], object]):
        """``fn(connection)``; a corrupt file is replaced (and rebuilt in the background) and ``fn`` tried again."""
        try:
            return fn(self.connect())
        except sqlite3.DatabaseError as exc:
            if not is_corrupt(exc):
                raise
            self.recover(str(exc))
            return fn(self.connect())

    # -- writing rows -----------------------------------------------------------------------------
    def record_run(self, run_id: str, folder: str, batch: str | None, result: dict | None) -> None:
        """Upsert one run's rows (its speakers and turns too) from its result.json object."""

        def write(conn: sqlite3.Connection) -> None:
            with self.transaction(conn):
                _write_runs(conn, [(run_id, folder, batch, result)])
                if batch is not None:  # the batch gets its row with its first run
                    _ensure_batch(conn, self.root / batch)

        self.call(write)

    def record_batch(self, batch: str) -> None:
        """Read a batch folder's manifest, summary and metrics into its row, and its labels into its runs' rows."""
        folder = self.root / batch

        def write(conn: sqlite3.Connection) -> None:
            row, labels = read_batch_folder(folder)
            with self.transaction(conn):
                _write_batch(conn, row)
                conn.executemany(
                    "UPDATE runs SET label=? WHERE run_id=?", [(lab, batch_run_id(batch, f)) for f, lab in labels.items()]
                )

        self.call(write)

    def forget(self, run_ids: list[str] = (), batch: str | None = None) -> None:
        """Remove rows: the given runs, or a whole batch (its row and every run of it)."""

        def write(conn: sqlite3.Connection) -> None:
            with self.transaction(conn):
                ids = list(run_ids)
                if batch is not None:
                    ids += [r[0] for r in conn.execute("SELECT run_id FROM runs WHERE batch=?", (batch,))]
                    conn.execute("DELETE FROM batches WHERE batch_id=?", (batch,))
                _delete_runs(conn, ids)

        self.call(write)

    # -- repair -----------------------------------------------------------------------------------
    def sync(self, full: bool = False, check: bool = False) -> SyncReport:
        """Bring the catalog in line with the folders: add runs without a row, remove rows without a folder.

        Args:
            full: read every run folder again (``catalog rebuild``), not only the ones without a row.
            check: first run ``PRAGMA quick_check`` (at start: a corrupt file is replaced, then rebuilt).

        Returns:
            What changed. The rows are written in chunks of :data:`CHUNK` runs, so other writers wait
            at most one chunk, and listings see the runs as they are added.
        """
        with self._sync_lock:
            self.syncing = True
            started = time.perf_counter()
            try:
                rebuilt = not self.path.exists()
                if check and not rebuilt:
                    problem = self._quick_check()
                    if problem:
                        self.recover(problem, background=False)
                        rebuilt = True
                self.connect()
                rebuilt = rebuilt or self._fresh  # an empty file: every run is new to it
                self._fresh = False
                added, removed, batches = self._sync_rows(full)
                total = self.call(lambda c: c.execute("SELECT COUNT(*) FROM runs").fetchone()[0])
            finally:
                self.syncing = False
        report = SyncReport(added, removed, batches, total, time.perf_counter() - started, rebuilt)
        if added or removed or rebuilt:
            log.info("run catalog %s: %d runs added, %d removed, %d batches read (%d runs, %.2f s)%s", self.path,
                     added, removed, batches, total, report.seconds, " — rebuilt" if rebuilt else "")  # fmt: skip
        return report

    def _sync_rows(self, full: bool) -> tuple[int, int, int]:
        known = set() if full else set(self.call(lambda c: [r[0] for r in c.execute("SELECT run_id FROM runs")]))
        on_disk, batches = scan_folders(self.root)  # after reading the rows: a run landing in between is on disk
        new = [rid for rid in on_disk if rid not in known]
        for i in range(0, len(new), CHUNK):
            items = [(rid, *on_disk[rid], _read_json(self._folder(*on_disk[rid]) / "result.json")) for rid in new[i : i + CHUNK]]
            self.call(lambda c, items=items: self._write_chunk(c, items))
        rows = set(self.call(lambda c: [r[0] for r in c.execute("SELECT run_id FROM runs")]))
        gone = [rid for rid in rows if rid not in on_disk and not _folder_exists(self.root, rid)]
        for i in range(0, len(gone), CHUNK):
            self.call(lambda c, ids=gone[i : i + CHUNK]: self._delete_chunk(c, ids))
        stored = dict(self.call(lambda c: list(c.execute("SELECT batch_id, sig FROM batches"))))
        read = 0
        for batch in batches:
            if full or stored.get(batch) != batch_signature(self.root / batch):
                self.record_batch(batch)
                read += 1
        old = [b for b in stored if b not in batches and not (self.root / b / BATCH_MANIFEST).is_file()]
        if old:
            self.call(lambda c: self._delete_batches(c, old))
        return len(new), len(gone), read

    def _write_chunk(self, conn: sqlite3.Connection, items: list) -> None:
        with self.transaction(conn):
            _write_runs(conn, items)

    def _delete_chunk(self, conn: sqlite3.Connection, ids: list[str]) -> None:
        with self.transaction(conn):
            _delete_runs(conn, ids)

    def _delete_batches(self, conn: sqlite3.Connection, names: list[str]) -> None:
        with self.transaction(conn):
            conn.executemany("DELETE FROM batches WHERE batch_id=?", [(b,) for b in names])

    def _folder(self, folder: str, batch: str | None) -> Path:
        return self.root / folder if batch is None else self.root / batch / folder

    def _quick_check(self) -> str | None:
        """None when the file reads as a sound database, else what is wrong."""
        try:
            conn = self.connect()
            answer = conn.execute("PRAGMA quick_check(1)").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            return str(exc)
        return None if answer == "ok" else str(answer)

    def recover(self, reason: str, background: bool = True) -> None:
        """Replace a corrupt catalog with an empty one and rebuild it from the folders.

        Under a file lock, so one process replaces it; another that comes next finds a sound file.
        The corrupt file is kept as ``.catalog.sqlite3.corrupt`` for a look; its ``-wal`` and ``-shm``
        are removed (they belong to it).
        """
        self._drop_connection()
        with _file_lock(self.root / LOCK_FILE):
            if self._quick_check() is None:
                return  # another process (or thread) has replaced it already
            self._drop_connection()
            log.warning("the run catalog %s is corrupt (%s); rebuilding it from the run folders", self.path, reason)
            with contextlib.suppress(FileNotFoundError):
                os.replace(self.path, self.path.with_name(CATALOG_FILE + ".corrupt"))
            for suffix in ("-wal", "-shm", "-journal"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path.with_name(CATALOG_FILE + suffix))
            self.connect()
        if background:
            threading.Thread(target=self.sync, kwargs={"full": True}, name="e2v-catalog-rebuild", daemon=True).start()

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()


# -- one instance per root and process -----------------------------------------------------------
_indexes: dict[Path, RunIndex] = {}
_indexes_lock = threading.Lock()


def catalog_for(root: str | os.PathLike) -> RunIndex:
    """The :class:`RunIndex` of an outputs root (one per root in this process)."""
    key = Path(root).resolve()
    with _indexes_lock:
        index = _indexes.get(key)
        if index is None:
            index = _indexes[key] = RunIndex(key)
        return index


def record_run_folder(folder: str | os.PathLike, result: dict | None = None) -> None:
    """Write a run's catalog row right after its folder was renamed into place (never raises).

    A folder inside a batch folder (one holding ``batch.json``) is that batch's run; its outputs root
    is the batch folder's parent. A failure is logged: the folder stands, and the next sync adds it.

    Args:
        folder: the run folder.
        result: its result.json object (read from the folder when None).
    """
    folder = Path(folder)
    try:
        parent = folder.parent
        batch = parent.name if (parent / BATCH_MANIFEST).is_file() else None
        root = parent.parent if batch else parent
        result = result if result is not None else _read_json(folder / "result.json")
        run_id = batch_run_id(batch, folder.name) if batch else folder.name
        catalog_for(root).record_run(run_id, folder.name, batch, result)
    except Exception as exc:  # the run is written; the catalog catches up at the next sync
        log.warning("could not record run %s in the catalog (%s: %s); the next sync adds it", folder, type(exc).__name__, exc)


def record_batch_folder(folder: str | os.PathLike) -> None:
    """Refresh a batch's row (summary, metrics, labels) once it finished (never raises)."""
    folder = Path(folder)
    try:
        catalog_for(folder.parent).record_batch(folder.name)
    except Exception as exc:
        log.warning("could not record batch %s in the catalog (%s: %s)", folder, type(exc).__name__, exc)


# -- folders --------------------------------------------------------------------------------------
def scan_folders(root: Path) -> tuple[dict[str, tuple[str, str | None]], list[str]]:
    """Every run folder under ``root`` and its batch folders, by name only (no file is opened).

    Returns:
        ``{run id: (run folder name, batch or None)}`` and the batch folder names. Links are not followed.
    """
    runs: dict[str, tuple[str, str | None]] = {}
    batches: list[str] = []
    for entry in _entries(root):
        name = entry.name
        if RUN_ID_RE.match(name):
            runs[name] = (name, None)
        elif BATCH_ID_RE.match(name) and os.path.isfile(os.path.join(entry.path, BATCH_MANIFEST)):
            batches.append(name)
    for batch in batches:
        for entry in _entries(root / batch):
            if RUN_ID_RE.match(entry.name):
                runs[batch_run_id(batch, entry.name)] = (entry.name, batch)
    return runs, batches


def _entries(folder: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as it:
            return [e for e in it if e.is_dir(follow_symlinks=False)]
    except OSError:
        return []


def _folder_exists(root: Path, run_id: str) -> bool:
    batch, sep, run = run_id.partition("~")
    return (root / batch / run).is_dir() if sep else (root / run_id).is_dir()


def batch_signature(folder: Path) -> str:
    """The mtimes of what a batch row is read from: when it changes, the row is read again."""
    parts = []
    for name in (BATCH_MANIFEST, "summary.jsonl", "metrics.json", "report.txt"):
        try:
            parts.append(f"{os.stat(folder / name).st_mtime_ns}")
        except OSError:
            parts.append("-")
    return ":".join(parts)


def read_batch_folder(folder: Path) -> tuple[dict, dict[str, str]]:
    """A batch's row, and ``{run folder: reference label}`` from its summary."""
    manifest = _read_json(folder / BATCH_MANIFEST) or {}
    metrics = _read_json(folder / "metrics.json") or {}
    rows = {}
    with contextlib.suppress(OSError):
        for line in (folder / "summary.jsonl").read_text("utf-8").splitlines():
            with contextlib.suppress(ValueError):
                row = json.loads(line)
                rows[row.get("input") or row.get("file")] = row  # the last row per input counts
    ok = sum(r.get("status") == "ok" for r in rows.values())
    mtimes = [_mtime(folder / n) for n in (BATCH_MANIFEST, "summary.jsonl")] + [_mtime(folder)]
    t = _folder_time(folder.name)
    row = {
        "batch_id": folder.name, "t": t, "created": datetime.fromtimestamp(t).astimezone().isoformat() if t else None,
        "input": manifest.get("input"), "granularity": manifest.get("granularity"), "model": manifest.get("model"),
        "done": int((folder / "report.txt").is_file()), "activity": max(mtimes), "inputs": len(rows), "ok": ok,
        "failed": len(rows) - ok, "labelled": sum(bool(r.get("label")) for r in rows.values()),
        "accuracy": metrics.get("accuracy"), "weighted_f1": metrics.get("weighted_f1"),
        "macro_f1": metrics.get("macro_f1"), "sig": batch_signature(folder),
    }  # fmt: skip
    labels = {r["run_folder"]: r["label"] for r in rows.values() if r.get("run_folder") and r.get("label")}
    return row, labels


def _ensure_batch(conn: sqlite3.Connection, folder: Path) -> None:
    if conn.execute("SELECT 1 FROM batches WHERE batch_id=?", (folder.name,)).fetchone() is None:
        row, _ = read_batch_folder(folder)
        _write_batch(conn, {**row, "sig": ""})  # read again by the next sync or when the batch ends


def _write_batch(conn: sqlite3.Connection, row: dict) -> None:
    cols = list(row)
    conn.execute(f"INSERT OR REPLACE INTO batches({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                 [row[c] for c in cols])  # fmt: skip


# -- rows -----------------------------------------------------------------------------------------
def run_row(run_id: str, folder: str, batch: str | None, result: dict | None) -> tuple:
    """The ``runs`` row of one run from its result.json object (None: unreadable; the row says little)."""
    res = result if isinstance(result, dict) else {}
    audio = res.get("audio") if isinstance(res.get("audio"), dict) else {}
    head = res.get("head") if isinstance(res.get("head"), dict) else {}
    speakers = [s for s in res.get("speakers") or [] if isinstance(s, dict)]
    timestamp = res.get("timestamp") if isinstance(res.get("timestamp"), str) else None
    t = _parse_time(timestamp) or _folder_time(folder)
    day = timestamp[:10] if timestamp else (datetime.fromtimestamp(t).strftime("%Y-%m-%d") if t else None)
    kind = "batch" if batch else _KIND_BY_CONTAINER.get(str(audio.get("container")), "single")
    names = ", ".join(str(s.get("label") or s.get("id") or "") for s in speakers)
    return (
        run_id, order_key(folder, batch), folder, batch, kind, int(bool(speakers)), t, timestamp, day,
        _text(audio.get("source_name")), _num(audio.get("duration_s")), _text(res.get("granularity")),
        _text(res.get("emotion")), _num(res.get("confidence")), _text(head.get("name")), _text(head.get("label")),
        names or None, _text(res.get("label")), _text(res.get("request_id")),
    )  # fmt: skip


def order_key(folder: str, batch: str | None) -> str:
    """Sorts like the folder walk did: the folder's time stamp, then its ``_N``, then the batch name."""
    tail = folder[24:]  # ASCII digits only: "²".isdigit() is True, and int() refuses it
    n = int(tail) if len(folder) > 23 and tail.isascii() and tail.isdigit() and len(tail) <= 18 else 0
    return f"{folder[8:23]}_{n:05d} {batch or ''} {folder}"  # ' ' sorts below any name character


def _write_runs(conn: sqlite3.Connection, items: list) -> None:
    """Upsert ``[(run_id, folder, batch, result)]`` with their speakers and turns."""
    conn.executemany(_INSERT_RUN, [run_row(*item) for item in items])
    ids = [(item[0],) for item in items]
    conn.executemany("DELETE FROM speakers WHERE run_id=?", ids)
    conn.executemany("DELETE FROM turns WHERE run_id=?", ids)
    speakers, turns = [], []
    for run_id, _folder, _batch, result in items:
        res = result if isinstance(result, dict) else {}
        for s in res.get("speakers") or []:
            if isinstance(s, dict) and s.get("id") is not None:
                speakers.append((run_id, str(s["id"]), _text(s.get("label")) or str(s["id"]), _num(s.get("turns")),
                                 _num(s.get("speaking_s")), _text(s.get("dominant_emotion"))))  # fmt: skip
        for i, turn in enumerate(res.get("turns") or []):
            if isinstance(turn, dict):
                turns.append((run_id, int(_num(turn.get("index")) or i), _text(turn.get("speaker")),
                              _num(turn.get("start_s")), _num(turn.get("end_s")), _text(turn.get("emotion")),
                              _num(turn.get("confidence")), _text(turn.get("text"))))  # fmt: skip
    conn.executemany("INSERT OR REPLACE INTO speakers VALUES (?, ?, ?, ?, ?, ?)", speakers)
    conn.executemany("INSERT OR REPLACE INTO turns VALUES (?, ?, ?, ?, ?, ?, ?, ?)", turns)


def _delete_runs(conn: sqlite3.Connection, ids: list[str]) -> None:
    rows = [(i,) for i in ids]
    for table in ("runs", "speakers", "turns"):
        conn.executemany(f"DELETE FROM {table} WHERE run_id=?", rows)


def _create(conn: sqlite3.Connection) -> None:
    for statement in _statements(_SCHEMA):
        conn.execute(statement)
    try:
        for statement in _statements(_TEXT_SCHEMA):
            conn.execute(statement)
    except sqlite3.OperationalError as exc:  # an SQLite without FTS5: searches fall back to LIKE
        log.warning("no full-text index for the run catalog (%s): searching by name scans every row", exc)


def _statements(script: str) -> Iterator[str]:
    """The SQL statements of ``script`` (a trigger's body holds semicolons: complete_statement decides)."""
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            yield buffer.strip()
            buffer = ""


def has_text_index(conn: sqlite3.Connection) -> bool:
    """Whether the catalog has its trigram index of names (FTS5)."""
    return conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'runs_text'").fetchone() is not None


# -- small helpers --------------------------------------------------------------------------------
def is_corrupt(exc: sqlite3.DatabaseError) -> bool:
    """Whether SQLite says the file is not a sound database (not a busy or locked answer)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return (code & 0xFF) in _CORRUPT_CODES
    text = str(exc).lower()
    return "malformed" in text or "not a database" in text


def _retry_busy(fn: Callable[[], object], tries: int = 50):
    # BEGIN IMMEDIATE and the switch to WAL can answer "database is locked" without waiting
    # for busy_timeout (SQLite skips the busy handler where waiting could deadlock).
    for attempt in range(tries):
        try:
            return fn()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc) or attempt == tries - 1:
                raise
            time.sleep(0.02 + 0.01 * attempt)


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _inode(path: Path) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def _mtime(path: Path) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0


def _read_json(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _parse_time(text: str | None) -> float | None:
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text)
        return (when if when.tzinfo else when.astimezone()).timestamp()
    except (ValueError, OverflowError, OSError, TypeError):  # year 1 local time cannot be placed; not a string
        return None


def _folder_time(name: str) -> float | None:
    """The time in ``outputs_YYYYMMDD_HHMMSS…`` / ``batch_YYYYMMDD_HHMMSS…`` (local time), or None."""
    stamp = name.split("_", 1)[-1][:15]
    try:
        return datetime.strptime(stamp, "%Y%m%d_%H%M%S").astimezone().timestamp()
    except (ValueError, OverflowError, OSError):
        return None


def _text(value) -> str | None:
    return None if value is None else str(value)


def _num(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
