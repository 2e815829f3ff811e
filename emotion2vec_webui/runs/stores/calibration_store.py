"""Saved calibrations: ``<E2V_HEADS_DIR>/.calibrations/<name>/`` written, read, checked, listed and deleted.

``emotion2vec-webui calibrate`` (``jobs/calibrate.py``) writes a folder; :mod:`engine.calibration` holds the
math and the rules. A folder holds ``calibration.json`` (the temperature, the per-class bias, what it
calibrates — the nine classes or a head, tied to that head's numbers —, the backbone's checkpoint hash and
the held-out figures), ``reliability.png`` (the reliability diagram before and after) and ``command.txt``.
They live beside the heads they calibrate (the leading dot keeps the folder out of the heads' listing),
so E2V_HEADS_DIR is the one setting for both.

A folder is untrusted input, as a head's is: ``calibration.json`` is read bounded (1 MiB), every field
checked (:func:`engine.calibration.build_calibration`); a broken one is ``head_invalid`` for that
calibration only; a calibration fitted on another backbone or head is ``head_mismatch``. Messages name a
calibration by its name, never by a path. An ONNX export carries its calibration inside the export folder
(:mod:`runs.exported_extras`), found first when the engine runs that export (:mod:`runs.confidence`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

from emotion2vec_webui.engine.calibration import (
    Calibration,
    CalibrationContentError,
    build_calibration,
    to_document,
)
from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.options import HEAD_NAME_RE, check_calibration_name
from emotion2vec_webui.runs.stores.folder_store import read_json, write_folder

log = logging.getLogger(__name__)

FOLDER = ".calibrations"  # under E2V_HEADS_DIR
DOCUMENT, DIAGRAM, COMMAND = "calibration.json", "reliability.png", "command.txt"


def calibrations_dir(heads_dir: str | os.PathLike) -> Path:
    return Path(heads_dir) / FOLDER


def calibration_dir(heads_dir: str | os.PathLike, name: str) -> Path:
    return calibrations_dir(heads_dir) / check_calibration_name(name, required=True)


def write_calibration(heads_dir: str | os.PathLike, calibration: Calibration, diagram: bytes, command: str) -> Path:
    """Write the folder of ``calibration`` into a temporary folder, then swap it in (no reader sees half of one)."""
    document = json.dumps(to_document(calibration), indent=2, ensure_ascii=False) + "\n"
    files = {DOCUMENT: document, DIAGRAM: diagram, COMMAND: command + "\n"}
    return write_folder(calibration_dir(heads_dir, calibration.name), files)


def read_document(path: Path) -> object:
    """A ``calibration.json``, bounded (1 MiB) and parsed.

    Raises:
        CalibrationContentError: missing, unreadable, too large or not JSON.
    """
    return read_json(path, CalibrationContentError)


def load_calibration(heads_dir: str | os.PathLike, name: str) -> Calibration:
    """The saved calibration ``name``, checked.

    Raises:
        E2VError: ``bad_request`` (not a name), ``not_found`` or ``head_invalid``.
    """
    folder = calibration_dir(heads_dir, name)
    if not (folder / DOCUMENT).is_file():
        known = ", ".join(c["name"] for c in list_calibrations(heads_dir)) or "none"
        raise E2VError(
            "not_found",
            f"No calibration {name!r} (known: {known}); fit one with `emotion2vec-webui calibrate DATA --name "
            f"{name}`. / 没有名为 {name!r} 的校准,请先运行 calibrate。",
        )
    try:
        return build_calibration(name, read_document(folder / DOCUMENT))
    except CalibrationContentError as exc:
        log.warning("calibration %s is invalid: %s", name, exc)
        raise exc.error(name) from None


def check_backbone(calibration: Calibration, engine) -> None:
    """Refuse a calibration fitted on another backbone (an export counts as the model it was exported from).

    Raises:
        E2VError: ``head_mismatch``.
    """
    from emotion2vec_webui.runs.stores.head_store import engine_hash

    exported = getattr(engine, "exported", None)
    source = exported.config.get("source_model", {}).get("checkpoint_sha256") if exported is not None else None
    if calibration.checkpoint_sha256 not in (engine_hash(engine), source):
        raise E2VError(
            "head_mismatch",
            f"Calibration {calibration.name!r} was fitted on another model (checkpoint "
            f"{calibration.checkpoint_sha256[:12]}…) than the loaded {engine.info.name}: calibrate again on this "
            f"model. / 校准 {calibration.name!r} 是在另一个模型上拟合的,请在当前模型上重新校准。",
        )


def load_for_engine(heads_dir: str | os.PathLike, name: str, engine) -> Calibration:
    """The saved calibration ``name``, checked against ``engine``'s backbone.

    Raises:
        E2VError: ``not_found``, ``head_invalid``, ``head_mismatch`` (another backbone).
    """
    calibration = load_calibration(heads_dir, name)
    check_backbone(calibration, engine)
    return calibration


def list_calibrations(heads_dir: str | os.PathLike) -> list[dict]:
    """Every readable calibration: name, target, temperature, bias kept, ECE before/after, created (broken ones skipped)."""
    root = calibrations_dir(heads_dir)
    out = []
    try:
        folders = sorted(p for p in root.iterdir() if HEAD_NAME_RE.match(p.name)) if root.is_dir() else []
    except OSError:
        return out
    for folder in folders:
        try:
            c = build_calibration(folder.name, read_document(folder / DOCUMENT))
        except CalibrationContentError:
            continue
        before, after = c.info.get("before") or {}, c.info.get("after") or {}
        out.append(
            {
                "name": c.name,
                "target": c.target,
                "temperature": round(c.temperature, 4),
                "bias": bool((c.bias != 0).any()),
                "ece_before": before.get("ece"),
                "ece_after": after.get("ece"),
                "n": c.info.get("n"),
                "created": c.info.get("created"),
            }
        )
    return out


def delete_calibration(heads_dir: str | os.PathLike, name: str) -> None:
    """Remove a calibration folder (``not_found`` when absent)."""
    folder = calibration_dir(heads_dir, name)
    if not folder.is_dir():
        raise E2VError("not_found", f"No calibration {name!r}. / 没有名为 {name!r} 的校准。")
    shutil.rmtree(folder)
