"""Reading a server-side file a client names (``audio_path``) without ever leaving ``E2V_INPUT_DIRS``.

Resolving a path and then opening it is a race: between the check and the
open, a folder on the way can be swapped for a symlink to anywhere (issue 15
read files outside the input folders in 40 of 300 requests that way, because
``O_NOFOLLOW`` guards only the last component). So nothing here resolves and
then opens. The file is opened by walking down from a descriptor of the input
folder, one component at a time (``openat`` with ``O_NOFOLLOW`` on every
step), and the descriptor that comes out is checked and read:

* a relative path is looked up inside each input folder in turn; an absolute
  one must start with an input folder, as configured or resolved;
* ``..`` anywhere is refused, and so is a symlink anywhere below the input
  folder (symlinks inside input folders are not followed: ``403 forbidden``;
  the input folder itself may be a symlink, it is configured by the operator);
* the opened file must be a regular file (else ``404 not_found``; FIFOs and
  devices are opened non-blocking, so they cannot hang the server), its real
  path (``/proc/self/fd``) must lie inside an input folder, and it is read
  from that same descriptor, at most the upload cap plus one byte.

A hard link inside an input folder is a file of that folder: links cannot be
told from the original, and making one needs write access to the folder.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path, PurePosixPath

from emotion2vec_webui.errors import E2VError

_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_ROOT_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _O_CLOEXEC
_DIR_FLAGS = _ROOT_FLAGS | _O_NOFOLLOW
_FILE_FLAGS = os.O_RDONLY | _O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | _O_CLOEXEC

_MSG_DISABLED = (
    "audio_path is disabled on this server: set E2V_INPUT_DIRS to allow folders. / "
    "此服务器未启用 audio_path：请设置 E2V_INPUT_DIRS 以允许读取指定文件夹。"
)
_MSG_BAD = "audio_path is not an allowed path. / audio_path 不是允许的路径。"
_MSG_OUTSIDE = (
    "audio_path lies outside the allowed input folders (E2V_INPUT_DIRS). / "
    "audio_path 不在允许的输入文件夹（E2V_INPUT_DIRS）之内。"
)
_MSG_DOTDOT = "audio_path may not contain '..'. / audio_path 不能包含 “..”。"
_MSG_SYMLINK = (
    "audio_path goes through a symbolic link; links inside the input folders are not followed. / "
    "audio_path 经过符号链接；输入文件夹内的符号链接不会被跟随。"
)
_MSG_UNOPENABLE = "audio_path cannot be opened. / 无法打开 audio_path。"


class _NotHere(Exception):
    """The path does not lead to a file under this input folder (try the next one)."""


def _display_name(raw: str) -> str:
    name = PurePosixPath(raw.replace("\\", "/")).name
    return "".join(ch for ch in name if ch.isprintable())[:200] or "file"


def _not_found(raw: str) -> E2VError:
    name = _display_name(raw)
    return E2VError("not_found", f"No such file in the input folders: {name} / 输入文件夹中没有此文件：{name}")


def _refusal(exc: OSError, name: str, dir_fd: int) -> Exception:
    """What a failed ``openat(dir_fd, name)`` means: a symlink (forbidden), nothing there, or not allowed."""
    if exc.errno == errno.ELOOP:
        return E2VError("forbidden", _MSG_SYMLINK)
    if exc.errno == errno.ENOTDIR:  # O_DIRECTORY on a symlink, or a file used as a folder
        try:
            is_link = stat.S_ISLNK(os.lstat(name, dir_fd=dir_fd).st_mode)
        except OSError:
            is_link = False
        return E2VError("forbidden", _MSG_SYMLINK) if is_link else _NotHere()
    if exc.errno in (errno.ENOENT, errno.ENXIO, errno.ENODEV, errno.ENAMETOOLONG):
        return _NotHere()
    return E2VError("forbidden", _MSG_UNOPENABLE)


def _open_below(root: Path, parts: tuple[str, ...]) -> int:
    """Open ``root/parts…`` walking one component at a time, following no symlink below ``root``."""
    try:
        dir_fd = os.open(root, _ROOT_FLAGS)
    except OSError:
        raise _NotHere() from None
    try:
        for i, name in enumerate(parts):
            last = i == len(parts) - 1
            try:
                fd = os.open(name, _FILE_FLAGS if last else _DIR_FLAGS, dir_fd=dir_fd)
            except OSError as exc:
                raise _refusal(exc, name, dir_fd) from None
            if last:
                return fd
            os.close(dir_fd)
            dir_fd = fd
    finally:
        os.close(dir_fd)
    raise _NotHere()  # no components: never reached, the callers refuse empty paths


def _fd_path(fd: int) -> Path | None:
    """The path the kernel holds for an open descriptor (Linux), or None where it cannot say."""
    try:
        target = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None
    return Path(target) if target.startswith("/") else None


def _inside(path: Path, roots: list[Path]) -> bool:
    return any(path != root and path.is_relative_to(root) for root in roots)


def _candidates(given: PurePosixPath, input_dirs) -> list[tuple[Path, tuple[str, ...]]]:
    """(resolved input folder, components below it) for every input folder the path may lie in."""
    out = []
    for d in input_dirs:
        real = Path(d).resolve()
        if not given.is_absolute():
            out.append((real, given.parts))
            continue
        for form in dict.fromkeys((Path(os.path.abspath(d)), real)):  # as configured, then resolved
            if given.parts[: len(form.parts)] == form.parts:
                out.append((real, given.parts[len(form.parts) :]))
                break
    return out


def _open_first(candidates, root_ok: bool) -> tuple[Path, tuple[str, ...], int | None]:
    """Open the first candidate that exists: ``(input folder, parts, fd)``.

    ``fd`` is None when the path names an input folder itself and ``root_ok``.
    Raises the first refusal met (a symlink, ``..``, unopenable), or
    :class:`_NotHere` when no candidate leads anywhere.
    """
    refused: E2VError | None = None
    for root, parts in candidates:
        if not parts:  # the input folder itself
            if root_ok:
                return root, parts, None
            refused = refused or E2VError("forbidden", _MSG_BAD)
            continue
        try:
            return root, parts, _open_below(root, parts)
        except _NotHere:
            continue
        except E2VError as exc:
            refused = refused or exc
    if refused is not None:
        raise refused
    raise _NotHere()


def open_input_file(raw: str, input_dirs) -> tuple[int, Path]:
    """Open ``raw`` inside one of ``input_dirs`` safely (see the module docstring).

    Args:
        raw: the client's ``audio_path``.
        input_dirs: the allowed folders (``E2V_INPUT_DIRS``).

    Returns:
        ``(fd, real_path)``: a read-only descriptor of a regular file (the caller closes it) and its path.

    Raises:
        E2VError: ``forbidden`` (disabled, outside, ``..``, a symlink on the way, unreadable) or ``not_found``.
    """
    if not input_dirs:
        raise E2VError("forbidden", _MSG_DISABLED)
    if not raw or "\x00" in raw or len(raw) > 4096:
        raise E2VError("forbidden", _MSG_BAD)
    given = PurePosixPath(raw)  # no "~" expansion; pathlib drops "." and doubled slashes, keeps ".."
    if ".." in given.parts:
        raise E2VError("forbidden", _MSG_DOTDOT)
    candidates = _candidates(given, input_dirs)
    if not candidates:
        raise E2VError("forbidden", _MSG_OUTSIDE)
    roots = [Path(d).resolve() for d in input_dirs]
    try:
        root, parts, fd = _open_first(candidates, root_ok=False)
    except _NotHere:
        raise _not_found(raw) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            name = _display_name(raw)
            raise E2VError("not_found", f"Not a regular file: {name} / 不是普通文件：{name}")
        real = _fd_path(fd)
        if real is not None and not _inside(real, roots):
            raise E2VError("forbidden", _MSG_OUTSIDE)
    except BaseException:
        os.close(fd)
        raise
    return fd, real or root.joinpath(*parts)


def read_input_file(raw: str, input_dirs, max_bytes: int) -> tuple[bytes, str]:
    """Open ``raw`` with :func:`open_input_file` and read it from that descriptor, capped.

    Args:
        raw: the client's ``audio_path``.
        input_dirs: the allowed folders (``E2V_INPUT_DIRS``).
        max_bytes: the upload cap (``E2V_MAX_UPLOAD_MB``).

    Returns:
        ``(data, file_name)``.

    Raises:
        E2VError: as :func:`open_input_file`, or ``file_too_large``.
    """
    fd, real = open_input_file(raw, input_dirs)
    with os.fdopen(fd, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        data = f.read(max_bytes + 1) if size <= max_bytes else b""
    if size > max_bytes or len(data) > max_bytes:  # the size on disk, or a file that grew while read
        size = max(size, len(data))
        raise E2VError(
            "file_too_large",
            f"The file is {size / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.1f} MB (E2V_MAX_UPLOAD_MB). / "
            f"文件大小 {size / 1e6:.1f} MB，超过上限 {max_bytes / 1e6:.1f} MB（E2V_MAX_UPLOAD_MB）。",
        )
    return data, real.name


def resolve_input_folder(raw: str, input_dirs) -> Path:
    """The real path of a server-side folder a client names (the UI's Batch tab), by the same policy as files.

    Relative paths are looked up inside each input folder (no ``~``, never the
    working directory); absolute ones must start with an input folder; ``..``
    and symlinks below the input folder are refused. An input folder itself
    may be named (batch a whole folder).

    Raises:
        E2VError: ``forbidden`` (disabled, outside, ``..``, a symlink on the way) or ``bad_request`` (not a folder).
    """
    if not input_dirs:
        raise E2VError(
            "forbidden",
            "Server folders are off: set E2V_INPUT_DIRS to the folders the UI may read. / "
            "服务器文件夹未启用：请设置 E2V_INPUT_DIRS 为界面可读取的文件夹。",
        )
    text = (raw or "").strip()
    if not text or "\x00" in text or len(text) > 4096:
        raise E2VError("forbidden", "Not an allowed folder. / 不是允许的文件夹。")
    given = PurePosixPath(text)
    if ".." in given.parts:
        raise E2VError("forbidden", "A folder path may not contain '..'. / 文件夹路径不能包含 “..”。")
    roots = [Path(d).resolve() for d in input_dirs]
    outside = E2VError(
        "forbidden",
        f"{_display_name(text)} is not inside the allowed input folders (E2V_INPUT_DIRS). / "
        f"{_display_name(text)} 不在允许的输入文件夹（E2V_INPUT_DIRS）之内。",
    )
    candidates = _candidates(given, input_dirs)
    try:
        root, parts, fd = _open_first(candidates, root_ok=True)
    except _NotHere:
        raise (outside if not candidates else _not_found(text)) from None
    if fd is None:
        return root
    try:
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            raise E2VError("bad_request", f"Not a folder on the server: {_display_name(text)} / 不是服务器上的文件夹。")
        real = _fd_path(fd) or root.joinpath(*parts)
        if not any(real == r or real.is_relative_to(r) for r in roots):
            raise outside
        return real
    finally:
        os.close(fd)
