"""Removing runs: one run or batch on request (REST, History), and old ones by policy (E2V_KEEP_DAYS / E2V_KEEP_RUNS).

A removal never meets a half-written run: runs are written in hidden ``.tmp-…`` folders and
appear by one rename, so only complete runs have ids. It never takes a run from under a
reader or writer either:

- a run read or rewritten in this process right now (a REST detail or rename, History opening
  it) is marked with :func:`in_use`; removal skips it (retention) or answers ``run_busy`` (409);
- a batch still being written — no ``report.txt`` yet and activity in the last 15 minutes
  (``run_stats.BATCH_ACTIVE_S``), possibly by another process (a ``batch`` CLI) — is left alone;
- a run newer than :data:`GRACE_S` is never removed by retention (a speaker rename may follow
  its recognition);
- a download already started goes on: it reads from one open descriptor, which outlives the
  folder's removal.

The folder is first renamed to a hidden temporary name in the same folder (one atomic step:
the run is gone for every reader at once), its catalog rows are removed, then the files. A
process killed in between leaves a ``.tmp-…`` folder that the start-up sweep removes
(``storage.clean_stale_temps``).

Retention works on what a person sees as one item: a single run, or a whole batch (never part of
one). ``E2V_KEEP_DAYS``: items whose newest run is older are removed. ``E2V_KEEP_RUNS``: items
are kept newest first until they hold that many runs (a batch counts its runs; the batch that
crosses the line is kept whole), the rest removed. Both off (0) by default; applied when
``serve`` starts and every hour (:class:`Maintenance`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.runs import storage
from emotion2vec_webui.runs.catalog.folders import BATCH_ID_RE, INCOMPLETE_DIR, batch_folder, run_path, split_run_id
from emotion2vec_webui.runs.catalog.run_index import RunIndex, catalog_for, read_batch_folder
from emotion2vec_webui.runs.catalog.run_stats import batch_state

log = logging.getLogger(__name__)

GRACE_S = 600.0  # retention never removes a run (or batch) younger than this
RETENTION_EVERY_S = 3600.0  # how often serve applies the policy

_in_use: Counter[str] = Counter()
_in_use_lock = threading.Lock()


@contextlib.contextmanager
def in_use(path: str | os.PathLike | None) -> Iterator[None]:
    """Mark a run folder (or batch folder) as being read or rewritten in this process while the block runs."""
    key = str(Path(path).resolve()) if path else ""
    with _in_use_lock:
        _in_use[key] += 1
    try:
        yield
    finally:
        with _in_use_lock:
            _in_use[key] -= 1
            if _in_use[key] <= 0:
                del _in_use[key]


def is_in_use(path: Path) -> bool:
    """Whether ``path``, or a run folder inside it, is marked by :func:`in_use`."""
    key = str(path.resolve())
    with _in_use_lock:
        return any(k == key or k.startswith(key + os.sep) for k in _in_use)


def _busy(what: str) -> E2VError:
    return E2VError("run_busy", f"{what} is being written or read right now; try again shortly. "
                                f"/ {what} 正在写入或读取，请稍后再试。")  # fmt: skip


def _remove_folder(path: Path, missing: str) -> None:
    """Rename ``path`` to a hidden temporary name beside it (atomic: gone for readers), then delete it.

    Raises:
        E2VError: ``not_found`` (saying ``missing``) when it is gone already; the storage error of a refusal.
    """
    hidden = path.parent / storage.temp_name()
    try:
        os.rename(path, hidden)
    except FileNotFoundError:
        raise E2VError("not_found", missing) from None
    except OSError as exc:
        raise storage.storage_error(exc) or exc from None
    shutil.rmtree(hidden, ignore_errors=True)


def delete_run(root: str | os.PathLike, run_id: str) -> None:
    """Remove one run (a single run, or one run of a batch) and its catalog rows.

    Raises:
        E2VError: ``not_found`` (no such run), ``run_busy`` (being read or rewritten in this process).
    """
    path = run_path(root, run_id)
    if path is None:
        raise E2VError("not_found", "No such run. / 没有这个运行。")
    if is_in_use(path):
        raise _busy(f"Run {run_id} / 运行 {run_id}")
    index = catalog_for(root)
    _remove_folder(path, "No such run. / 没有这个运行。")
    index.forget([run_id])
    log.info("deleted run %s", run_id)


def delete_batch(root: str | os.PathLike, batch: str, force_stopped: bool = True) -> int:
    """Remove a whole batch folder (every run of it) and its catalog rows.

    Returns:
        How many runs it held.

    Raises:
        E2VError: ``not_found``; ``run_busy`` while the batch is still being written (no report.txt,
            activity in the last 15 minutes) or one of its runs is being read here.
    """
    folder = batch_folder(root, batch)
    if folder is None:
        raise E2VError("not_found", "No such batch. / 没有这个批量。")
    row, _ = read_batch_folder(folder)
    if batch_state(row) == "running" or is_in_use(folder):
        raise _busy(f"Batch {batch} / 批量 {batch}")
    runs = sum(1 for p in folder.iterdir() if storage.RUN_ID_RE.match(p.name))
    index = catalog_for(root)
    _remove_folder(folder, "No such batch. / 没有这个批量。")
    index.forget(batch=batch)
    log.info("deleted batch %s (%d runs)", batch, runs)
    return runs


def delete_item(root: str | os.PathLike, item_id: str) -> int:
    """:func:`delete_batch` for a batch id, else :func:`delete_run`; how many runs went."""
    batch, _run = split_run_id(item_id)
    if batch is None and BATCH_ID_RE.match(item_id or "") and not storage.RUN_ID_RE.match(item_id):
        return delete_batch(root, item_id)
    delete_run(root, item_id)
    return 1


# -- retention ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RetentionPolicy:
    keep_days: float = 0.0  # E2V_KEEP_DAYS: remove items older than this many days (0: off)
    keep_runs: int = 0  # E2V_KEEP_RUNS: keep the newest items holding this many runs (0: off)

    @property
    def active(self) -> bool:
        return self.keep_days > 0 or self.keep_runs > 0

    @classmethod
    def from_settings(cls, settings) -> RetentionPolicy:
        return cls(float(getattr(settings, "keep_days", 0) or 0), int(getattr(settings, "keep_runs", 0) or 0))


@dataclass(frozen=True)
class RetentionReport:
    runs: int  # runs removed (batch runs included)
    batches: int  # whole batches removed
    skipped: int  # items due but left alone (in use, being written, too new)
    incomplete_takes: int = 0  # kept audio files of incomplete live takes removed (by age only)


def apply_retention(root: str | os.PathLike, policy: RetentionPolicy, now: float | None = None) -> RetentionReport:
    """Remove the single runs and whole batches that ``policy`` no longer keeps (see the module docstring)."""
    if not policy.active:
        return RetentionReport(0, 0, 0)
    now = time.time() if now is None else now
    index = catalog_for(root)
    removed_runs = removed_batches = skipped = 0
    for item, newest_t, is_batch in _due(index, policy, now):
        path = Path(index.root) / item
        try:
            if _too_new(path, newest_t, now) or is_in_use(path):
                skipped += 1
                continue
            if is_batch:
                removed_runs += delete_batch(root, item)
                removed_batches += 1
            else:
                delete_run(root, item)
                removed_runs += 1
        except E2VError as exc:
            if exc.code != "not_found":  # already gone: someone else removed it
                skipped += 1
                log.info("retention left %s: %s", item, exc.message)
    if removed_runs or skipped:
        log.info("retention (keep_days=%s, keep_runs=%s): removed %d runs (%d whole batches), left %d for later",
                 policy.keep_days or "off", policy.keep_runs or "off", removed_runs, removed_batches, skipped)  # fmt: skip
    incomplete = _sweep_incomplete_takes(Path(root), policy, now)
    return RetentionReport(removed_runs, removed_batches, skipped, incomplete)


def _sweep_incomplete_takes(root: Path, policy: RetentionPolicy, now: float) -> int:
    """Remove kept audio of incomplete live takes (``incomplete_takes/*.wav``) older than ``E2V_KEEP_DAYS``.

    They are not runs (``E2V_KEEP_RUNS`` does not count them); by age they go like everything else.

    Returns:
        How many files were removed.
    """
    if policy.keep_days <= 0:
        return 0
    removed = 0
    cutoff = now - policy.keep_days * 86400
    with contextlib.suppress(OSError):
        for entry in os.scandir(root / INCOMPLETE_DIR):
            with contextlib.suppress(OSError):
                if entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_mtime < cutoff:
                    os.unlink(entry.path)
                    removed += 1
    if removed:
        log.info("retention (keep_days=%s): removed %d kept audio files of incomplete takes", policy.keep_days, removed)
    return removed


def _due(index: RunIndex, policy: RetentionPolicy, now: float) -> list[tuple[str, float, bool]]:
    """``[(run id or batch id, newest run time, is a batch)]`` that the policy removes."""

    def query(conn):
        singles = conn.execute("SELECT run_id, okey, t, 1 FROM runs WHERE batch IS NULL").fetchall()
        batches = conn.execute(
            "SELECT b.batch_id, COALESCE(MAX(r.okey), ''), COALESCE(MAX(r.t), b.t), COUNT(r.run_id) "
            "FROM batches b LEFT JOIN runs r ON r.batch = b.batch_id GROUP BY b.batch_id"
        ).fetchall()
        return singles, batches

    singles, batches = index.call(query)
    # newest first, by the newest run's place in the listing (a batch without runs by its own name's time)
    items = [(rid, okey, t or 0.0, max(1, n), False) for rid, okey, t, n in singles]
    items += [(bid, okey or _batch_key(bid), t or 0.0, max(1, n), True) for bid, okey, t, n in batches]
    items.sort(key=lambda it: it[1], reverse=True)
    due, kept = [], 0
    for item_id, _okey, t, n, is_batch in items:
        old = policy.keep_days > 0 and t < now - policy.keep_days * 86400
        over = policy.keep_runs > 0 and kept >= policy.keep_runs
        if old or over:
            due.append((item_id, t, is_batch))
        else:
            kept += n
    return due


def _batch_key(batch: str) -> str:
    stamp = batch.split("_", 1)[-1]
    return f"{stamp[:15]}_00000 {batch} "


def _too_new(path: Path, newest_t: float, now: float) -> bool:
    try:
        mtime = path.stat().st_mtime
    except OSError:
        mtime = 0.0
    return max(newest_t, mtime) > now - GRACE_S


# -- the server's background upkeep ---------------------------------------------------------------
class Maintenance:
    """At ``serve`` start: sync the catalog with the folders, then apply retention; both again every hour.

    Runs on one daemon thread, so the server answers (``/healthz``, the UI) while a large catalog
    is built; listings then say ``indexing`` until the first sync is done.

    Args:
        root: the outputs root.
        policy: the retention policy (off: only the sync runs).
        every_s: seconds between two retention passes.
        clock: the time now, in seconds since the epoch (tests move it).
    """

    def __init__(self, root: str | os.PathLike, policy: RetentionPolicy, every_s: float = RETENTION_EVERY_S,
                 clock: Callable[[], float] = time.time) -> None:  # fmt: skip
        self.root = Path(root)
        self.policy = policy
        self.every_s = every_s
        self.clock = clock
        self.synced = threading.Event()  # the start-up sync is done (or failed)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Maintenance:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="e2v-catalog", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        try:
            catalog_for(self.root).sync(check=True)
        except Exception:  # the catalog is an index: the server serves on, listings may be incomplete
            log.exception("the start-up sync of the run catalog in %s failed", self.root)
        finally:
            self.synced.set()
        while not self._stop.is_set():
            if self.policy.active:
                try:
                    apply_retention(self.root, self.policy, now=self.clock())
                except Exception:
                    log.exception("retention in %s failed; trying again in %.0f s", self.root, self.every_s)
            if self._stop.wait(self.every_s):
                return
            with contextlib.suppress(Exception):  # folders removed or copied in by hand meanwhile (cheap: names only)
                catalog_for(self.root).sync()
