"""The head folders: ``<E2V_HEADS_DIR>/<name>/`` read, checked, cached, listed and deleted.

``jobs/train_head.py`` writes a folder; :mod:`engine.heads` holds the math and
the rules. Anyone with access to the folder can edit it, so a folder is
untrusted input:

* **one folder, one verdict** — every error while reading a folder (missing
  or oversized files, JSON of the wrong shape, a weights file whose npy
  headers claim too much, NaN, zero scales, mismatched shapes) becomes that
  folder's ``head_invalid``; listing skips it with a warning in the log and a
  ``problems`` entry, and nothing else (the listing, start-up, other heads)
  fails because of it;
* **bounded reads** — JSON files at most 1 MiB, ``weights.npz`` at most
  64 MiB on disk and unpacked, every npy header checked before any array is
  read (:mod:`model.safe_npz`), never pickle;
* **cached verdicts** — a head, or its failure, is kept until the folder
  changes (size, mtime and inode of its files), so a broken folder is not
  re-read on every request;
* messages name a head by its name, never by a server path.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import shutil
import threading
from pathlib import Path

import numpy as np

from emotion2vec_webui.engine.heads import (
    NAME_RE,
    Head,
    HeadContentError,
    build_head,
    check_backbone,
    check_name,
    check_width,
)
from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.model.safe_npz import NpzRefused, read_npz
from emotion2vec_webui.runs.stores.folder_store import read_json, write_folder

log = logging.getLogger(__name__)

WEIGHTS, LABELS, SPEC, REPORT, COMMAND = "weights.npz", "labels.json", "spec.json", "report.json", "command.txt"
HEAD_FILES = (WEIGHTS, LABELS, SPEC)  # a folder holding any of them is (meant to be) a head
MAX_WEIGHTS_BYTES = 64 << 20  # on disk, unpacked, and claimed by the npy headers; a large MLP head is a few MB
_CACHE_SIZE = 512
BACKBONE_FILES = ("model.pt", "model.onnx")  # a FunASR directory, or an ``export`` folder (its own identity)

_hash_lock = threading.Lock()
_hashes: dict[tuple[str, int, int], str] = {}
_cache_lock = threading.Lock()
_cache: dict[str, tuple[tuple, Head | tuple[str, str]]] = {}  # folder → (signature, head or (code, message))


def checkpoint_sha256(model_dir: str | os.PathLike) -> str:
    """SHA-256 of a model directory's ``model.pt`` (the backbone's identity), memoised per (path, size, mtime).

    An ONNX ``export`` folder has no ``model.pt``: its ``model.onnx`` identifies it (heads trained on it fit it).

    Raises:
        E2VError: ``model_unavailable`` when the folder holds neither.
    """
    found = [Path(model_dir) / name for name in BACKBONE_FILES if (Path(model_dir) / name).is_file()]
    if not found:
        raise E2VError(
            "model_unavailable",
            f"{model_dir} holds no model.pt or model.onnx to identify the backbone for a head. / 找不到模型权重文件。",
        )
    path = found[0]
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    with _hash_lock:
        if key in _hashes:
            return _hashes[key]
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    value = digest.hexdigest()
    with _hash_lock:
        _hashes[key] = value
    return value


def engine_hash(engine) -> str:
    """The checkpoint hash of a loaded engine's backbone."""
    return checkpoint_sha256(engine.info.path)


def head_dir(heads_dir: str | os.PathLike, name: str) -> Path:
    return Path(heads_dir) / check_name(name)


def _is_head(folder: Path) -> bool:
    return folder.is_dir() and any((folder / f).exists() for f in HEAD_FILES)


def _signature(folder: Path) -> tuple:
    """What changes when any file of the folder is replaced or edited: size, mtime and inode of each."""
    out = []
    for name in (*HEAD_FILES, REPORT):
        try:
            st = (folder / name).stat()
            out.append((st.st_size, st.st_mtime_ns, st.st_ino))
        except OSError:
            out.append(None)
    return tuple(out)


def _read_json(path: Path) -> object:
    return read_json(path, lambda en, zh: HeadContentError(path.name, en, zh))


def _read_folder(folder: Path, name: str) -> Head:
    labels_doc = _read_json(folder / LABELS)
    spec = _read_json(folder / SPEC)
    try:
        arrays = read_npz(folder / WEIGHTS, MAX_WEIGHTS_BYTES)
    except NpzRefused as exc:
        raise HeadContentError(WEIGHTS, exc.en, exc.zh) from None
    except OSError as exc:
        raise HeadContentError(WEIGHTS, f"cannot be read ({exc.strerror})", "无法读取") from None
    return build_head(name, labels_doc, spec, arrays)


def _cached_head(folder: Path, name: str) -> Head:
    """The folder's head, from the cache while its signature holds.

    Raises:
        E2VError: ``head_invalid`` (the same verdict until the folder changes).
    """
    key = str(folder.absolute())
    signature = _signature(folder)
    with _cache_lock:
        hit = _cache.get(key)
    if hit is not None and hit[0] == signature:
        verdict = hit[1]
    else:
        try:
            verdict = _read_folder(folder, name)
        except HeadContentError as exc:
            error = exc.error(name)
            verdict = (error.code, error.message)
            log.warning("head %s is invalid and skipped: %s", name, exc)
        except Exception as exc:  # anything unforeseen in one folder stays in that folder
            log.exception("head %s could not be read", name)
            verdict = ("head_invalid", f"Head {name!r} could not be read ({type(exc).__name__}). Retrain it (or "
                                       f"delete the folder). / 分类头 {name!r} 无法读取,请重新训练(或删除该文件夹)。")  # fmt: skip
        if _signature(folder) == signature:  # unchanged while it was read: the verdict holds for it
            with _cache_lock:
                _cache.pop(key, None)
                _cache[key] = (signature, verdict)
                while len(_cache) > _CACHE_SIZE:
                    _cache.pop(next(iter(_cache)))
    if isinstance(verdict, tuple):
        raise E2VError(*verdict)
    return verdict


def load_head(heads_dir: str | os.PathLike, name: str) -> Head:
    """The head ``<heads_dir>/<name>/``, checked (cached until the folder changes).

    Raises:
        E2VError: ``bad_request`` (not a head name), ``not_found`` (no such head) or ``head_invalid``.
    """
    folder = head_dir(heads_dir, name)
    if not _is_head(folder):
        known = ", ".join(h["name"] for h in list_heads(heads_dir)) or "none"
        raise E2VError(
            "not_found",
            f"No trained head {name!r} (known: {known}); train one with "
            f"`emotion2vec-webui train-head DATA --name {name}`. / 没有名为 {name!r} 的分类头,请先训练。",
        )
    return _cached_head(folder, name)


def load_for_engine(heads_dir: str | os.PathLike, name: str, engine) -> Head:
    """Load a head and check it against ``engine``'s backbone (``not_found``, ``head_invalid``, ``head_mismatch``)."""
    head = load_head(heads_dir, name)
    check_backbone(head, engine_hash(engine), engine.info.name)
    check_width(head, engine.info.embedding_dim)
    return head


def _figure(report: dict, key: str, kind: type | tuple[type, ...]) -> object:
    value = report.get(key)
    return value if isinstance(value, kind) and not isinstance(value, bool) else None


def _entry(head: Head, folder: Path) -> dict:
    try:
        report = _read_json(folder / REPORT) if (folder / REPORT).is_file() else {}
    except HeadContentError as exc:  # the report is not needed to use the head: its figures are left out
        log.warning("head %s: %s", head.name, exc)
        report = {}
    report = report if isinstance(report, dict) else {}
    return {
        "name": head.name,
        "labels": list(head.labels),
        "labels_zh": dict(head.labels_zh),
        "model": head.spec.get("model"),
        "checkpoint_sha256": head.spec.get("checkpoint_sha256"),
        "classifier": head.spec.get("classifier"),
        "n": _figure(report, "n", int),
        "cv_accuracy": _figure(report, "cv_accuracy", (int, float)),
        "cv_f1_macro": _figure(report, "cv_f1_macro", (int, float)),
        "created": head.spec.get("created"),
        "kind": head.kind,  # classification | regression (labels are then its targets)
        "cv_ccc": _figure(report, "cv_ccc", (int, float)),  # a regression head's mean cross-validated CCC
    }


def scan_heads(heads_dir: str | os.PathLike, checkpoint: str | None = None, embedding_dim: int = 0):
    """Every head folder under ``heads_dir``, good ones and broken ones apart; never raises for a folder.

    Args:
        heads_dir: E2V_HEADS_DIR.
        checkpoint: the loaded model's checkpoint hash, when known.
        embedding_dim: the loaded model's feature width, when known: a head claiming this backbone with
            another width is a problem.

    Returns:
        ``(heads, problems)``: ``heads`` as in ``GET /api/v1/heads`` (name, labels, labels_zh, model,
        checkpoint_sha256, classifier, n, cv_accuracy, cv_f1_macro, created, kind, cv_ccc); ``problems`` as
        ``{"name", "code", "message"}``.
    """
    root = Path(heads_dir)
    heads: list[dict] = []
    problems: list[dict] = []
    try:
        folders = sorted(p for p in root.iterdir() if NAME_RE.match(p.name) and _is_head(p)) if root.is_dir() else []
    except OSError as exc:
        log.warning("heads folder cannot be listed: %s", exc.strerror)
        return heads, problems
    for folder in folders:
        try:
            head = _cached_head(folder, folder.name)
            if checkpoint is not None and head.spec.get("checkpoint_sha256") == checkpoint:
                check_width(head, embedding_dim)
            heads.append(_entry(head, folder))
        except E2VError as exc:
            problems.append({"name": folder.name, "code": exc.code, "message": exc.message})
    return heads, problems


def list_heads(heads_dir: str | os.PathLike) -> list[dict]:
    """The usable heads under ``heads_dir`` (:func:`scan_heads`'s first half): broken folders are left out."""
    return scan_heads(heads_dir)[0]


def delete_head(heads_dir: str | os.PathLike, name: str) -> None:
    """Remove a head folder, valid or not (``not_found`` when absent)."""
    folder = head_dir(heads_dir, name)
    if not _is_head(folder):
        raise E2VError("not_found", f"No trained head {name!r}. / 没有名为 {name!r} 的分类头。")
    shutil.rmtree(folder)


def write_head_folder(folder: Path, arrays: dict[str, np.ndarray], files: dict[str, str | bytes]) -> None:
    """Write a head into a temporary folder beside ``folder``, then swap it in (a reader never sees half a head).

    Args:
        folder: ``<heads_dir>/<name>``.
        arrays: ``weights.npz``'s arrays.
        files: every other file by name (text or bytes): labels.json, spec.json, report.json, command.txt, …
    """
    weights = io.BytesIO()
    np.savez(weights, **arrays)
    write_folder(folder, {WEIGHTS: weights.getvalue(), **files})
