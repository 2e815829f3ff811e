"""What the two folder stores (heads, calibrations) share: a folder written whole, and its JSON read bounded.

A saved head or calibration is a folder of a few files. It is written into a hidden temporary folder beside
its place and then swapped in (an old one renamed away first, then removed), so a reader never sees half of
one. Its JSON files are untrusted input (anyone with access to the folder can edit them): read at most
:data:`MAX_JSON_BYTES` and parsed, each failure said in both languages for the store to make its own error.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from emotion2vec_webui.files import fsync_dir

MAX_JSON_BYTES = 1 << 20


def write_folder(folder: Path, files: dict[str, str | bytes]) -> Path:
    """Write ``files`` (name → text or bytes) as ``folder``, swapped in whole.

    Args:
        folder: the store's folder for one item (``<heads_dir>/<name>``, ``<heads_dir>/.calibrations/<name>``).
        files: every file by name; text is written as UTF-8.

    Returns:
        ``folder``.
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        for name, content in files.items():
            if isinstance(content, bytes):
                (tmp / name).write_bytes(content)
            else:
                (tmp / name).write_text(content, "utf-8")
        if folder.exists():
            old = folder.with_name(f".{folder.name}-old-{os.getpid()}")
            os.replace(folder, old)
            os.replace(tmp, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, folder)
        fsync_dir(folder.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def read_json(path: Path, refuse: Callable[[str, str], Exception]) -> object:
    """A JSON file of a saved folder, bounded (:data:`MAX_JSON_BYTES`) and parsed.

    Args:
        path: the file.
        refuse: makes the store's error from what is wrong, ``(english, chinese)``.

    Raises:
        What ``refuse`` makes: the file is missing, unreadable, too large or not JSON.
    """
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_JSON_BYTES + 1)
    except FileNotFoundError:
        raise refuse("the file is missing", "文件缺失") from None
    except OSError as exc:
        raise refuse(f"cannot be read ({exc.strerror})", "无法读取") from None
    if len(data) > MAX_JSON_BYTES:
        raise refuse("the file is over 1 MiB", "文件超过 1 MiB")
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise refuse(f"not valid JSON ({str(exc)[:120]})", "不是有效的 JSON") from None
