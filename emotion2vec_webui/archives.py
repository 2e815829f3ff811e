"""Unpacking an uploaded ZIP inside one folder, or not at all: the one place the product extracts archives.

A ZIP is untrusted input: its member names are paths chosen by whoever made
it. Following the rules of Python's own extraction filters (PEP 706,
``tarfile.data_filter``), every member name is checked before anything is
written, with ``\\`` read as a separator as well as ``/`` (Windows tools write
``a\\b.wav``; after that reading ``\\tmp\\x.wav`` is absolute):

* refused: an empty name, an absolute name (``/x``, ``\\x``, UNC ``\\\\host\\x``),
  a drive (``C:x``), a ``..`` part, a control character (NUL, ESC …), and any
  member that is not a plain file or folder (a symbolic link or device, from
  the Unix mode in ``external_attr``);
* files are created through folder descriptors opened with ``O_NOFOLLOW``,
  with ``O_CREAT | O_EXCL | O_NOFOLLOW`` — nothing is overwritten, no link is
  followed — after checking that the resolved path lies inside the
  destination;
* at most ``max_members`` entries, and the central directory is sized before
  :mod:`zipfile` reads it (a small upload cannot hold millions of entries);
* at most ``max_bytes`` unpacked in all, counted on the bytes actually written
  (a header's size is a claim, not a fact).

On any failure the whole destination folder is removed and a bilingual
``bad_request`` is raised that names the member as written in the ZIP, never
a server path.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import stat
import struct
import unicodedata
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

from emotion2vec_webui.errors import E2VError

CHUNK = 1 << 20
CENTRAL_BYTES_PER_MEMBER = 1024  # a central directory entry is 46 bytes + name + extras; 1 KiB is generous
_DRIVE = re.compile(r"^[A-Za-z]:")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def _refuse(english: str, chinese: str) -> E2VError:
    return E2VError("bad_request", f"{english} / {chinese}")


def _shown(name: str) -> str:
    """A member's name for a message: escaped (controls and bidi characters visible), at most 80 characters."""
    text = ascii(name) if not name.isprintable() else repr(name)
    return text if len(text) <= 80 else text[:77] + "…"


def member_parts(name: str) -> tuple[str, ...]:
    """The path parts of a member name (``\\`` and ``/`` both separate), or ``bad_request`` for a hostile name.

    Args:
        name: the name as stored in the archive (``ZipInfo.orig_filename``: not cut at a NUL).

    Returns:
        The non-empty parts, ``.`` parts dropped (``a//./b`` → ``('a', 'b')``).
    """
    posix = name.replace("\\", "/")
    if not posix.strip("/"):
        raise _refuse(f"A ZIP member has an empty name ({_shown(name)}).", f"ZIP 内有空文件名({_shown(name)})。")
    if any(unicodedata.category(ch) == "Cc" for ch in name):
        raise _refuse(
            f"A ZIP member name holds a control character: {_shown(name)}.", f"ZIP 内文件名含控制字符：{_shown(name)}。"
        )
    if posix.startswith("/") or _DRIVE.match(posix):
        raise _refuse(
            f"A ZIP member has an absolute path or a drive: {_shown(name)}.",
            f"ZIP 内文件使用了绝对路径或盘符：{_shown(name)}。",
        )
    parts = tuple(p for p in posix.split("/") if p not in ("", "."))
    if ".." in parts:
        raise _refuse(f"A ZIP member climbs out with '..': {_shown(name)}.", f"ZIP 内文件路径含“..”：{_shown(name)}。")
    return parts


def _kind(info: zipfile.ZipInfo) -> str:
    """``dir``, ``file``, or the refused kind (``link``, ``special``) from the member's Unix mode."""
    mode = info.external_attr >> 16
    fmt = stat.S_IFMT(mode)
    if fmt == stat.S_IFLNK:
        return "link"
    if fmt not in (0, stat.S_IFREG, stat.S_IFDIR):
        return "special"
    return "dir" if fmt == stat.S_IFDIR or info.orig_filename.replace("\\", "/").endswith("/") else "file"


def _central_directory(fp) -> tuple[int, int]:
    """(entries, bytes) the end record declares for the central directory, read the way :mod:`zipfile` finds it."""
    fp.seek(0, os.SEEK_END)
    size = fp.tell()
    start = max(0, size - (1 << 16) - 22)
    fp.seek(start)
    tail = fp.read()
    if tail[-22:-18] == b"PK\x05\x06" and tail[-2:] == b"\0\0":  # no comment: zipfile looks here first
        at = len(tail) - 22
    else:  # else the last signature in the last 64 KiB
        at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < 22:
        raise zipfile.BadZipFile("no end of central directory")
    _sig, _disk, _cd_disk, _n_disk, entries, cd_bytes, _cd_offset, _comment = struct.unpack(
        "<4s4H2LH", tail[at : at + 22]
    )
    locator = tail[at - 20 : at] if at >= 20 else b""
    if locator[:4] != b"PK\x06\x07":
        return entries, cd_bytes
    # ZIP64: zipfile takes the figures from the ZIP64 end record, found just before the locator (Python 3.11)
    # or where the locator points (later versions): the larger of the two counts.
    found = []
    for where in (start + at - 20 - 56, struct.unpack("<4sLQL", locator)[2]):
        if where >= 0:
            fp.seek(where)
            record = fp.read(56)
            if len(record) == 56 and record[:4] == b"PK\x06\x06":
                found.append(struct.unpack("<4sQ2H2L4Q", record)[7:9])
    if not found:
        return entries, cd_bytes
    return max(e for e, _ in found), max(b for _, b in found)


def _open_folder(root_fd: int, parts: tuple[str, ...]) -> int:
    """A descriptor of ``root/parts…``, each folder made if missing and opened without following a link."""
    fd = os.dup(root_fd)
    try:
        for part in parts:
            try:
                os.mkdir(part, 0o755, dir_fd=fd)
            except FileExistsError:
                pass
            nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = nxt
        return fd
    except BaseException:
        os.close(fd)
        raise


def _inside(root: str, path: str) -> bool:
    return os.path.commonpath([root, os.path.realpath(path)]) == root


def extract_zip(
    src: str | os.PathLike,
    dest: str | os.PathLike,
    *,
    max_members: int,
    max_bytes: int,
    keep: Callable[[str], bool] | None = None,
) -> list[Path]:
    """Unpack the ZIP ``src`` into the new folder ``dest``: every member checked, everything or nothing.

    Args:
        src: the uploaded file.
        dest: the folder to create (its parent must exist); it must not exist yet.
        max_members: most entries (files and folders) the archive may hold.
        max_bytes: most bytes it may unpack to, counted as written.
        keep: which files to write, by their ``/``-joined relative name; the others are skipped
            (their names are still checked). None: all.

    Returns:
        The files written, in archive order.

    Raises:
        E2VError: ``bad_request`` (not a ZIP, a hostile or colliding member, over a cap); ``dest`` is gone.
        FileExistsError: ``dest`` exists already (it is left alone).
    """
    dest = Path(dest)
    os.mkdir(dest, 0o700)
    try:
        return _extract(Path(src), dest, max_members, max_bytes, keep)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error, NotImplementedError, RuntimeError,
            struct.error, ValueError) as exc:  # fmt: skip
        shutil.rmtree(dest, ignore_errors=True)
        raise _refuse(f"The ZIP cannot be read ({exc}).", "ZIP 文件无法读取(损坏、加密或不支持的压缩方式)。") from exc
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise


def _extract(src: Path, dest: Path, max_members: int, max_bytes: int, keep) -> list[Path]:
    with open(src, "rb") as fp:
        entries, cd_bytes = _central_directory(fp)
        if entries > max_members or cd_bytes > max_members * CENTRAL_BYTES_PER_MEMBER:
            raise _refuse(f"The ZIP holds more than {max_members} entries.", f"ZIP 内条目超过 {max_members} 个。")
        fp.seek(0)
        with zipfile.ZipFile(fp) as zf:
            members = zf.infolist()
            if len(members) > max_members:
                raise _refuse(f"The ZIP holds more than {max_members} entries.", f"ZIP 内条目超过 {max_members} 个。")
            plan = []
            for info in members:  # every name is checked before anything is written
                parts, kind = member_parts(info.orig_filename), _kind(info)
                if kind in ("link", "special"):
                    what = "a symbolic link" if kind == "link" else "a device, pipe or socket"
                    raise _refuse(f"A ZIP member is {what}: {_shown(info.orig_filename)}.",
                                  f"ZIP 内含链接或特殊文件：{_shown(info.orig_filename)}。")  # fmt: skip
                if kind == "file" and (keep is None or keep("/".join(parts))):
                    plan.append((info, parts))
            return _write(zf, plan, dest, max_bytes)


def _write(zf: zipfile.ZipFile, plan, dest: Path, max_bytes: int) -> list[Path]:
    root = os.path.realpath(dest)
    root_fd = os.open(root, _DIR_FLAGS)
    written, total = [], 0
    try:
        for info, parts in plan:
            target = os.path.join(root, *parts)
            try:
                folder_fd = _open_folder(root_fd, parts[:-1])
                try:
                    if not _inside(root, os.path.dirname(target)):  # resolved again before every write
                        raise _refuse(f"A ZIP member leads outside the upload: {_shown(info.orig_filename)}.",
                                      f"ZIP 内文件指向上传文件夹之外：{_shown(info.orig_filename)}。")  # fmt: skip
                    out_fd = os.open(parts[-1], _FILE_FLAGS, 0o644, dir_fd=folder_fd)
                finally:
                    os.close(folder_fd)
            except OSError as exc:
                if exc.errno in (errno.EEXIST, errno.ENOTDIR, errno.EISDIR, errno.ELOOP):
                    raise _refuse(f"ZIP members collide at {_shown(info.orig_filename)} (a name twice, or a file "
                                  "where a folder must be).", f"ZIP 内文件重名或与文件夹冲突：{_shown(info.orig_filename)}。",
                                  ) from exc  # fmt: skip
                raise
            with os.fdopen(out_fd, "wb") as out, zf.open(info) as member:
                while chunk := member.read(CHUNK):
                    total += len(chunk)
                    if total > max_bytes:
                        mb = max_bytes / (1 << 20)
                        raise _refuse(f"The ZIP unpacks to more than {mb:g} MB (E2V_MAX_BATCH_UPLOAD_MB).",
                                      f"ZIP 解压后超过 {mb:g} MB(E2V_MAX_BATCH_UPLOAD_MB)。")  # fmt: skip
                    out.write(chunk)
            written.append(Path(target))
    finally:
        os.close(root_fd)
    return written
