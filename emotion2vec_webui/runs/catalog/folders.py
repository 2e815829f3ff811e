"""Every run under the outputs root, single and batch: list them, find one by id, read its result.

Single runs are ``<outputs>/outputs_…/``; a batch writes its run folders
inside its batch folder, ``<outputs>/batch_…/outputs_…/`` (jobs/batch.py).
Both are runs: the REST listing, ``GET /api/v1/runs/{run_id}`` and the UI's
History show them alike. A batch run's id is ``<batch id>~<run folder>``
(``batch_20261201_231500~outputs_20261201_231502``): one URL path segment,
no slash, no encoding. ``~`` appears in neither name, so the split is
unambiguous.

Ids are untrusted input: a batch id must be a plain folder name (letters,
digits, ``_ . -``; not starting with a dot) holding a ``batch.json``
manifest, the run part must match ``RUN_ID_RE``, and every resolved path must
lie inside the outputs root (:func:`storage.run_path` does the last step for
the batch folder as its root, after the batch folder itself was checked).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from emotion2vec_webui.runs import storage

BATCH_MANIFEST = "batch.json"  # marks a batch folder (jobs/batch.py writes it first)
BATCH_SEP = "~"
INCOMPLETE_DIR = "incomplete_takes"  # the audio of live takes the model could not save (runs/live/live_stream.py)
BATCH_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


@dataclass(frozen=True)
class RunEntry:
    run_id: str  # "outputs_…" or "<batch id>~outputs_…"
    path: Path  # the run folder
    batch: str | None = None  # the batch folder's name, for runs of a batch

    @property
    def folder_name(self) -> str:
        """The run folder's own name (``outputs_…``)."""
        return self.path.name


def batch_run_id(batch: str, run_folder: str) -> str:
    """The id of run folder ``run_folder`` inside batch folder ``batch``."""
    return f"{batch}{BATCH_SEP}{run_folder}"


def split_run_id(run_id: str) -> tuple[str | None, str]:
    """``(batch id or None, run folder name)``; nothing is checked here."""
    batch, sep, run = (run_id or "").partition(BATCH_SEP)
    return (batch, run) if sep else (None, run_id or "")


def batch_folder(root: str | os.PathLike, batch: str) -> Path | None:
    """The resolved batch folder named ``batch`` directly under ``root``, or None when invalid or absent."""
    if not BATCH_ID_RE.match(batch or "") or storage.RUN_ID_RE.match(batch):
        return None
    root_real = Path(root).resolve()
    try:
        real = (root_real / batch).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if real.parent != root_real or not real.is_dir() or not (real / BATCH_MANIFEST).is_file():
        return None  # a symlink out of the root, or not a batch
    return real


def batch_ids(root: str | os.PathLike) -> list[str]:
    """Batch folders directly under ``root``, newest name first."""
    root_path = Path(root)
    if not root_path.is_dir():
        return []
    names = [p.name for p in root_path.iterdir() if BATCH_ID_RE.match(p.name) and not storage.RUN_ID_RE.match(p.name)]
    return sorted((n for n in names if batch_folder(root_path, n) is not None), reverse=True)


def list_runs(root: str | os.PathLike, limit: int | None = None, batch: str | None = None) -> list[RunEntry]:
    """Complete runs, single and batch, newest first (by the run folder's time stamp).

    Args:
        root: the outputs root.
        limit: at most this many.
        batch: only the runs of this batch (an unknown batch lists nothing).
    """
    entries: list[RunEntry] = []
    if batch is None:
        entries += [RunEntry(r.run_id, r.path) for r in storage.list_runs(root)]
        batches = batch_ids(root)
    else:
        batches = [batch] if batch_folder(root, batch) is not None else []
    for name in batches:
        folder = Path(root).resolve() / name
        entries += [RunEntry(batch_run_id(name, r.run_id), r.path, name) for r in storage.list_runs(folder)]
    entries.sort(key=lambda e: (_sort_key(e.folder_name), e.batch or ""), reverse=True)
    return entries if limit is None else entries[:limit]


def _sort_key(folder_name: str) -> tuple[str, int]:
    # "outputs_YYYYMMDD_HHMMSS" is 23 characters; "_N" may follow.
    return folder_name[:23], int(folder_name[24:]) if len(folder_name) > 23 else 0


def run_path(root: str | os.PathLike, run_id: str, artifact: str | None = None) -> Path | None:
    """:func:`storage.run_path` for single and batch run ids (None when invalid or absent)."""
    batch, run = split_run_id(run_id)
    if batch is None:
        return storage.run_path(root, run, artifact)
    folder = batch_folder(root, batch)
    if folder is None:
        return None
    path = storage.run_path(folder, run, artifact)
    if path is None or not path.is_relative_to(Path(root).resolve()):
        return None
    return path


def read_result(root: str | os.PathLike, run_id: str) -> dict | None:
    """A run's result.json (single or batch run) as a dict, or None."""
    path = run_path(root, run_id, "result.json")
    if path is None:
        return None
    try:
        return json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None
