"""The trained head and the calibration an ONNX export carries (``export --head NAME --calibration NAME``).

An export folder (``model/export.py``) may hold a trained head — ``custom_head.npz`` (the head's arrays),
its labels (a regression head's targets) under ``labels.json``'s ``"head"``, its name and kind under
``config.json``'s ``"custom_head"`` — and a
calibration — ``calibration.json``, the same document ``calibrate`` saves. When the engine runs that
export (``E2V_MODEL=<export>``), ``--head NAME`` and ``--calibration NAME`` find them here first, so the
export answers as the PyTorch engine did with the saved head and calibration (the same math: the head
through :func:`engine.heads.apply_head`, a regression head through :func:`engine.dimensions.apply_dimensions`,
the calibration through :mod:`engine.calibration`).

The folder is untrusted like any head folder: the npz is read header first (:mod:`model.safe_npz`), the
JSON bounded, every value checked by :func:`engine.heads.build_head` and
:func:`engine.calibration.build_calibration`; a broken part is ``head_invalid`` for that head or
calibration. A calibration of a head is tied to the export's head (it was checked against the saved head
when the export was written; the export stores the head's numbers in float32, hence a fingerprint of its own).
"""

from __future__ import annotations

import json
from dataclasses import replace

from emotion2vec_webui.engine.calibration import (
    NINE,
    Calibration,
    CalibrationContentError,
    build_calibration,
    head_fingerprint,
)
from emotion2vec_webui.engine.heads import REGRESSION_FORMAT, Head, HeadContentError, build_head
from emotion2vec_webui.model.safe_npz import NpzRefused, read_npz

HEAD_ARRAYS, CALIBRATION = "custom_head.npz", "calibration.json"
MAX_HEAD_BYTES = 64 << 20


def exported_head(engine, name: str) -> Head | None:
    """The export's own trained head when ``engine`` runs an export that holds head ``name``; else None.

    Raises:
        E2VError: ``head_invalid`` when the export's head files break the rules.
    """
    from emotion2vec_webui.runs.stores.calibration_store import read_document
    from emotion2vec_webui.runs.stores.head_store import engine_hash

    exported = getattr(engine, "exported", None)
    custom = exported.config.get("custom_head") if exported is not None else None
    if not isinstance(custom, dict) or custom.get("name") != name:
        return None
    try:
        try:
            labels = read_document(exported.path / "labels.json")
        except CalibrationContentError as exc:
            raise HeadContentError("labels.json", exc.en, exc.zh) from None
        block = labels.get("head") if isinstance(labels, dict) else None
        if not isinstance(block, dict) or not isinstance(block.get("labels_zh"), list):
            raise HeadContentError("labels.json", 'has no "head" block', '缺少 "head" 部分')
        names = block.get("labels") if isinstance(block.get("labels"), list) else []
        labels_doc = {"labels": block.get("labels"), "labels_zh": dict(zip(names, block["labels_zh"], strict=False))}
        try:
            arrays = read_npz(exported.path / HEAD_ARRAYS, MAX_HEAD_BYTES)
        except NpzRefused as exc:
            raise HeadContentError(HEAD_ARRAYS, exc.en, exc.zh) from None
        except OSError as exc:
            raise HeadContentError(HEAD_ARRAYS, f"cannot be read ({exc.strerror})", "无法读取") from None
        spec = {
            "checkpoint_sha256": engine_hash(engine),  # the export is its own backbone (model.onnx's hash)
            "model": engine.info.name,
            "classifier": custom.get("classifier") if isinstance(custom.get("classifier"), str) else None,
        }
        if custom.get("kind", "classification") != "classification":  # build_head checks the kind ("regression")
            spec.update(kind=custom.get("kind"), format=REGRESSION_FORMAT)
        return build_head(name, labels_doc, spec, arrays)
    except HeadContentError as exc:
        raise exc.error(name) from None


def exported_calibration(engine, name: str) -> Calibration | None:
    """The export's own calibration when ``engine`` runs an export whose ``calibration.json`` is named ``name``.

    Raises:
        E2VError: ``head_invalid`` when it (or the head it calibrates) breaks the rules.
    """
    from emotion2vec_webui.runs.stores.calibration_store import read_document

    exported = getattr(engine, "exported", None)
    if exported is None or not (exported.path / CALIBRATION).is_file():
        return None
    try:
        doc = read_document(exported.path / CALIBRATION)
        if not isinstance(doc, dict) or doc.get("name") != name:
            return None
        calibration = build_calibration(name, doc)
    except CalibrationContentError as exc:
        raise exc.error(name) from None
    if calibration.target == NINE:
        return calibration
    head = exported_head(engine, calibration.target)
    if head is None:
        raise CalibrationContentError(
            f"it calibrates head {calibration.target!r}, which the export does not hold",
            f"它校准的分类头 {calibration.target!r} 不在导出目录中",
        ).error(name)
    return replace(calibration, head_fingerprint=head_fingerprint(head))


def export_documents(calibration: Calibration) -> dict[str, str]:
    """The files ``export --calibration`` adds to the export folder (name → text)."""
    from emotion2vec_webui.engine.calibration import to_document

    return {CALIBRATION: json.dumps(to_document(calibration), indent=2, ensure_ascii=False) + "\n"}
