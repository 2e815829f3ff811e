"""Reading ``.npz`` weight files that anyone may have written: every header is checked before any data is read.

A head's ``weights.npz`` and an export's ``head.npz`` are plain zip archives
of ``.npy`` members. ``numpy.load`` trusts what each member's npy header says:
a 2 MB file of compressed zeros whose header claims a 2 GiB array makes it
allocate 2 GiB, and a header claiming 512 TiB fails only inside the
allocator. Here the compressed size, every member's uncompressed size (from
the zip directory) and the bytes every npy header claims are capped first
(``numpy.lib.format.read_magic`` / ``read_array_header_1_0`` / ``_2_0`` on
the zip member); only then are the arrays read, without pickle. The zip
reader itself never returns more bytes than a member's declared size.
"""

from __future__ import annotations

import math
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np

MAX_MEMBERS = 64  # more arrays than any head or export has
_HEADER_MAX = 10_000  # numpy's own default cap on an npy header's length
_KINDS = "fiu"  # float, signed and unsigned integer arrays; never objects, strings or structures


class NpzRefused(ValueError):
    """The file is not a plain, bounded ``.npz`` of numeric arrays.

    Args:
        en: the reason in English.
        zh: the reason in Chinese.
    """

    def __init__(self, en: str, zh: str) -> None:
        super().__init__(en)
        self.en = en
        self.zh = zh


def _mib(n: int) -> str:
    return f"{n / (1 << 20):,.1f} MiB"


def read_npz(path: str | os.PathLike, max_bytes: int) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` file, each header checked before any array is read.

    Args:
        path: the file.
        max_bytes: the cap on the file's size, on the members' uncompressed sizes together, and on the
            bytes the npy headers claim together.

    Returns:
        ``{name: array}`` (member names without ``.npy``).

    Raises:
        NpzRefused: the file is missing, too large, not a zip of npy arrays, or an array is not numeric.
        OSError: the file could not be read.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise NpzRefused("the file is missing", "文件缺失") from None
    if size > max_bytes:
        raise NpzRefused(f"the file is {_mib(size)}, over the {_mib(max_bytes)} limit",
                         f"文件大小 {_mib(size)} 超过上限 {_mib(max_bytes)}")  # fmt: skip
    try:
        with zipfile.ZipFile(path) as zf:
            members = _check_members(zf, max_bytes)
            return {key: _read_member(zf, info) for key, info in members}
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, NotImplementedError, RuntimeError) as exc:
        if isinstance(exc, NpzRefused):
            raise
        raise NpzRefused(f"not a readable .npz ({type(exc).__name__}: {str(exc)[:200]})",
                         "不是可读取的 .npz 文件") from None  # fmt: skip


def _check_members(zf: zipfile.ZipFile, max_bytes: int) -> list[tuple[str, zipfile.ZipInfo]]:
    """Every member's name, declared size and npy header, checked; no array data is read."""
    infos = zf.infolist()
    if len(infos) > MAX_MEMBERS:
        raise NpzRefused(f"it holds {len(infos)} members (at most {MAX_MEMBERS})",
                         f"包含 {len(infos)} 个成员(最多 {MAX_MEMBERS} 个)")  # fmt: skip
    unpacked = claimed = 0
    members: list[tuple[str, zipfile.ZipInfo]] = []
    seen: set[str] = set()
    for info in infos:
        key = info.filename[:-4] if info.filename.endswith(".npy") else ""
        if not key or "/" in key or "\\" in key or key in seen:
            raise NpzRefused(f"member {info.filename[:80]!r} is not a uniquely named .npy array",
                             f"成员 {info.filename[:80]!r} 不是名称唯一的 .npy 数组")  # fmt: skip
        seen.add(key)
        unpacked += info.file_size
        if unpacked > max_bytes:
            raise NpzRefused(f"its arrays unpack to more than {_mib(max_bytes)}", f"解压后超过 {_mib(max_bytes)}")
        with zf.open(info) as fh:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, _fortran, dtype = np.lib.format.read_array_header_1_0(fh, max_header_size=_HEADER_MAX)
            elif version == (2, 0):
                shape, _fortran, dtype = np.lib.format.read_array_header_2_0(fh, max_header_size=_HEADER_MAX)
            else:
                raise NpzRefused(f"array {key!r} has npy format {version}", f"数组 {key!r} 的 npy 格式不受支持")
            header = fh.tell()
        if dtype.hasobject or dtype.kind not in _KINDS or dtype.fields is not None:
            raise NpzRefused(f"array {key!r} has dtype {dtype} (numbers only; no pickled objects)",
                             f"数组 {key!r} 的类型 {dtype} 不是数值类型")  # fmt: skip
        nbytes = math.prod(int(n) for n in shape) * dtype.itemsize
        claimed += nbytes
        if claimed > max_bytes:
            raise NpzRefused(f"array {key!r} claims shape {tuple(shape)} ({_mib(nbytes)}), over the "
                             f"{_mib(max_bytes)} limit",
                             f"数组 {key!r} 声明的形状 {tuple(shape)}({_mib(nbytes)})超过上限 {_mib(max_bytes)}")  # fmt: skip
        if header + nbytes > info.file_size:
            raise NpzRefused(f"array {key!r} claims more data than the file holds",
                             f"数组 {key!r} 声明的数据多于文件实际内容")  # fmt: skip
        members.append((key, info))
    return members


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> np.ndarray:
    with zf.open(info) as fh:
        return np.lib.format.read_array(fh, allow_pickle=False, max_header_size=_HEADER_MAX)
