"""The one atomic writer for every file a user keeps (summaries, reports, benchmark records).

A file is written to a hidden temporary file in the same folder, flushed and
fsynced, then renamed over the target in one step (``os.replace``), and the
folder is fsynced so the rename itself survives a power cut. A reader sees
the old file or the new one, never half of one; on any failure the temporary
file is removed and the old file is left as it was. Run folders use the same
idea one level up (a temporary folder renamed into place; ``runs/storage.py``).
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

TEMP_PREFIX = ".tmp-"  # hidden, and named with the writer's pid so a sweeper can tell a dead writer's
TEMP_NAME_RE = re.compile(r"^\.tmp-\d+-[0-9a-f]{12}-.+$")  # what temp_name gives


def temp_name(final_name: str) -> str:
    """A hidden temporary name beside ``final_name``: ``.tmp-<pid>-<random>-<final_name>``."""
    return f"{TEMP_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:12]}-{final_name}"


def remove_stale_temp_files(folder: str | os.PathLike, is_stale: Callable[[str, float], bool]) -> int:
    """Remove the temporary files this writer left in ``folder`` (a writer killed mid-write) that are stale.

    Only regular files named by :func:`temp_name` count; ``is_stale(name, mtime)`` decides (the outputs'
    sweeper, ``runs/storage.py``, passes its rule). Entries that vanish or cannot be removed are skipped.

    Returns:
        How many were removed.
    """
    try:
        temps = [p for p in Path(folder).iterdir() if TEMP_NAME_RE.match(p.name)]
    except OSError:
        return 0
    removed = 0
    for p in temps:
        with contextlib.suppress(OSError):  # gone meanwhile (the write finished), or not ours to remove
            st = p.lstat()
            if stat.S_ISREG(st.st_mode) and is_stale(p.name, st.st_mtime):
                p.unlink()
                removed += 1
    return removed


def fsync_dir(folder: str | os.PathLike) -> None:
    """Make a rename inside ``folder`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open ``path`` for writing so that it appears whole or not at all.

    Args:
        path: the file to (re)place; its folder must exist.
        mode: ``"w"`` (text) or ``"wb"`` (bytes).
        encoding: for text mode.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', not {mode!r}")
    target = Path(path)
    tmp = target.with_name(temp_name(target.name))
    kwargs = {"encoding": encoding, "newline": ""} if mode == "w" else {}
    try:
        with open(tmp, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(target.parent)


def write_atomic(path: str | os.PathLike, data: bytes | str, encoding: str = "utf-8") -> None:
    """Write ``data`` (text or bytes) to ``path`` atomically (see :func:`atomic_open`)."""
    if isinstance(data, str):
        with atomic_open(path, "w", encoding) as f:
            f.write(data)
    else:
        with atomic_open(path, "wb", None) as f:
            f.write(data)
