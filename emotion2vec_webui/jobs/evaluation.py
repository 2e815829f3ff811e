"""Scoring predictions against reference labels: accuracy, UA, weighted and macro F1, confusion matrix.

Reference labels arrive as datasets spell them (RAVDESS ``calm``, CREMA-D
``disgust``, ``surprise`` …); :func:`map_label` turns them into our nine
classes with a default table that a ``--label-map 'calm=neutral,…'`` option
extends. :func:`evaluate` scores any label set — the nine classes, or a
trained head's labels (``classes=head.labels``). The metrics are computed
here with numpy (weighted F1 as scikit-learn's ``f1_score(average="weighted")``:
per-class F1 over the classes seen in either list, weighted by each class's
reference count; UA as ``balanced_accuracy_score``: the mean recall of the
classes that occur in the reference), so the package does not depend on
scikit-learn.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.files import write_atomic
from emotion2vec_webui.labels import EMOTIONS
from emotion2vec_webui.user_text import csv_row

# Dataset spellings → our classes. RAVDESS has no "calm" class of ours: calm speech is neutral.
DEFAULT_LABEL_MAP: dict[str, str] = {
    "calm": "neutral",
    "neu": "neutral",
    "ang": "angry",
    "anger": "angry",
    "dis": "disgusted",
    "disgust": "disgusted",
    "fea": "fearful",
    "fear": "fearful",
    "hap": "happy",
    "happiness": "happy",
    "joy": "happy",
    "sad": "sad",
    "sadness": "sad",
    "sur": "surprised",
    "surprise": "surprised",
    "unk": "unknown",
    "<unk>": "unknown",
}


@dataclass(frozen=True)
class ClassScores:
    label: str  # one of EMOTIONS
    precision: float
    recall: float
    f1: float
    support: int  # reference count


@dataclass(frozen=True)
class Metrics:
    count: int  # labelled items scored
    accuracy: float  # fraction predicted right
    weighted_f1: float  # per-class F1 weighted by reference count
    macro_f1: float  # unweighted mean of per-class F1
    labels: list[str]  # rows/columns of the confusion matrix (the classes' order, those that occur)
    confusion: list[list[int]]  # [reference][predicted] counts
    per_class: list[ClassScores]
    ua: float | None = None  # unweighted accuracy: mean recall over the classes in the reference (balanced accuracy)


def parse_label_map(text: str | None, extra_classes: Sequence[str] = ()) -> dict[str, str]:
    """Parse ``'calm=neutral,surprise=surprised'`` into a dict (keys lower-cased).

    Args:
        text: the ``--label-map`` value.
        extra_classes: more targets allowed beside the nine classes (a trained head's labels, kept as spelled).

    Raises:
        E2VError: ``bad_request`` when a pair is malformed or maps to an unknown class.
    """
    mapping: dict[str, str] = {}
    for pair in (text or "").split(","):
        if not pair.strip():
            continue
        src, sep, dst = pair.partition("=")
        src, dst = src.strip().lower(), dst.strip()
        if not sep or not src or not dst:
            raise E2VError("bad_request", f"--label-map: {pair.strip()!r} is not of the form dataset_label=class. "
                                          f"/ {pair.strip()!r} 不是 数据集标签=类别 的形式。")  # fmt: skip
        if dst in extra_classes:
            mapping[src] = dst
            continue
        dst = dst.lower()
        if dst not in EMOTIONS:
            known = ", ".join([*EMOTIONS, *extra_classes])
            raise E2VError("bad_request", f"--label-map: {dst!r} is not one of the classes {known}. "
                                          f"/ {dst!r} 不是可用的类别之一（{known}）。")  # fmt: skip
        mapping[src] = dst
    return mapping


def map_label(label: str, extra: dict[str, str] | None = None) -> str | None:
    """One dataset label as one of our nine classes, or None when it has no mapping.

    Args:
        label: the label as the dataset spells it (case and spaces ignored).
        extra: user mappings, applied before the defaults.
    """
    key = label.strip().lower()
    if extra and key in extra:
        return extra[key]
    if key in EMOTIONS:
        return key
    return DEFAULT_LABEL_MAP.get(key)


def evaluate(reference: list[str], predicted: list[str], classes: Sequence[str] = EMOTIONS) -> Metrics:
    """Accuracy, UA, weighted and macro F1, and the confusion matrix of two label lists.

    Args:
        reference: true classes (already mapped to ``classes``).
        predicted: predicted classes, same length.
        classes: the label set and its order: the nine classes (default), or a head's labels. The matrix
            has the classes that occur in either list, in this order, then any others sorted.

    Raises:
        ValueError: the lists differ in length or are empty.
    """
    if len(reference) != len(predicted) or not reference:
        raise ValueError("reference and predicted must be non-empty and of the same length")
    present = set(reference) | set(predicted)
    labels = [e for e in classes if e in present] + sorted(present - set(classes))
    index = {lab: i for i, lab in enumerate(labels)}
    cm = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for r, p in zip(reference, predicted, strict=True):
        cm[index[r], index[p]] += 1
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1).astype(np.float64)
    predicted_count = cm.sum(axis=0).astype(np.float64)
    precision = np.divide(tp, predicted_count, out=np.zeros_like(tp), where=predicted_count > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    per_class = [
        ClassScores(lab, float(precision[i]), float(recall[i]), float(f1[i]), int(support[i]))
        for i, lab in enumerate(labels)
    ]
    return Metrics(
        count=len(reference),
        accuracy=float(tp.sum() / cm.sum()),
        weighted_f1=float((f1 * support).sum() / support.sum()),
        macro_f1=float(f1.mean()),
        labels=labels,
        confusion=cm.tolist(),
        per_class=per_class,
        ua=float(recall[support > 0].mean()),
    )


def confusion_csv(metrics: Metrics) -> str:
    """The confusion matrix as CSV: a header of predicted classes, one row per reference class."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(csv_row(["reference\\predicted", *metrics.labels]))
    for lab, row in zip(metrics.labels, metrics.confusion, strict=True):
        writer.writerow(csv_row([lab, *row]))
    return buf.getvalue()


def write_evaluation(folder: str | os.PathLike, metrics: Metrics, extra: dict | None = None) -> list[Path]:
    """Write ``metrics.json``, ``confusion_matrix.csv`` and ``confusion_matrix.png`` atomically.

    Args:
        folder: the batch folder.
        metrics: from :func:`evaluate`.
        extra: more fields for metrics.json (e.g. how many labelled items were skipped).

    Returns:
        The paths written.
    """
    folder = Path(folder)
    payload = {**asdict(metrics), **(extra or {})}
    return [_write(folder / "metrics.json", json.dumps(payload, indent=2) + "\n"), *write_confusion(folder, metrics)]


def write_confusion(
    folder: str | os.PathLike, metrics: Metrics, stem: str = "confusion_matrix", title: str | None = None
) -> list[Path]:
    """Write ``<stem>.csv`` and ``<stem>.png`` atomically (a head's matrix: ``stem="head_confusion_matrix"``).

    Returns:
        The paths written.
    """
    folder = Path(folder)
    return [
        _write(folder / f"{stem}.csv", confusion_csv(metrics)),
        _write(folder / f"{stem}.png", confusion_png(metrics, title)),
    ]


def confusion_png(metrics: Metrics, title: str | None = None) -> bytes:
    """A confusion-matrix heat map (rows normalised, counts written in the cells) as PNG bytes.

    Args:
        metrics: from :func:`evaluate`.
        title: a first title line (e.g. which head), above the figures.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    cm = np.asarray(metrics.confusion, dtype=np.float64)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    n = len(metrics.labels)
    size = max(4.0, 0.7 * n + 2.0)
    with matplotlib.rc_context({"font.family": [*_cjk_fonts(), "DejaVu Sans"]}):  # bilingual axis titles
        fig = Figure(figsize=(size, size * 0.9), dpi=110)
        ax = fig.add_subplot()
        ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0)
        ax.set_xticks(range(n), metrics.labels, rotation=45, ha="right")
        ax.set_yticks(range(n), metrics.labels)
        ax.set_xlabel("预测 / predicted")
        ax.set_ylabel("真实 / reference")
        figures = (
            f"准确率 / accuracy {metrics.accuracy:.3f} · 加权 F1 / weighted F1 {metrics.weighted_f1:.3f} "
            f"· n={metrics.count}"
        )
        ax.set_title(f"{title}\n{figures}" if title else figures)
        for i in range(n):
            for j in range(n):
                color = "white" if norm[i, j] > 0.5 else "black"
                ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", color=color)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
    return buf.getvalue()


def _cjk_fonts() -> list[str]:
    """Installed font families that draw Chinese (``fonts-noto-cjk``), best first; empty when none is."""
    from matplotlib import font_manager

    names = {f.name for f in font_manager.fontManager.ttflist}
    preferred = ("Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC", "WenQuanYi Zen Hei", "Microsoft YaHei")
    return [name for name in preferred if name in names]


def _write(path: Path, data: bytes | str) -> Path:
    write_atomic(path, data)
    return path
