"""``bench --dataset DIR --label-set SET``: each model's UA/WA/F1 on a benchmark label set, beside the published ones.

The dataset's clips are read with their labels as the dataset spells them, mapped into the set the way batch
evaluation maps them (:mod:`label_sets`: outside the set → dropped, counted); each model's answer is the set's
class with its highest score (a model that cannot output a class never predicts it). For the 4-class primary
sets the emotion2vec+ large figures of the emotion2vec README's Table IV (EmoBox_test, no fine-tuning) are
printed beside the measured ones — another split, and a rule the table does not state, so for orientation
only; other sets have no published figure and the table says so.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.jobs.evaluation import evaluate
from emotion2vec_webui.label_sets import PUBLISHED, PUBLISHED_SOURCE, LabelSet


def set_items(dataset: Path, label_set: LabelSet) -> tuple[list[tuple[str, str]], Counter]:
    """``(file, set class)`` for each clip whose label maps into ``label_set``, and the dropped labels' counts.

    Raises:
        E2VError: ``bad_request`` when no clip maps into the set.
    """
    from emotion2vec_webui.jobs.inputs import discover_inputs

    kept, dropped = [], Counter()
    for item in discover_inputs(str(dataset)):
        target = label_set.reference(item.label)
        if target is not None:
            kept.append((item.file, target))
        elif item.label:
            dropped[item.label] += 1
    if not kept:
        raise E2VError(
            "bad_request",
            f"--dataset {dataset}: no clip has a label of the set {label_set.name} ({', '.join(label_set.classes)}). "
            f"/ 数据集中没有属于标签集 {label_set.name} 的音频。",
        )
    return kept, dropped


def label_set_rows(results, references: list[str], label_set: LabelSet) -> list[dict]:
    """Per model: ``{"model", "n", "ua", "wa", "f1_macro", "f1_weighted"}`` (None for a model that did not run)."""
    rows = []
    for r in results:
        pairs = [(ref, label_set.predicted(s)) for ref, s in zip(references, r.item_scores, strict=False) if s]
        if not r.ok or not pairs:
            rows.append({"model": r.model, "n": 0, "ua": None, "wa": None, "f1_macro": None, "f1_weighted": None})
            continue
        m = evaluate([p[0] for p in pairs], [p[1] for p in pairs], classes=label_set.classes)
        rows.append({"model": r.model, "n": m.count, "ua": m.ua, "wa": m.accuracy, "f1_macro": m.macro_f1,
                     "f1_weighted": m.weighted_f1})  # fmt: skip
    return rows


def label_set_markdown(rows: list[dict], label_set: LabelSet, dropped: Counter) -> str:
    """The set's table (UA, WA, macro F1 in %) with the published row when the set has one, and a note."""
    pct = lambda v: "—" if v is None else f"{100 * v:.1f}"  # noqa: E731
    lines = [
        f"Label set {label_set.name} ({label_set.title}; classes {', '.join(label_set.classes)}):",
        "",
        "| model | clips | UA (%) | WA (%) | macro F1 (%) |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {r['model']} | {r['n']} | {pct(r['ua'])} | {pct(r['wa'])} | {pct(r['f1_macro'])} |" for r in rows]
    published = PUBLISHED.get(label_set.name)
    if published:
        ua, wa, f1 = published
        lines.append(f"| emotion2vec+ large, published (EmoBox_test) | — | {ua:.1f} | {wa:.1f} | {f1:.1f} |")
    lines.append("")
    if dropped:
        lines.append("Dropped (outside the set): " + ", ".join(f"{k} {v}" for k, v in sorted(dropped.items())) + ".")
    lines.append("Answer: the set's class with the model's highest score.")
    if published:
        lines.append(f"Published: {PUBLISHED_SOURCE}; another test split, compare with care.")
    else:
        lines.append(
            f"No published figure for {label_set.name}: the emotion2vec+ table gives 4-class primary figures only "
            f"(--label-set {label_set.dataset}4); EmoBox's benchmark (emo-box.github.io) covers other settings."
        )
    return "\n".join(lines)
