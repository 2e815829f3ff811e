"""Run folders: ``outputs/outputs_YYYYMMDD_HHMMSS[_N]/`` written atomically, and read back.

A run is written into a hidden temporary folder inside the outputs root and
renamed into place in one step, so a run folder either holds all its files
or does not exist. Names are unique under concurrency: ``rename`` onto an
existing (non-empty) folder fails, and the writer then tries ``_1``, ``_2`` ….

Temporary folders are named ``.tmp-<pid>-<host>-<uuid>``: a writer removes its
own on any failure, and :func:`clean_stale_temps` (run when ``serve`` and
``batch`` start) removes those whose process is gone — at once when the pid
on this host is dead, otherwise once they are an hour old; and, inside run
folders (also a batch folder's), ``files.py``'s temporary files (a speaker
rename cut short).

An output folder that is full or cannot be written raises
:class:`.errors.StorageError` (``storage_full`` / ``storage_unavailable``)
instead of a bare ``OSError``, so every face reports it the same way;
:func:`check_output_dir` is the cheap probe behind ``/readyz`` and the
start-up checks.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import io
import json
import logging
import os
import re
import shutil
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from emotion2vec_webui.errors import StorageError
from emotion2vec_webui.files import remove_stale_temp_files
from emotion2vec_webui.runs.frames_csv import FRAMES_CSV, frames_csv_text
from emotion2vec_webui.runs.transcripts import conversation_files

log = logging.getLogger(__name__)

RUN_ID_RE = re.compile(r"^outputs_\d{8}_\d{6}(_\d+)?$")
ARTIFACTS = ("result.json", "processed_audio.wav", "embedding.npy", "frames.csv")  # frames.csv: frame runs
ARTIFACTS += ("transcript.srt", "transcript.vtt", "turns.csv", "turns.jsonl")  # conversation runs (transcripts.py)
ARTIFACTS += ("report.html",)  # recognize --report, or made on request from result.json (runs/report.py)
RUN_FILES = ARTIFACTS + ("run.log",)
_TMP_PREFIX = ".tmp-"
_TMP_NAME_RE = re.compile(r"^\.tmp-(\d+)-([0-9a-f]{8})-")  # .tmp-<pid>-<host tag>-<uuid>
_STALE_TMP_S = 3600
# OSError numbers that mean "this folder cannot take files", as opposed to a bug.
_FULL_ERRNOS = frozenset(e for e in (errno.ENOSPC, getattr(errno, "EDQUOT", None)) if e is not None)
_UNWRITABLE_ERRNOS = frozenset(
    (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EEXIST, errno.ENOENT, errno.EIO, errno.EISDIR)
)


@dataclass(frozen=True)
class RunFolder:
    run_id: str  # folder name, matches RUN_ID_RE
    path: Path  # absolute path of the folder


def now_local() -> datetime:
    """The current time with the machine's UTC offset."""
    return datetime.now().astimezone()


def iso_timestamp(when: datetime) -> str:
    return when.isoformat(timespec="seconds")


@functools.lru_cache(maxsize=1)
def _host_tag() -> str:
    # Tells this machine's (or container's) pids from another's on a shared outputs folder.
    return hashlib.sha1(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:8]


def temp_name() -> str:
    """A fresh hidden temporary name, ``.tmp-<pid>-<host>-<uuid>``, that :func:`clean_stale_temps` understands."""
    return f"{_TMP_PREFIX}{os.getpid()}-{_host_tag()}-{uuid.uuid4().hex}"


def storage_error(exc: OSError) -> StorageError | None:
    """The typed error for an OSError that means the output folder is full or unwritable, else None."""
    if exc.errno in _FULL_ERRNOS:
        return StorageError(
            "storage_full",
            "The output folder is full (no space left on its disk, or over quota): free some space or "
            "point E2V_OUTPUT_DIR at another disk. / 输出文件夹所在磁盘已满（或超出配额）：请释放空间，"
            "或将 E2V_OUTPUT_DIR 指向其他磁盘。",
        )
    if exc.errno in _UNWRITABLE_ERRNOS:
        reason = os.strerror(exc.errno) if exc.errno else type(exc).__name__
        return StorageError(
            "storage_unavailable",
            f"The output folder cannot be written ({reason}): check that E2V_OUTPUT_DIR (--output-dir) is a writable "
            f"folder. / 输出文件夹无法写入（{reason}）：请检查 E2V_OUTPUT_DIR 是可写的文件夹。",
        )
    return None


def _raise_storage(exc: OSError, root: Path) -> None:
    """Re-raise ``exc`` as a StorageError when it is one (logging the folder), else leave it to the caller."""
    typed = storage_error(exc)
    if typed is not None:
        log.error("cannot write a run folder in %s: %s [%s]", root, exc, typed.code)
        raise typed from exc


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

    Raises:
        StorageError: ``storage_full`` (ENOSPC, EDQUOT) or ``storage_unavailable`` (read-only, no
            permission, not a folder …); the temporary folder is removed first.
    """
    from emotion2vec_webui.audio.decode import write_wav_pcm16

    root_path = Path(root)
    when = when or now_local()
    try:
        root_path.mkdir(parents=True, exist_ok=True)
        tmp = root_path / temp_name()
        tmp.mkdir()
    except OSError as exc:
        _raise_storage(exc, root_path)
        raise
    try:
        # Through memory, then a plain file write: libsndfile reports a full disk as a bare
        # "System error" (soundfile.LibsndfileError), Python's write as OSError(ENOSPC).
        wav = io.BytesIO()
        write_wav_pcm16(wav, waveform)
        (tmp / "processed_audio.wav").write_bytes(wav.getbuffer())
        del wav
        if embedding is not None:
            np.save(tmp / "embedding.npy", np.asarray(embedding, dtype=np.float32))
        (tmp / "run.log").write_text(log_text, "utf-8")
        if (csv_text := frames_csv_text(result)) is not None:  # frame granularity: the raw scores
            (tmp / FRAMES_CSV).write_text(csv_text, "utf-8")
        for conv_name, conv_text in conversation_files(result).items():  # transcript.srt/.vtt, turns.csv
            (tmp / conv_name).write_text(conv_text, "utf-8")
        (tmp / "result.json").write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n", "utf-8")
        return _place(tmp, root_path, when.strftime("outputs_%Y%m%d_%H%M%S"))
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):
            _raise_storage(exc, root_path)
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


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return pid > 0  # exists but is not ours; or a pid no kernel gives out (then: not alive)
    return True


def is_stale_temp(name: str, mtime: float, older_than_s: float = _STALE_TMP_S, now: float | None = None) -> bool:
    """Whether a ``.tmp-…`` entry belongs to a writer that is gone.

    A name ``.tmp-<pid>-<host>-…`` written on this host by a pid that no longer
    exists is stale at once; any other (a live pid, another host's, the old
    ``.tmp-<uuid>`` form) only once it is ``older_than_s`` old — a write takes
    well under a second, and a pid may have been reused.
    """
    if not name.startswith(_TMP_PREFIX):
        return False
    match = _TMP_NAME_RE.match(name)
    if match and match.group(2) == _host_tag() and not _pid_alive(int(match.group(1))):
        return True
    return mtime < (time.time() if now is None else now) - older_than_s


def clean_stale_temps(root: str | os.PathLike, older_than_s: float = _STALE_TMP_S) -> int:
    """Remove temporary folders (and files) left by writers that died, e.g. a process killed mid-write.

    In ``root`` every ``.tmp-…`` entry; inside its run folders, the atomic file writer's temporary files
    (``files.temp_name``: a speaker rename rewrites files there); its batch folders the same way.
    All go by :func:`is_stale_temp`.

    Args:
        root: an outputs root or a batch folder.
        older_than_s: age after which any temporary entry counts as stale.

    Returns:
        How many entries were removed.
    """
    root_path = Path(root)
    if not root_path.is_dir():
        return 0
    removed, now, below = 0, time.time(), []
    for p in root_path.glob(f"{_TMP_PREFIX}*"):
        try:
            if not is_stale_temp(p.name, p.lstat().st_mtime, older_than_s, now):
                continue
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
            removed += 1
        except OSError as exc:  # gone meanwhile, or not ours to remove: never fail a start-up for it
            log.debug("could not remove %s: %s", p, exc)
    with contextlib.suppress(OSError):  # one level down: run and batch folders, not links to elsewhere
        below = [p for p in root_path.iterdir() if not p.is_symlink() and p.is_dir()]
    stale = lambda name, mtime: is_stale_temp(name, mtime, older_than_s, now)  # noqa: E731
    removed += sum(remove_stale_temp_files(p, stale) for p in below if RUN_ID_RE.match(p.name))
    batches = [] if (root_path / "batch.json").is_file() else [p for p in below if (p / "batch.json").is_file()]
    return removed + sum(clean_stale_temps(p, older_than_s) for p in batches)  # (batches hold no batches)


def sweep_stale_temps(root: str | os.PathLike, where: str = "outputs") -> int:
    """:func:`clean_stale_temps` plus a log line saying how many were removed (``serve``/``batch`` start)."""
    removed = clean_stale_temps(root)
    if removed:
        log.info(
            "removed %d stale temporary folder(s)/file(s) left by interrupted writes in the %s folder %s", removed, where, root
        )
    return removed


# -- the output folder's health ------------------------------------------------------------
MIN_FREE_BYTES = 100 * 1024 * 1024  # below this much free space, /readyz says storage_full


@dataclass(frozen=True)
class StorageStatus:
    ok: bool  # the folder exists (or was created), takes a file, and has room
    code: str | None  # None, "storage_full" or "storage_unavailable"
    message: str  # what a person reads
    free_bytes: int | None  # free space for unprivileged writers, when known


def check_output_dir(root: str | os.PathLike, min_free_bytes: int = MIN_FREE_BYTES) -> StorageStatus:
    """Probe the outputs root: create it if missing, create and remove a small file, check free space.

    Args:
        root: the outputs root.
        min_free_bytes: the floor below which the folder counts as full.

    Returns:
        The folder's status; never raises for file-system errors.
    """
    root_path = Path(root)
    probe = root_path / temp_name()
    try:
        root_path.mkdir(parents=True, exist_ok=True)
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
        try:
            os.write(fd, b"e2v")
        finally:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(probe)
        st = os.statvfs(root_path)
        free = st.f_bavail * st.f_frsize
    except OSError as exc:
        typed = storage_error(exc) or StorageError(
            "storage_unavailable",
            f"The output folder cannot be written ({exc.strerror or type(exc).__name__}). / "
            f"输出文件夹无法写入（{exc.strerror or type(exc).__name__}）。",
        )
        return StorageStatus(False, typed.code, typed.message, None)
    if free < min_free_bytes:
        return StorageStatus(
            False,
            "storage_full",
            f"The output folder has {free / 1e6:.0f} MB free, under the {min_free_bytes / 1e6:.0f} MB "
            f"floor: free some space or point E2V_OUTPUT_DIR at another disk. / 输出文件夹可用空间仅 "
            f"{free / 1e6:.0f} MB，低于 {min_free_bytes / 1e6:.0f} MB 下限：请释放空间，或将 E2V_OUTPUT_DIR 指向其他磁盘。",
            free,
        )
    return StorageStatus(True, None, "output folder writable", free)


def require_output_dir(root: str | os.PathLike, min_free_bytes: int = 0) -> None:
    """The start-up check of ``serve`` and ``batch``.

    Raises:
        StorageError: the outputs root cannot be created or written (the message names the folder).
    """
    status = check_output_dir(root, min_free_bytes)
    if not status.ok:
        raise StorageError(status.code or "storage_unavailable", f"{Path(root).absolute()}: {status.message}")


class OutputDirProbe:
    """:func:`check_output_dir`, cached for ``ttl_s`` seconds (``/readyz`` may be polled often).

    Args:
        root: the outputs root.
        min_free_bytes: the free-space floor.
        ttl_s: how long one probe's answer is reused.
    """

    def __init__(self, root: str | os.PathLike, min_free_bytes: int = MIN_FREE_BYTES, ttl_s: float = 2.0) -> None:
        self.root = Path(root)
        self.min_free_bytes = min_free_bytes
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._last: tuple[float, StorageStatus] | None = None

    def status(self) -> StorageStatus:
        with self._lock:
            now = time.monotonic()
            if self._last is None or now - self._last[0] >= self.ttl_s:
                status = check_output_dir(self.root, self.min_free_bytes)
                if not status.ok and (self._last is None or self._last[1].ok):
                    log.warning("output folder %s not usable: %s [%s]", self.root, status.message, status.code)
                self._last = (now, status)
            return self._last[1]
