"""A batch scored on a benchmark label set (``batch --label-set iemocap4``), the way published tables score it.

:mod:`label_sets` says how references and the nine-class answers map into the set; this module applies it to
a batch's final summary rows: references outside the set are dropped (and counted per label), each answer is
the set's class with the highest nine-class score (``summary.csv`` keeps the nine scores), and the result —
accuracy (= WA), UA, macro and weighted F1, per-class figures and the confusion matrix, computed by
:func:`runs.evaluation.evaluate` as for the nine classes — goes into ``metrics.json`` under ``"label_set"``,
``label_set_confusion_matrix.csv``/``.png`` and the report's lines.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict
from pathlib import Path

from emotion2vec_webui.files import write_atomic
from emotion2vec_webui.jobs.evaluation import Metrics, evaluate, write_confusion
from emotion2vec_webui.label_sets import PUBLISHED, PUBLISHED_SOURCE, LabelSet
from emotion2vec_webui.labels import EMOTIONS

MATRIX = "label_set_confusion_matrix"  # <stem>.csv and <stem>.png in the batch folder


def score_label_set(
    rows: list[dict], label_set: LabelSet, label_map: dict[str, str] | None = None
) -> tuple[dict, Metrics | None]:
    """The batch's scores on ``label_set``.

    Args:
        rows: the final summary rows (``label``, ``status``, ``emotion`` and the nine scores).
        label_set: the set (:func:`label_sets.label_set`).
        label_map: ``--label-map``, applied to references before the set's spellings.

    Returns:
        ``(scores, metrics)``: ``scores`` for metrics.json — ``{"name", "title", "classes", "metrics"}`` (the
        :class:`runs.evaluation.Metrics` as a dict, None when nothing is left to score), ``"scored"``, ``"dropped"`` (labelled inputs whose reference is outside the set)
        with ``"dropped_labels"`` (how many per label), ``"failed"`` (in the set but not classified),
        ``"top_outside_set"`` (scored inputs whose nine-class answer was none of the set's classes) and, for the
        4-class primary sets, ``"published"`` (emotion2vec+ large, %); ``metrics`` itself, or None.
    """
    labelled = [r for r in rows if r.get("label")]
    inside = [(r, label_set.reference(r["label"], label_map)) for r in labelled]
    dropped = Counter(r["label"] for r, ref in inside if ref is None)
    kept = [(r, ref) for r, ref in inside if ref is not None]
    scored = [(r, ref) for r, ref in kept if r.get("status") == "ok"]
    metrics = None
    if scored:
        predicted = [label_set.predicted({e: _number(r.get(e)) for e in EMOTIONS}) for r, _ in scored]
        metrics = evaluate([ref for _, ref in scored], predicted, classes=label_set.classes)
    published = PUBLISHED.get(label_set.name)
    scores = {
        "name": label_set.name,
        "title": label_set.title,
        "classes": list(label_set.classes),
        "prediction": "the set's class with the highest nine-class score",
        "metrics": asdict(metrics) if metrics else None,
        "scored": len(scored),
        "dropped": sum(dropped.values()),
        "dropped_labels": dict(sorted(dropped.items())),
        "failed": len(kept) - len(scored),
        "top_outside_set": sum(r.get("emotion") not in label_set.classes for r, _ in scored),
        "published": (
            {
                "model": "emotion2vec_plus_large",
                "ua": published[0],
                "wa": published[1],
                "f1": published[2],
                "source": PUBLISHED_SOURCE,
            }  # fmt: skip
            if published
            else None
        ),
    }
    return scores, metrics


def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def write_label_set(folder: Path, scores: dict, metrics: Metrics | None) -> None:
    """Add ``scores`` to ``metrics.json`` as ``"label_set"`` (creating it when the batch had no other metrics) and
    write the set's confusion matrix."""
    path = folder / "metrics.json"
    try:
        payload = json.loads(path.read_text("utf-8")) if path.is_file() else {}
    except (OSError, ValueError):
        payload = {}
    payload["label_set"] = scores
    write_atomic(path, json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    if metrics is not None:
        write_confusion(folder, metrics, MATRIX, title=f"{scores['title']} / 标签集 {scores['name']}")


def report_lines(scores: dict | None) -> list[str]:
    """The report's lines for a label set (English / 中文)."""
    if not scores:
        return []
    name, m = scores["name"], scores["metrics"]
    dropped = ", ".join(f"{k} {v}" for k, v in scores["dropped_labels"].items())
    lines = [
        f"label set {name} ({scores['title']}): {scores['scored']} inputs scored, {scores['dropped']} dropped as "
        f"outside the set{f' ({dropped})' if dropped else ''}, {scores['failed']} failed / 标签集 {name}："
        f"计分 {scores['scored']} 个，{scores['dropped']} 个标签不在集合内而剔除，{scores['failed']} 个失败"
    ]
    if m:
        ua, wa, f1 = 100 * m["ua"], 100 * m["accuracy"], 100 * m["macro_f1"]
        lines.append(
            f"label set {name}: UA {ua:.1f}%, WA {wa:.1f}%, macro F1 {f1:.1f}%, weighted F1 "
            f"{100 * m['weighted_f1']:.1f}% (answer: the set's class with the highest score; "
            f"{scores['top_outside_set']} top answers were outside the set) / 标签集 {name}：UA {ua:.1f}%，"
            f"WA {wa:.1f}%，宏 F1 {f1:.1f}%（取集合内得分最高的类别；{scores['top_outside_set']} 个原始首选不在集合内）"
        )
    if scores.get("published"):
        p = scores["published"]
        lines.append(
            f"published for emotion2vec+ large on EmoBox_test ({name}): UA {p['ua']:.1f}%, WA {p['wa']:.1f}%, "
            f"F1 {p['f1']:.1f}% — another test split and rule, for orientation / 已发表的 emotion2vec+ large "
            f"（EmoBox 测试集）：UA {p['ua']:.1f}%，WA {p['wa']:.1f}%，F1 {p['f1']:.1f}%（划分与规则不同，仅供参照）"
        )
    return lines


def score_batch_label_set(folder: Path, rows: list[dict], name: str | None, label_map: dict[str, str]) -> dict | None:
    """Score the batch on the label set ``name`` (None: not asked) and write it; the scores, or None."""
    from emotion2vec_webui.label_sets import label_set

    chosen = label_set(name)
    if chosen is None:
        return None
    scores, metrics = score_label_set(rows, chosen, label_map)
    write_label_set(folder, scores, metrics)
    return scores
