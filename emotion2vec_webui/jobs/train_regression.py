"""Train a dimensional (regression) head: numeric targets per clip → cross-validated ridge or MLP → ``heads/<name>/``.

The regression twin of :mod:`jobs.train_head` (which calls :func:`train_regression_head` when the data are a
targets CSV). The set is a CSV (or TSV) with a ``path`` column, an optional ``speaker`` column and numeric
target columns — ``arousal``, ``valence``, ``dominance`` or any others (``--targets`` picks them; by default
every column other than ``path``, ``speaker`` and ``label`` whose cells are all numbers).

Why scikit-learn, again: ``RidgeCV`` picks the ridge penalty by its exact leave-one-out error on each training
part at the cost of one fit, ``MLPRegressor`` is the small non-linear alternative, ``GroupKFold`` keeps each
speaker on one side of every split (the speaker comes from a ``speaker`` column or RAVDESS/CREMA-D file names),
and all of them are well tested. Targets are standardised before fitting (so one penalty suits targets of
different ranges, and the MLP trains well) and the standardisation is folded back into the last layer, so the
exported head (plain arrays, :mod:`engine.heads`, no softmax) gives values in the CSV's units.

Scores are those of the dimensional-emotion literature: the concordance correlation coefficient (CCC, Lin
1989: ``2 cov / (var_x + var_y + (mean_x - mean_y)²)``, population moments, as AVEC and MSP-Podcast report
it), Pearson's r and the mean absolute error, per target, of the out-of-fold predictions.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from emotion2vec_webui.engine.heads import MAX_LABEL_CHARS, REGRESSION_FORMAT, RESERVED_TARGETS
from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.jobs.head_features import Backbone, extract_features, speaker_groups, speaker_of
from emotion2vec_webui.jobs.inputs import BatchItem, _relative_to
from emotion2vec_webui.runs.stores.head_store import COMMAND, LABELS, REPORT, SPEC, write_head_folder
from emotion2vec_webui.user_text import clean_name

REGRESSORS = ("auto", "ridge", "mlp")
MAX_TARGETS = 64
_NOT_TARGETS = {"path", "speaker", "label"}


@dataclass(frozen=True)
class TargetSet:
    items: list[BatchItem]  # the clips (no labels)
    values: np.ndarray  # [N, K] float64, finite
    targets: list[str]  # K column names, CSV order
    speakers: list[str | None]  # per clip: the speaker column, else RAVDESS/CREMA-D file names, else None


def _bad(en: str, zh: str) -> E2VError:
    return E2VError("bad_request", f"{en} / {zh}")


def _number(text: str | None) -> float | None:
    try:
        value = float((text or "").strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def is_targets_csv(spec: str | os.PathLike, targets: tuple[str, ...] = ()) -> bool:
    """Whether ``spec`` is a CSV/TSV of numeric targets (``--targets`` given, or no ``label`` column)."""
    path = Path(spec).expanduser()
    if path.suffix.lower() not in (".csv", ".tsv") or not path.is_file():
        return False
    if targets:
        return True
    with path.open(newline="", encoding="utf-8-sig") as fh:
        header = next(csv.reader(fh, delimiter="\t" if path.suffix.lower() == ".tsv" else ","), [])
    names = {h.strip().lower() for h in header}
    return "path" in names and "label" not in names and bool(names - _NOT_TARGETS)


def read_targets(spec: str | os.PathLike, targets: tuple[str, ...] = ()) -> TargetSet:
    """The clips and their numeric targets from a CSV/TSV (relative paths are relative to it).

    Args:
        spec: the CSV or TSV.
        targets: the columns to learn (default: every column but path/speaker/label whose cells are all numbers).

    Raises:
        E2VError: ``bad_request`` naming the column or row that is not usable.
    """
    path = Path(spec).expanduser()
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh, delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
        columns = {clean_name(f).lower(): f for f in reader.fieldnames or [] if f is not None}
        rows = [r for r in reader if (r.get(columns.get("path", "")) or "").strip()]
    if "path" not in columns:
        raise _bad(f"{path.name}: a targets CSV needs a 'path' column", f"{path.name}:目标 CSV 需要 'path' 列")
    if targets:
        missing = [t for t in targets if t.lower() not in columns]
        if missing:
            raise _bad(f"--targets: no column {', '.join(missing)} in {path.name} (columns: {', '.join(columns)})",
                       f"--targets:{path.name} 中没有列 {', '.join(missing)}")  # fmt: skip
        chosen = [t.lower() for t in targets]
    else:
        chosen = [
            c for c in columns if c not in _NOT_TARGETS and all(_number(r.get(columns[c])) is not None for r in rows)
        ]
    if not chosen or len(chosen) > MAX_TARGETS:
        raise _bad(f"{path.name}: need 1 to {MAX_TARGETS} numeric target columns (e.g. arousal, valence), "
                   f"found {len(chosen)}", f"{path.name}:需要 1 到 {MAX_TARGETS} 个数值目标列(如 arousal、valence)")  # fmt: skip
    for name in chosen:
        if name in RESERVED_TARGETS or len(name) > MAX_LABEL_CHARS:
            raise _bad(f"target column {name[:40]!r} is a name frames.csv uses (or too long): rename it",
                       f"目标列 {name[:40]!r} 与 frames.csv 的列重名(或过长),请改名")  # fmt: skip
    items, values, speakers = [], [], []
    for line, row in enumerate(rows, start=2):
        numbers = [_number(row.get(columns[c])) for c in chosen]
        if any(v is None for v in numbers):
            column = chosen[numbers.index(None)]
            raise _bad(
                f"{path.name} row {line}: {column} is not a finite number",
                f"{path.name} 第 {line} 行:{column} 不是有限数值",
            )
        items.append(BatchItem(str(_relative_to(path.parent, row[columns["path"]].strip()).absolute())))
        values.append(numbers)
        spoken = clean_name(row.get(columns["speaker"]) or "") if "speaker" in columns else ""
        speakers.append(spoken or speaker_of(items[-1].file))
    if len(items) < 4:
        raise _bad(f"{path.name}: need at least 4 clips, found {len(items)}", f"{path.name}:至少需要 4 条音频")
    return TargetSet(items, np.array(values, dtype=np.float64), chosen, speakers)


def ccc(reference: np.ndarray, predicted: np.ndarray) -> float:
    """Lin's concordance correlation coefficient (population moments); 0 when both are constant."""
    x, y = np.asarray(reference, np.float64), np.asarray(predicted, np.float64)
    denominator = x.var() + y.var() + (x.mean() - y.mean()) ** 2
    return float(2 * np.mean((x - x.mean()) * (y - y.mean())) / denominator) if denominator > 0 else 0.0


def regression_scores(reference: np.ndarray, predicted: np.ndarray, targets: list[str]) -> dict:
    """Per target CCC, Pearson's r and MAE, plus their means over the targets."""
    per = {}
    for k, name in enumerate(targets):
        x, y = reference[:, k], predicted[:, k]
        pearson = float(np.corrcoef(x, y)[0, 1]) if x.std() > 0 and y.std() > 0 else 0.0
        per[name] = {
            "ccc": round(ccc(x, y), 6),
            "pearson": round(pearson, 6),
            "mae": round(float(np.abs(x - y).mean()), 6),
        }
    mean = {m: round(float(np.mean([v[m] for v in per.values()])), 6) for m in ("ccc", "pearson", "mae")}
    return {"n": int(len(reference)), "targets": per, **mean}


class _Fitted:
    """A scaler + regressor pipeline fitted on standardised targets, predicting in the targets' units."""

    def __init__(self, kind: str, seed: int, x: np.ndarray, y: np.ndarray) -> None:
        from sklearn.linear_model import RidgeCV
        from sklearn.neural_network import MLPRegressor
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import StandardScaler

        self.y_mean = y.mean(axis=0)
        self.y_scale = np.where(y.std(axis=0) > 0, y.std(axis=0), 1.0)
        z = (y - self.y_mean) / self.y_scale
        if kind == "ridge":  # the penalty by exact leave-one-out on this training part
            reg = RidgeCV(alphas=np.logspace(-2, 5, 15))
        else:
            reg = MLPRegressor(hidden_layer_sizes=(64,), alpha=1e-1, solver="lbfgs", max_iter=200, random_state=seed)
        self.pipe = Pipeline([("scale", StandardScaler()), ("reg", reg)])
        self.pipe.fit(x, z if z.shape[1] > 1 else z[:, 0])

    def predict(self, x: np.ndarray) -> np.ndarray:
        z = np.asarray(self.pipe.predict(x), np.float64).reshape(len(x), -1)
        return z * self.y_scale + self.y_mean

    def arrays(self) -> dict[str, np.ndarray]:
        """The head's ``weights.npz``: standardisation, layers, the targets' scale folded into the last one."""
        scaler, reg = self.pipe.named_steps["scale"], self.pipe.named_steps["reg"]
        k = len(self.y_mean)
        if hasattr(reg, "coefs_"):
            ws = [np.asarray(w, np.float64) for w in reg.coefs_]
            bs = [np.asarray(b, np.float64).reshape(-1) for b in reg.intercepts_]
        else:
            ws = [np.asarray(reg.coef_, np.float64).reshape(k, -1).T]
            bs = [np.asarray(reg.intercept_, np.float64).reshape(k)]
        ws[-1], bs[-1] = ws[-1] * self.y_scale, bs[-1] * self.y_scale + self.y_mean
        out = {"mean": np.asarray(scaler.mean_, np.float64), "scale": np.where(scaler.scale_ > 0, scaler.scale_, 1.0)}
        for i, (w, b) in enumerate(zip(ws, bs, strict=True)):
            out[f"W{i}"], out[f"b{i}"] = w, b
        return out


def _splits(n: int, groups: np.ndarray | None, folds: int, seed: int):
    """k-fold splits (``GroupKFold`` when speakers are known), k cut to what the data allow."""
    from sklearn.model_selection import GroupKFold, KFold

    k = min(folds, n if groups is None else len(set(groups.tolist())))
    if k < 2:
        raise _bad("too few clips (or speakers) to cross-validate: need at least 2 speakers",
                   "数据太少,无法交叉验证:至少需要 2 位说话人")  # fmt: skip
    if groups is None:
        return list(KFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(n))), k
    return list(GroupKFold(n_splits=k).split(np.zeros(n), groups=groups)), k


def cross_validate(kind: str, x: np.ndarray, y: np.ndarray, groups: np.ndarray | None, folds: int = 5,
                   seed: int = 0) -> tuple[np.ndarray, int]:  # fmt: skip
    """Out-of-fold predictions ``[N, K]`` of ``kind`` (``ridge`` | ``mlp``) and the number of folds used."""
    y = np.asarray(y, np.float64).reshape(len(x), -1)
    predicted = np.empty_like(y)
    splits, k = _splits(len(x), groups, folds, seed)
    for train, test in splits:
        predicted[test] = _Fitted(kind, seed, x[train], y[train]).predict(x[test])
    return predicted, k


def fit_regression(x, y, targets, groups, regressor="auto", folds=5, holdout=0.2, seed=0, say=print):
    """Hold out, cross-validate, pick (``auto``: the better mean CCC), score, refit on everything.

    Returns:
        (report fields, the regressor fitted on every clip).
    """
    if regressor not in REGRESSORS:
        raise _bad(f"regressor must be one of {', '.join(REGRESSORS)}", f"回归器应为 {', '.join(REGRESSORS)} 之一")
    y = np.asarray(y, np.float64).reshape(len(x), -1)
    train_idx, test_idx = np.arange(len(x)), np.array([], dtype=int)
    if holdout > 0:
        splits, _ = _splits(len(x), groups, max(2, round(1 / holdout)), seed)
        train_idx, test_idx = splits[0]
    gt = None if groups is None else groups[train_idx]
    kinds = ["ridge", "mlp"] if regressor == "auto" else [regressor]
    cv, k = {}, 0
    for kind in kinds:
        predicted, k = cross_validate(kind, x[train_idx], y[train_idx], gt, folds, seed)
        cv[kind] = regression_scores(y[train_idx], predicted, targets)
        say(f"{kind}: {k}-fold CV mean CCC {cv[kind]['ccc']:.3f}, Pearson {cv[kind]['pearson']:.3f}, "
            f"MAE {cv[kind]['mae']:.3f}")  # fmt: skip
    chosen = max(kinds, key=lambda kd: (cv[kd]["ccc"], kd == "ridge"))
    held = None
    if len(test_idx):
        held = regression_scores(
            y[test_idx], _Fitted(chosen, seed, x[train_idx], y[train_idx]).predict(x[test_idx]), targets
        )
        say(f"held-out ({len(test_idx)} clips): mean CCC {held['ccc']:.3f}, MAE {held['mae']:.3f}")
    fields = {
        "kind": "regression",
        "targets": list(targets),
        "labels": list(targets),
        "classifier": chosen,
        "candidates": {
            kd: {"cv_ccc": cv[kd]["ccc"], "cv_pearson": cv[kd]["pearson"], "cv_mae": cv[kd]["mae"]} for kd in kinds
        },
        "folds": k,
        "grouped_by_speaker": groups is not None,
        "cv_ccc": cv[chosen]["ccc"],
        "cv": cv[chosen],
        "holdout": held,
    }
    return fields, _Fitted(chosen, seed, x, y)


def train_regression_head(data, name: str, folder: Path, backbone: Backbone, execute: Callable, settings, options,
                          say: Callable[..., None], progress=None) -> dict:  # fmt: skip
    """Train and write a regression head from the targets CSV ``data`` (``options``: :class:`TrainOptions`).

    Returns:
        The report (also written as ``report.json``).
    """
    t0 = time.perf_counter()
    regressor = {"auto": "auto", "logreg": "ridge", "mlp": "mlp"}.get(options.classifier, options.classifier)
    found = read_targets(data, options.targets)
    say(f"{len(found.items)} clips, targets: {', '.join(found.targets)}", 0.0)
    feats = extract_features(found.items, backbone, execute, settings, Path(settings.heads_dir) / ".features",
                             (lambda f, m: progress(0.8 * f, m)) if progress else None)  # fmt: skip
    say(f"features: {feats.extracted} extracted, {feats.cached} from the cache ({feats.seconds:.2f} s)", 0.8)
    groups = speaker_groups(found.speakers)
    if groups is not None:
        say(f"speakers known ({len(set(groups))}): folds keep each speaker on one side")
    t_train = time.perf_counter()
    fields, final = fit_regression(feats.pooled.astype(np.float64), found.values, found.targets, groups, regressor,
                                   options.folds, options.holdout, options.seed, say)  # fmt: skip
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    report = {
        "name": name, "n": len(found.items), **fields, "model": backbone.name,
        "checkpoint_sha256": backbone.checkpoint_sha256,
        "features": {"cached": feats.cached, "extracted": feats.extracted, "seconds": round(feats.seconds, 3)},
        "train_s": round(time.perf_counter() - t_train, 3), "total_s": round(time.perf_counter() - t0, 3),
        "data": str(data), "command": options.command, "created": created,
    }  # fmt: skip
    spec = {
        "format": REGRESSION_FORMAT, "kind": "regression", "model": backbone.name, "model_path": backbone.path,
        "checkpoint_sha256": backbone.checkpoint_sha256, "pooling": "mean",
        "embedding_dim": int(feats.pooled.shape[1]), "classifier": fields["classifier"], "created": created,
    }  # fmt: skip
    labels_doc = {
        "labels": found.targets,
        "labels_zh": {k: v for k, v in options.labels_zh.items() if k in found.targets},
    }

    def text(doc) -> str:
        return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"

    files = {LABELS: text(labels_doc), SPEC: text(spec), REPORT: text(report), COMMAND: options.command + "\n"}
    write_head_folder(folder, final.arrays(), files)
    say(f"wrote {folder}", 1.0)
    return report
