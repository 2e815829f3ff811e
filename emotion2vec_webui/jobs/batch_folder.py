"""A batch folder: its name, ``batch.json`` (what the batch was started with), and opening it to start or resume.

``batch.json`` is written first (it makes the folder a batch: ``runs/catalog/folders.py``)
and records the INPUT, the model, precision, granularity and head. ``--resume``
compares them with what the new run asks for (:func:`check_resume`): a batch
whose rows were made with one head, model, precision or granularity is never
continued with another, which would mix two kinds of rows in one summary.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from emotion2vec_webui.config import Settings
from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.files import write_atomic
from emotion2vec_webui.jobs.inputs import BatchItem
from emotion2vec_webui.jobs.summary import BatchSummary, row_key
from emotion2vec_webui.runs.catalog.folders import BATCH_MANIFEST

# What a batch must be resumed with, as batch.json stores it, and the flag that sets each.
RESUME_KEYS = {"model": "--model", "precision": "--precision", "granularity": "--granularity", "head": "--head",
               "calibration": "--calibration", "min_confidence": "--min-confidence"}  # fmt: skip


def new_batch_dir(root: Path) -> Path:
    """A fresh ``batch_YYYYMMDD_HHMMSS[_N]`` folder under the outputs root (not created)."""
    base = time.strftime("batch_%Y%m%d_%H%M%S")
    for n in range(10_000):
        path = root / (base if n == 0 else f"{base}_{n}")
        if not path.exists():
            return path
    raise RuntimeError(f"no free batch folder name under {root}")


def latest_batch_dir(root: Path, input_spec: str) -> Path | None:
    """The newest batch folder under ``root`` that was started on the same INPUT, if any."""
    candidates = sorted((p for p in root.glob("batch_*") if (p / BATCH_MANIFEST).is_file()), reverse=True)
    for path in candidates:
        try:
            if json.loads((path / BATCH_MANIFEST).read_text("utf-8")).get("input") == input_spec:
                return path
        except (OSError, ValueError):
            continue
    return None


def _model_key(model: str | None) -> str | None:
    """A model as batch.json keeps it: a local folder by its absolute path, a hub name as given."""
    if model and Path(model).expanduser().exists():
        return str(Path(model).expanduser().resolve())
    return model


def batch_manifest(input_spec: str, settings: Settings, *, granularity: str, head: str | None, **extra) -> dict:
    """What ``batch.json`` records: the INPUT and what the batch was started with (``--resume`` must match it).

    Args:
        input_spec: the INPUT as given (``latest_batch_dir`` finds the batch by it).
        settings: the model and precision.
        granularity: ``utterance`` or ``frame``.
        head: the trained head's name, or None.
        extra: more fields to keep (``embedding``, ``ui``).
    """
    return {
        "input": input_spec,
        "model": _model_key(settings.model),
        "precision": settings.precision,
        "granularity": granularity,
        "head": head,
        **extra,
    }


def check_resume(folder: Path, manifest: dict, summary: BatchSummary) -> None:
    """Refuse to resume a batch with another model, precision, granularity or head than it was started with.

    The stored ``batch.json`` is compared key by key (:data:`RESUME_KEYS`; a key an older batch.json lacks is not
    compared), and rows already written with another head (or none) count too.

    Raises:
        E2VError: ``bad_request`` naming each difference and how to go on.
    """
    try:
        stored = json.loads((folder / BATCH_MANIFEST).read_text("utf-8"))
    except (OSError, ValueError):
        stored = {}
    stored = stored if isinstance(stored, dict) else {}
    if "model" in stored:
        stored["model"] = _model_key(stored["model"])
    if "head" not in stored:  # a batch.json from before heads were recorded: its rows say which head they used
        heads = {r.get("head") for r in summary.rows() if r.get("status") == "ok"}
        if len(heads) == 1:
            stored["head"] = heads.pop()
    differ = [key for key in RESUME_KEYS if key in stored and stored[key] != manifest.get(key)]
    if not differ:
        return

    def shown(value) -> str:
        return "none / 无" if value in (None, "") else str(value)

    then = ", ".join(f"{RESUME_KEYS[k]} {shown(stored[k])}" for k in differ)
    now = ", ".join(f"{RESUME_KEYS[k]} {shown(manifest.get(k))}" for k in differ)
    raise E2VError(
        "bad_request",
        f"--resume: {folder.name} was started with {then}, not {now}; its rows would mix two settings. Resume with "
        f"the same settings, or start a new batch (without --resume, or another --batch-dir). / 无法继续（--resume）："
        f"{folder.name} 开始时使用 {then}，而本次为 {now}，两种设置的结果会混在一起。请用相同设置继续，"
        f"或开始新的批量任务（去掉 --resume，或换一个 --batch-dir）。",
    )


def open_batch(items: list[BatchItem], folder: Path, resume: bool, manifest: dict) -> tuple[BatchSummary, list]:
    """Open (or start) a batch folder and list the inputs still to do.

    Raises:
        E2VError: ``bad_request`` when the folder already holds a batch and ``resume`` is off.
    """
    summary = BatchSummary(folder)
    if summary.exists() and not resume:
        raise E2VError("bad_request", f"{folder} already holds a batch; pass --resume to continue it. "
                                      f"/ {folder} 已有一个批量任务；要继续它请加 --resume。")  # fmt: skip
    if resume and (folder / BATCH_MANIFEST).exists():
        check_resume(folder, manifest, summary)
    if not (folder / BATCH_MANIFEST).exists():
        write_atomic(folder / BATCH_MANIFEST, json.dumps(manifest, indent=2) + "\n")
    done = summary.done()
    todo = [it for it in items if it.file not in done]
    adopted = {row_key(r) for r in summary.adopt_orphans(todo)}
    return summary, [it for it in todo if it.file not in adopted]
