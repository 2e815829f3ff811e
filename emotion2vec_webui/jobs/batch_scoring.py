"""A batch's reference labels: which nine-class label or head label each is, the check before any work, the scores.

A label counts for the nine classes when it maps to one (``evaluation.map_label``:
``--label-map`` first, then the defaults such as RAVDESS ``calm`` → neutral), and
for a trained head (``--head``) when it is one of the head's labels — as spelled,
case ignored, or through ``--label-map`` — or when the input sits in a folder
named after one (the layout heads are trained from). A label can count for both.
:func:`score_batch` writes what applies: ``metrics.json`` (the nine classes at
its top level, the head under ``"head"``) and a confusion matrix each.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.files import write_atomic
from emotion2vec_webui.jobs.evaluation import Metrics, evaluate, map_label, write_confusion
from emotion2vec_webui.jobs.inputs import BatchItem
from emotion2vec_webui.labels import EMOTIONS

HEAD_MATRIX = "head_confusion_matrix"  # the head's confusion matrix: <stem>.csv and <stem>.png


@dataclass(frozen=True)
class BatchScores:
    metrics: Metrics | None = None  # the nine classes, when labels map to them
    labelled: int = 0  # inputs with any reference label
    label_mapping: dict[str, str] = field(default_factory=dict)  # dataset label → our class, where they differ
    label_counts: dict[str, int] = field(default_factory=dict)  # inputs per dataset label that was mapped
    head_metrics: Metrics | None = None  # the head, when labels are among its labels
    head_labelled: int = 0  # inputs whose reference label is one of the head's labels
    abstention: dict = field(default_factory=dict)  # --min-confidence: coverage, accuracy answered ("nine", "head")


def nine_class_of(label: str | None, label_map: dict[str, str] | None = None) -> str | None:
    """A reference label as one of the nine classes (through ``--label-map`` and the defaults), or None."""
    target = map_label(label, label_map) if label else None
    return target if target in EMOTIONS else None


def head_label_of(label: str | None, head_labels: Sequence[str], label_map: dict[str, str] | None = None) -> str | None:
    """A reference label as one of a head's labels — as spelled, case ignored, or through ``--label-map`` — or None."""
    if not label or not head_labels:
        return None
    key = label.strip()
    if key in head_labels:
        return key
    folded = {h.casefold(): h for h in head_labels}
    if key.casefold() in folded:
        return folded[key.casefold()]
    target = (label_map or {}).get(key.lower())
    return target if target in head_labels else None


def check_labels(items: list[BatchItem], label_map: dict[str, str], head_labels: Sequence[str] = ()) -> None:
    """Fail before any work when a reference label is neither a nine-class label nor one of the head's.

    Raises:
        E2VError: ``bad_request`` naming the labels and the option that fixes them.
    """
    unknown = sorted(
        {
            it.label
            for it in items
            if it.label
            and nine_class_of(it.label, label_map) is None
            and head_label_of(it.label, head_labels, label_map) is None
        }
    )
    if not unknown:
        return
    names = ", ".join(unknown)
    if head_labels:
        theirs = ", ".join(head_labels)
        raise E2VError(
            "bad_request",
            f"labels {names} are neither among our classes nor the head's labels ({theirs}); map them, e.g. "
            f"--label-map '{unknown[0]}=<class or head label>'. / 标签 {names} 既不是九类之一，也不是分类头的标签"
            f"（{theirs}）；请用 --label-map 映射，例如 --label-map '{unknown[0]}=<类别或分类头标签>'。",
        )
    raise E2VError(
        "bad_request",
        f"labels {names} are not among our classes; map them, e.g. --label-map '{unknown[0]}=other'. "
        f"/ 标签 {names} 不在九类之中；请用 --label-map 映射，例如 --label-map '{unknown[0]}=other'。",
    )


def head_folder_labels(items: list[BatchItem], input_spec: str, head_labels: Sequence[str]) -> list[BatchItem]:
    """Folder-per-label for a head: an unlabelled input of a folder INPUT whose folder is named after one of the
    head's labels (``DATA/frustrated/x.wav``, the layout heads are trained from) gets that label."""
    root = Path(input_spec).expanduser()
    if not head_labels or not root.is_dir():
        return items
    root = root.absolute()
    out = []
    for it in items:
        parent = Path(it.file).parent
        if not it.label and parent != root and parent.is_relative_to(root):
            label = head_label_of(parent.name, head_labels)
            if label:
                it = replace(it, label=label)
        out.append(it)
    return out


def label_mapping(rows: list[dict], label_map: dict[str, str]) -> tuple[dict[str, str], dict[str, int]]:
    """The dataset labels of ``rows`` that count as another of our classes (``calm`` → ``neutral``), with counts."""
    mapping: dict[str, str] = {}
    counts: dict[str, int] = {}
    for r in rows:
        raw = r["label"].strip().lower()
        target = map_label(raw, label_map)
        if target is not None and target != raw:
            mapping[raw] = target
            counts[raw] = counts.get(raw, 0) + 1
    return dict(sorted(mapping.items())), dict(sorted(counts.items()))


def score_batch(
    folder: Path, rows: list[dict], label_map: dict[str, str], head: str | None, head_labels: Sequence[str]
) -> BatchScores:
    """Score the final rows against their labels; write ``metrics.json`` and the confusion matrices that apply.

    ``metrics.json`` holds the nine-class scores at its top level (inputs whose label maps to a class) and the
    head's under ``"head"`` (inputs whose label is one of ``head_labels``, scored on the head's answer), each
    with its confusion matrix as CSV and PNG (``confusion_matrix.*``, ``head_confusion_matrix.*``).

    Args:
        folder: the batch folder.
        rows: the final summary rows.
        label_map: ``--label-map``.
        head: the head the batch applied, or None.
        head_labels: that head's label set.
    """
    labelled = [r for r in rows if r.get("label")]
    nine = [r for r in labelled if nine_class_of(r["label"], label_map)]
    scored = [r for r in nine if r["status"] == "ok"]
    mapping, counts = label_mapping(nine, label_map)
    payload: dict = {}
    abstention: dict = {}
    metrics = None
    if scored:
        reference = [nine_class_of(r["label"], label_map) for r in scored]
        metrics = evaluate(reference, [r["emotion"] for r in scored])
        payload = {**asdict(metrics), "labelled_inputs": len(nine), "labelled_failed": len(nine) - len(scored)}
        payload["label_mapping_applied"] = mapping  # e.g. RAVDESS calm → neutral: said, not silent
        payload["label_map"] = label_map
        write_confusion(folder, metrics)
        abstention["nine"] = _answered(scored, reference, "emotion", "uncertain")
    head_labels = tuple(head_labels) if head else ()
    theirs = [r for r in labelled if head_label_of(r["label"], head_labels, label_map)]
    answered = [r for r in theirs if r["status"] == "ok" and r.get("head") == head and r.get("head_label")]
    head_metrics = None
    if answered:
        reference = [head_label_of(r["label"], head_labels, label_map) for r in answered]
        head_metrics = evaluate(reference, [r["head_label"] for r in answered], classes=head_labels)
        payload["head"] = {
            "name": head,
            "label_set": list(head_labels),
            **asdict(head_metrics),
            "labelled_inputs": len(theirs),
            "labelled_failed": len(theirs) - len(answered),
        }
        write_confusion(folder, head_metrics, HEAD_MATRIX, title=f"分类头 / head {head}")
        abstention["head"] = _answered(answered, reference, "head_label", "head_uncertain")
    abstention = {k: v for k, v in abstention.items() if v is not None}
    if abstention:  # with --min-confidence: the answered part's coverage and accuracy (runs/confidence.py)
        payload["abstention"] = abstention
    if payload:
        write_atomic(folder / "metrics.json", json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    return BatchScores(metrics, len(labelled), mapping, counts, head_metrics, len(theirs), abstention)


def _answered(rows: list[dict], reference: list[str], answer: str, mark: str) -> dict | None:
    """Coverage and accuracy on the answered part, when the rows carry an abstention mark (else None)."""
    if not rows or any(r.get(mark) is None for r in rows):
        return None
    from emotion2vec_webui.runs.confidence import selective

    return selective(reference, [r[answer] for r in rows], [bool(r[mark]) for r in rows])
