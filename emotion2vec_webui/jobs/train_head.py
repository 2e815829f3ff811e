"""Train a classifier head on one's own labels: features → cross-validated head → report → ``heads/<name>/``.

One concept: the training run end to end (read, hold out, cross-validate, score, export, write), in one
module so the report's figures and the saved head come from one code path.

Why scikit-learn: the heads are small (a few thousand clips of 768-1024
features at most), where scikit-learn's ``LogisticRegression`` (lbfgs) and
``MLPClassifier`` train in seconds on a CPU, with standardisation
(``StandardScaler`` in a ``Pipeline``, so each fold is scaled on its own
training part), class weights for imbalance (``class_weight="balanced"``;
balanced ``sample_weight`` for the MLP), and ``StratifiedKFold`` /
``StratifiedGroupKFold`` (speaker-grouped folds: no speaker in both the
training and the test part) done right and well tested. The fitted pipeline
is exported to plain arrays (``engine/heads.py``): inference needs neither
scikit-learn nor pickle.

The steps: read the labelled set (a folder per label, a CSV ``path,label``, or
RAVDESS/CREMA-D file names, via :mod:`jobs.inputs`); extract utterance
features (cached, :mod:`jobs.head_features`); hold out a stratified (and,
when speakers are known, speaker-disjoint) fifth; cross-validate logistic
regression and an MLP on the rest (``auto`` keeps the better macro F1);
score the held-out part; refit on every clip; write the head folder with its
report (accuracy, UA/WA as EmoBox reports them — UA the mean per-class
recall, WA the overall accuracy —, macro/weighted F1, per-class
precision/recall, confusion matrix CSV + PNG of the out-of-fold predictions,
the nine-class baseline when a mapping is given) and the exact command.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from emotion2vec_webui.engine.heads import FORMAT, check_name
from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.files import write_atomic
from emotion2vec_webui.jobs.evaluation import Metrics, confusion_csv, confusion_png, evaluate
from emotion2vec_webui.jobs.head_features import Backbone, Progress, extract_features, speaker_groups, speaker_of
from emotion2vec_webui.jobs.inputs import BatchItem, discover_inputs
from emotion2vec_webui.labels import EMOTIONS
from emotion2vec_webui.runs.stores.head_store import COMMAND, LABELS, REPORT, SPEC, write_head_folder
from emotion2vec_webui.user_text import clean_name

log = logging.getLogger(__name__)

CLASSIFIERS = ("auto", "logreg", "mlp", "ridge")  # ridge: regression heads (logreg means ridge there)


@dataclass(frozen=True)
class TrainOptions:
    classifier: str = "auto"  # auto | logreg | mlp
    folds: int = 5  # cross-validation folds (fewer when a class or the speakers are too few)
    holdout: float = 0.2  # fraction held out for the held-out score (0: none)
    seed: int = 0
    labels_zh: dict[str, str] = field(default_factory=dict)  # label → Chinese name
    baseline_map: dict[str, str] = field(default_factory=dict)  # nine-class emotion → new label
    overwrite: bool = False  # replace an existing head of that name
    targets: tuple[str, ...] = ()  # numeric target columns of a targets CSV (a regression head; jobs/train_regression.py)
    command: str = ""  # the exact command, kept in the head folder

    def __post_init__(self) -> None:
        # Names from every face (CLI, REST, Train tab) are kept without control or bidi characters, as labels are.
        for name in ("labels_zh", "baseline_map"):
            pairs = {clean_name(k): clean_name(v) for k, v in (getattr(self, name) or {}).items()}
            object.__setattr__(self, name, pairs)


@dataclass(frozen=True)
class TrainOutcome:
    folder: Path
    report: dict
    log_lines: list[str]


def labelled_items(spec: str | os.PathLike) -> list[BatchItem]:
    """A labelled set: a folder per label (the first folder under DATA names it), a CSV ``path,label``,
    or RAVDESS/CREMA-D file names. Every item must end up with a label — except in a targets CSV (numeric
    columns, :mod:`jobs.train_regression`), whose clips are returned without labels.

    Raises:
        E2VError: ``bad_request`` when a file has no label or there are fewer than two labels.
    """
    if regression_data(spec, TrainOptions()):  # a targets CSV: its clips (for the faces' folder checks)
        from emotion2vec_webui.jobs.train_regression import read_targets

        return read_targets(spec).items
    items = discover_inputs(spec)
    root = Path(spec).expanduser()
    out = []
    for it in items:
        label = it.label
        if not label and root.is_dir():
            rel = Path(it.file).relative_to(root.absolute())
            label = rel.parts[0] if len(rel.parts) > 1 else None
        if not label:
            raise E2VError(
                "bad_request",
                f"{it.file} has no label: use a folder per label (DATA/<label>/clip.wav), a CSV with "
                "path,label columns, or RAVDESS/CREMA-D file names. / 该文件没有标签:请按标签分文件夹、"
                "使用含 path,label 列的 CSV,或 RAVDESS/CREMA-D 文件名。",
            )
        out.append(BatchItem(it.file, label.strip()))
    counts = Counter(it.label for it in out)
    if len(counts) < 2:
        raise E2VError("bad_request", f"need at least two labels, found {dict(counts)}. / 至少需要两个标签。")
    return out


def parse_pairs(text: str | None, what: str) -> dict[str, str]:
    """``'a=b,c=d'`` → ``{'a': 'b', 'c': 'd'}`` (for --labels-zh and --baseline-map)."""
    out = {}
    for pair in (text or "").split(","):
        if not pair.strip():
            continue
        k, sep, v = pair.partition("=")
        if not sep or not k.strip() or not v.strip():
            raise E2VError("bad_request", f"{what}: {pair.strip()!r} is not of the form a=b. / 格式应为 a=b。")
        out[k.strip()] = v.strip()
    return out


def _pipeline(kind: str, seed: int):
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    if kind == "logreg":
        clf = LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000, random_state=seed)
    else:
        # lbfgs: full-batch, converges in a few hundred steps on head-sized data, ~3x faster than adam here
        clf = MLPClassifier(hidden_layer_sizes=(64,), alpha=1e-2, solver="lbfgs", max_iter=300, random_state=seed)
    return Pipeline([("scale", StandardScaler()), ("clf", clf)])


def _fit(kind: str, seed: int, x: np.ndarray, y: np.ndarray):
    pipe = _pipeline(kind, seed)
    if kind == "mlp":  # MLPClassifier has no class_weight: balanced sample weights do the same
        from sklearn.utils.class_weight import compute_sample_weight

        pipe.fit(x, y, clf__sample_weight=compute_sample_weight("balanced", y))
    else:
        pipe.fit(x, y)
    return pipe


def _splitter(y: np.ndarray, groups: np.ndarray | None, folds: int, seed: int):
    """Stratified (speaker-grouped when ``groups``) k-fold with k cut to what the data allow."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    k = min(folds, min(Counter(y.tolist()).values()))
    if groups is not None:
        k = min(k, len(set(groups.tolist())))
    if k < 2:
        raise E2VError(
            "bad_request",
            "too few clips to cross-validate: every label needs at least 2 clips (and 2 speakers when speakers "
            "are known) in the training part. / 数据太少,无法交叉验证:每个标签至少需要 2 条音频。",
        )
    if groups is not None:
        return StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed), k
    return StratifiedKFold(n_splits=k, shuffle=True, random_state=seed), k


def _cross_validate(kind, seed, x, y, groups, folds) -> tuple[np.ndarray, int]:
    splitter, k = _splitter(y, groups, folds, seed)
    predicted = np.empty_like(y)
    for train, test in splitter.split(x, y, groups):
        predicted[test] = _fit(kind, seed, x[train], y[train]).predict(x[test])
    return predicted, k


def scores(reference: list[str], predicted: list[str]) -> tuple[dict, Metrics]:
    """Accuracy, UA/WA (EmoBox), macro/weighted F1, per-class precision/recall and the confusion matrix."""
    m = evaluate(reference, predicted)
    present = [c for c in m.per_class if c.support > 0]
    return (
        {
            "n": m.count,
            "accuracy": round(m.accuracy, 6),
            "wa": round(m.accuracy, 6),
            "ua": round(float(np.mean([c.recall for c in present])), 6),
            "f1_macro": round(float(np.mean([c.f1 for c in present])), 6),
            "f1_weighted": round(m.weighted_f1, 6),
            "per_class": {
                c.label: {"precision": round(c.precision, 6), "recall": round(c.recall, 6), "f1": round(c.f1, 6),
                          "support": c.support}
                for c in m.per_class
            },
            "confusion": {"labels": m.labels, "matrix": m.confusion},
        },
        m,
    )


def export(pipe, labels: list[str]) -> dict[str, np.ndarray]:
    """The fitted pipeline as plain arrays for :class:`engine.heads.Head` (binary heads get a zero column)."""
    scaler, clf = pipe.named_steps["scale"], pipe.named_steps["clf"]
    if list(clf.classes_) != labels:
        raise ValueError("classifier classes differ from the label order")
    scale = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)
    if hasattr(clf, "coefs_"):
        ws = [np.asarray(w, np.float64) for w in clf.coefs_]
        bs = [np.asarray(b, np.float64) for b in clf.intercepts_]
    else:
        ws, bs = [np.asarray(clf.coef_, np.float64).T], [np.asarray(clf.intercept_, np.float64)]
    if ws[-1].shape[1] == 1 and len(labels) == 2:  # sigmoid(z) == softmax([0, z])
        ws[-1] = np.concatenate([np.zeros_like(ws[-1]), ws[-1]], axis=1)
        bs[-1] = np.concatenate([np.zeros(1), bs[-1]])
    arrays = {"mean": np.asarray(scaler.mean_, np.float64), "scale": scale}
    for i, (w, b) in enumerate(zip(ws, bs, strict=True)):
        arrays[f"W{i}"], arrays[f"b{i}"] = w, b
    return arrays


def _baseline(nine: np.ndarray, y: np.ndarray, mapping: dict[str, str], labels: list[str]) -> dict | None:
    """The built-in nine-class head, its scores summed per mapped label, scored against the labels."""
    if not mapping:
        return None
    unknown = sorted({k for k in mapping if k not in EMOTIONS} | {v for v in mapping.values() if v not in labels})
    if unknown:
        raise E2VError(
            "bad_request",
            f"--baseline-map: {', '.join(unknown)} are not nine-class emotions (left) or labels of this set "
            f"(right: {', '.join(labels)}). / 基线映射中的类别无效。",
        )
    targets = sorted(set(mapping.values()))
    summed = np.zeros((len(nine), len(targets)))
    for emo, lab in mapping.items():
        summed[:, targets.index(lab)] += nine[:, EMOTIONS.index(emo)]
    predicted = [targets[i] for i in summed.argmax(axis=1)]
    report, _ = scores(y.tolist(), predicted)
    return {"mapping": mapping, **report}


def train(
    x: np.ndarray, y: np.ndarray, groups: np.ndarray | None, options: TrainOptions, say: Callable[[str], None]
) -> tuple[dict, object, Metrics]:
    """Hold out, cross-validate, pick, score, refit on everything.

    Returns:
        (report fields, the pipeline fitted on all clips, the cross-validated metrics).
    """
    labels = sorted(set(y.tolist()))
    idx = np.arange(len(y))
    test_idx = np.array([], dtype=int)
    if options.holdout > 0:
        splitter, _ = _splitter(y, groups, max(2, round(1 / options.holdout)), options.seed)
        train_idx, test_idx = next(splitter.split(x, y, groups))
    else:
        train_idx = idx
    xt, yt, gt = x[train_idx], y[train_idx], None if groups is None else groups[train_idx]
    kinds = ["logreg", "mlp"] if options.classifier == "auto" else [options.classifier]
    candidates, cv_predictions, k = {}, {}, 0
    for kind in kinds:
        predicted, k = _cross_validate(kind, options.seed, xt, yt, gt, options.folds)
        report, _ = scores(yt.tolist(), predicted.tolist())
        candidates[kind] = {"cv_accuracy": report["accuracy"], "cv_f1_macro": report["f1_macro"]}
        cv_predictions[kind] = predicted
        say(f"{kind}: {k}-fold CV accuracy {report['accuracy']:.3f}, macro F1 {report['f1_macro']:.3f}")
    chosen = max(kinds, key=lambda kd: (candidates[kd]["cv_f1_macro"], kd == "logreg"))
    cv, cv_metrics = scores(yt.tolist(), cv_predictions[chosen].tolist())
    holdout = None
    if len(test_idx):
        model = _fit(chosen, options.seed, xt, yt)
        holdout, _ = scores(y[test_idx].tolist(), model.predict(x[test_idx]).tolist())
        say(f"held-out ({len(test_idx)} clips): accuracy {holdout['accuracy']:.3f}, macro F1 {holdout['f1_macro']:.3f}")
    final = _fit(chosen, options.seed, x, y)
    fields = {
        "labels": labels,
        "classifier": chosen,
        "candidates": candidates,
        "folds": k,
        "grouped_by_speaker": groups is not None,
        "cv_accuracy": cv["accuracy"],
        "cv_f1_macro": cv["f1_macro"],
        "cv": cv,
        "holdout_accuracy": holdout["accuracy"] if holdout else None,
        "holdout": holdout,
    }
    return fields, final, cv_metrics


def train_head(
    data: str | os.PathLike,
    name: str,
    backbone: Backbone,
    execute: Callable,
    settings,
    options: TrainOptions = TrainOptions(),
    progress: Progress | None = None,
) -> TrainOutcome:
    """Train head ``name`` on the labelled set ``data`` and write ``<settings.heads_dir>/<name>/``.

    Args:
        data: a folder per label, a CSV ``path,label``, or RAVDESS/CREMA-D files.
        name: the head's name (its folder).
        backbone: the model the features come from (its checkpoint hash goes into the head).
        execute: ``execute(fn)`` runs ``fn(engine)``; only called for features not in the cache.
        settings: ``heads_dir`` (the feature cache is ``<heads_dir>/.features``), decoding limits.
        options: classifier, folds, hold-out, names, baseline mapping.
        progress: ``(fraction, message)`` as the job goes (features take the first 80%).

    Raises:
        E2VError: ``bad_request`` (bad data or name, head exists), audio errors naming the file.
    """
    t0 = time.perf_counter()
    lines: list[str] = []

    def say(message: str, fraction: float | None = None) -> None:
        lines.append(message)
        log.info("train-head %s: %s", name, message)
        if progress:
            progress(fraction if fraction is not None else 0.85, message)

    name = check_name(name)
    heads_dir = Path(settings.heads_dir)
    folder = heads_dir / name
    if folder.exists() and not options.overwrite:
        raise E2VError(
            "bad_request",
            f"head {name!r} already exists in the heads folder ({heads_dir.name}); pass --force "
            '(REST: "overwrite": true) to replace it. / 分类头已存在。',
        )
    if options.classifier not in CLASSIFIERS:
        raise E2VError("bad_request", f"classifier must be one of {', '.join(CLASSIFIERS)} / 分类器应为其中之一")
    if regression_data(data, options):
        return _train_regression(data, name, folder, backbone, execute, settings, options, say, progress, lines)
    if options.classifier == "ridge":
        raise E2VError("bad_request", "ridge is for numeric targets (a targets CSV); classify with auto, logreg or "
                                      "mlp. / ridge 仅用于数值目标(目标 CSV);分类请用 auto、logreg 或 mlp。")  # fmt: skip
    items = labelled_items(data)
    counts = Counter(it.label for it in items)
    say(f"{len(items)} clips, {len(counts)} labels: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())), 0.0)
    feats = extract_features(
        items,
        backbone,
        execute,
        settings,
        heads_dir / ".features",
        (lambda f, m: progress(0.8 * f, m)) if progress else None,
    )
    if feats.extracted == 0:
        say(f"features: all {feats.cached} from the cache, no inference ({feats.seconds:.2f} s)", 0.8)
    else:
        say(f"features: {feats.extracted} extracted, {feats.cached} from the cache ({feats.seconds:.2f} s)", 0.8)
    y = np.array([it.label for it in items])
    groups = speaker_groups([speaker_of(it.file) for it in items])
    if groups is not None:
        say(f"speakers known from the file names ({len(set(groups))}): folds keep each speaker on one side")
    t_train = time.perf_counter()
    fields, final, cv_metrics = train(feats.pooled.astype(np.float64), y, groups, options, say)
    labels = fields["labels"]
    if options.baseline_map and np.allclose(feats.nine, 1 / len(EMOTIONS)):  # a head-only model (no nine classes)
        say("nine-class baseline skipped: the model has no nine-class head")
        baseline = None
    else:
        baseline = _baseline(feats.nine, y, options.baseline_map, labels)
    if baseline:
        say(f"nine-class baseline (mapped): accuracy {baseline['accuracy']:.3f}, macro F1 {baseline['f1_macro']:.3f}")
    report = {
        "name": name,
        "n": len(items),
        "counts": dict(sorted(counts.items())),
        **fields,
        "baseline": baseline,
        "model": backbone.name,
        "checkpoint_sha256": backbone.checkpoint_sha256,
        "features": {"cached": feats.cached, "extracted": feats.extracted, "seconds": round(feats.seconds, 3)},
        "train_s": round(time.perf_counter() - t_train, 3),
        "total_s": round(time.perf_counter() - t0, 3),
        "data": str(data),
        "command": options.command,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "log": lines,
    }
    spec = {
        "format": FORMAT,
        "model": backbone.name,
        "model_path": backbone.path,
        "checkpoint_sha256": backbone.checkpoint_sha256,
        "pooling": "mean",
        "embedding_dim": int(feats.pooled.shape[1]),
        "classifier": fields["classifier"],
        "created": report["created"],
    }
    labels_doc = {"labels": labels, "labels_zh": {k: v for k, v in options.labels_zh.items() if k in labels}}
    _write_folder(folder, export(final, labels), labels_doc, spec, report, cv_metrics, options.command)
    say(f"wrote {folder}", 1.0)
    report["log"] = lines
    write_atomic(folder / REPORT, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    return TrainOutcome(folder, report, lines)


def _write_folder(folder: Path, arrays, labels_doc, spec, report, metrics: Metrics, command: str) -> None:
    """Write the head folder (swapped in whole: :func:`runs.head_store.write_head_folder`)."""
    files = {
        LABELS: json.dumps(labels_doc, indent=2, ensure_ascii=False) + "\n",
        SPEC: json.dumps(spec, indent=2, ensure_ascii=False) + "\n",
        REPORT: json.dumps(report, indent=2, ensure_ascii=False) + "\n",
        "confusion_matrix.csv": confusion_csv(metrics),
        "confusion_matrix.png": confusion_png(metrics),
        COMMAND: command + "\n",
    }
    write_head_folder(folder, arrays, files)


def regression_data(data: str | os.PathLike, options: TrainOptions) -> bool:
    """Whether ``data`` is a targets CSV (numeric columns, no labels): a regression head is trained on it."""
    from emotion2vec_webui.jobs.train_regression import is_targets_csv

    return is_targets_csv(data, options.targets)


def _train_regression(data, name, folder, backbone, execute, settings, options, say, progress, lines) -> TrainOutcome:
    from emotion2vec_webui.jobs.train_regression import train_regression_head

    report = train_regression_head(data, name, folder, backbone, execute, settings, options, say, progress)
    report["log"] = lines
    write_atomic(folder / REPORT, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    return TrainOutcome(folder, report, lines)


def summary_json(report: dict) -> dict:
    """The report without the log lines (what ``--json`` and the API return)."""
    return {k: v for k, v in report.items() if k != "log"}


__all__ = ["TrainOptions", "TrainOutcome", "labelled_items", "train_head"]
