"""Run folders: ``outputs/outputs_YYYYMMDD_HHMMSS[_N]/`` written atomically, and read back.

A run is written into a hidden temporary folder inside the outputs root and
renamed into place in one step, so a run folder either holds all its files
or does not exist. Names are unique under concurrency: ``rename`` onto an
existing (non-empty) folder fails, and the writer then tries ``_1``, ``_2`` ….
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

RUN_ID_RE = re.compile(r"^outputs_\d{8}_\d{6}(_\d+)?$")
ARTIFACTS = ("result.json", "processed_audio.wav", "embedding.npy")
RUN_FILES = ARTIFACTS + ("run.log",)
_TMP_PREFIX = ".tmp-"
_STALE_TMP_S = 3600


@dataclass(frozen=True)
class RunFolder:
    run_id: str  # folder name, matches RUN_ID_RE
    path: Path  # absolute path of the folder


def now_local() -> datetime:
    """The current time with the machine's UTC offset."""
    return datetime.now().astimezone()


def iso_timestamp(when: datetime) -> str:
    return when.isoformat(timespec="seconds")


def write_run(
    root: str | os.PathLike,
    result: dict,
    waveform: np.ndarray,
    embedding: np.ndarray | None,
    log_text: str,
    when: datetime | None = None,
) -> RunFolder:
    """Write one run folder atomically.

    Args:
        root: the outputs root (created if missing).
        result: the result.json object.
        waveform: the 16 kHz mono signal the model saw.
        embedding: ``[D]`` or ``[T, D]`` float32, or None.
        log_text: the run's processing log.
        when: the run's time (names the folder); now when omitted.

    Returns:
        The run's id and path.
    """
    from emotion2vec_webui.audio.decode import write_wav_pcm16

    root_path = Path(root)
    root_path.mkdir(parents=True, exist_ok=True)
    when = when or now_local()
    tmp = root_path / f"{_TMP_PREFIX}{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        write_wav_pcm16(tmp / "processed_audio.wav", waveform)
        if embedding is not None:
            np.save(tmp / "embedding.npy", np.asarray(embedding, dtype=np.float32))
        (tmp / "run.log").write_text(log_text, "utf-8")
        (tmp / "result.json").write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n", "utf-8")
        return _place(tmp, root_path, when.strftime("outputs_%Y%m%d_%H%M%S"))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _place(tmp: Path, root: Path, base: str) -> RunFolder:
    for n in range(0, 100_000):
        run_id = base if n == 0 else f"{base}_{n}"
        target = root / run_id
        if target.exists():
            continue
        try:
            os.rename(tmp, target)
        except OSError as exc:
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                continue  # another run took this name between our check and rename
            raise
        return RunFolder(run_id, target.resolve())
    raise RuntimeError(f"no free run folder name for {base}")


def _run_sort_key(run_id: str) -> tuple[str, int]:
    # "outputs_YYYYMMDD_HHMMSS" is 23 characters; "_N" may follow.
    return run_id[:23], int(run_id[24:]) if len(run_id) > 23 else 0


def list_runs(root: str | os.PathLike, limit: int | None = None) -> list[RunFolder]:
    """Complete run folders under ``root``, newest first."""
    root_path = Path(root)
    if not root_path.is_dir():
        return []
    ids = [p.name for p in root_path.iterdir() if RUN_ID_RE.match(p.name) and p.is_dir()]
    ids.sort(key=_run_sort_key, reverse=True)
    if limit is not None:
        ids = ids[:limit]
    return [RunFolder(i, (root_path / i).resolve()) for i in ids]


def run_path(root: str | os.PathLike, run_id: str, artifact: str | None = None) -> Path | None:
    """The path of a run (or one of its artifacts), or None when invalid or absent.

    Only ids matching ``RUN_ID_RE`` and names in ``RUN_FILES`` are accepted, and
    the resolved path must lie inside the outputs root (no symlink escapes).
    """
    if not RUN_ID_RE.match(run_id or ""):
        return None
    if artifact is not None and artifact not in RUN_FILES:
        return None
    root_real = Path(root).resolve()
    candidate = root_real / run_id if artifact is None else root_real / run_id / artifact
    try:
        real = candidate.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not real.is_relative_to(root_real) or real == root_real:
        return None
    if artifact is not None and not real.is_file():
        return None
    if artifact is None and not real.is_dir():
        return None
    return real


def read_result(root: str | os.PathLike, run_id: str) -> dict | None:
    """A run's result.json as a dict, or None."""
    path = run_path(root, run_id, "result.json")
    if path is None:
        return None
    try:
        return json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None


def clean_stale_temps(root: str | os.PathLike, older_than_s: float = _STALE_TMP_S) -> int:
    """Remove temporary folders left by runs that died (e.g. a killed process)."""
    root_path = Path(root)
    if not root_path.is_dir():
        return 0
    removed = 0
    cutoff = time.time() - older_than_s
    for p in root_path.glob(f"{_TMP_PREFIX}*"):
        try:
            if p.stat().st_mtime < cutoff:
                shutil.rmtree(p, ignore_errors=True)
                removed += 1
        except OSError:
            pass
    return removed
