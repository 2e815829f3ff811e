"""Fit a calibration on a labelled set: features → logits → held-out figures → fit on all → ``.calibrations/<name>/``.

One concept: the calibration run end to end, so the figures it reports and the calibration it saves come
from one code path. The labelled set is read as ``train-head`` reads it (a folder per label, a CSV
``path,label``, RAVDESS/CREMA-D file names: :func:`jobs.train_head.labelled_items`), through the same
feature cache (:mod:`jobs.head_features`: a second run on the same files does no inference). Speakers
known from the file names keep each speaker in one fold (``GroupKFold``), so the figures are on unseen
speakers.

What is calibrated: the nine classes (labels mapped to them as batch evaluation maps them, e.g.
RAVDESS ``calm`` → neutral, plus ``--label-map``; their logits are the logarithms of the engine's
probabilities), or a trained head (``--head``: its logits on the pooled features; labels must be the head's).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from emotion2vec_webui.engine.calibration import (
    NINE,
    Calibration,
    cross_validate,
    fit,
    head_fingerprint,
    logits_from_probs,
    reliability,
)
from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.jobs.evaluation import map_label
from emotion2vec_webui.jobs.head_features import Backbone, Progress, extract_features, speaker_groups, speaker_of
from emotion2vec_webui.jobs.train_head import labelled_items
from emotion2vec_webui.labels import EMOTIONS
from emotion2vec_webui.options import check_calibration_name
from emotion2vec_webui.runs.confidence import selective
from emotion2vec_webui.runs.stores.calibration_store import DIAGRAM, calibration_dir, write_calibration

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CalibrateOptions:
    head: str | None = None  # calibrate this trained head (None: the nine classes)
    folds: int = 5  # held-out folds (fewer when speakers or clips are few)
    seed: int = 0
    label_map: dict[str, str] | None = None  # nine classes: dataset label → class, before the defaults
    overwrite: bool = False  # replace a calibration of that name
    command: str = ""  # the exact command, kept beside the calibration


@dataclass(frozen=True)
class CalibrateOutcome:
    folder: Path
    report: dict  # calibration.json's document plus the held-out details
    log_lines: list[str]


def _targets(labels: list[str], classes: list[str], head: str | None, label_map: dict[str, str] | None) -> np.ndarray:
    """Each label's class index; ``bad_request`` naming the labels that are none of ``classes``."""
    out, unknown = [], set()
    for label in labels:
        if head is None:
            target = map_label(label, {k.lower(): v for k, v in (label_map or {}).items()})
        else:
            folded = {c.casefold(): c for c in classes}
            target = folded.get(label.strip().casefold())
        if target not in classes:
            unknown.add(label)
        else:
            out.append(classes.index(target))
    if unknown:
        names, what = ", ".join(sorted(unknown)[:10]), f"head {head}'s labels" if head else "the nine classes"
        raise E2VError(
            "bad_request",
            f"labels {names} are not among {what} ({', '.join(classes)})"
            + ("" if head else f"; map them, e.g. --label-map '{sorted(unknown)[0]}=neutral'")
            + f". / 标签 {names} 不在可校准的类别之中。",
        )
    return np.array(out)


THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)  # the report's abstention table (choose --min-confidence from it)


def thresholds(probs: np.ndarray, y: np.ndarray, classes: list[str]) -> list[dict]:
    """Held-out coverage and accuracy on the answered part at each of :data:`THRESHOLDS` (calibrated scores)."""
    top = probs.argmax(axis=1)
    reference, predicted = [classes[i] for i in y], [classes[i] for i in top]
    return [
        {"min_confidence": t, **selective(reference, predicted, (probs.max(axis=1) < t).tolist())} for t in THRESHOLDS
    ]


def reliability_png(before: list[dict], after: list[dict], title: str) -> bytes:
    """The reliability diagram: accuracy against confidence per bin, before and after, with the diagonal."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from emotion2vec_webui.jobs.evaluation import _cjk_fonts  # the confusion matrix's font choice, one rule

    with matplotlib.rc_context({"font.family": [*_cjk_fonts(), "DejaVu Sans"]}):  # bilingual labels
        fig = Figure(figsize=(5.2, 5.0), dpi=110)
        ax = fig.add_subplot()
        ax.plot([0, 1], [0, 1], color="#999999", linestyle="--", linewidth=1, label="完美 / perfect")
        for bins, name, color in ((before, "校准前 / before", "#d9534f"), (after, "校准后 / after", "#2a7ab0")):
            kept = [b for b in bins if b["count"]]
            ax.plot([b["confidence"] for b in kept], [b["accuracy"] for b in kept], marker="o", color=color,
                    label=name)  # fmt: skip
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("置信度 / confidence (top class)")
        ax.set_ylabel("准确率 / accuracy")
        ax.set_title(title, fontsize=9)
        ax.legend(loc="upper left")
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()


def calibrate(
    data: str | os.PathLike,
    name: str,
    backbone: Backbone,
    execute: Callable,
    settings,
    options: CalibrateOptions = CalibrateOptions(),
    progress: Progress | None = None,
) -> CalibrateOutcome:
    """Fit calibration ``name`` on the labelled set ``data`` and write ``<heads_dir>/.calibrations/<name>/``.

    Args:
        data: a folder per label, a CSV ``path,label``, or RAVDESS/CREMA-D files.
        name: the calibration's name.
        backbone: the model the features come from.
        execute: ``execute(fn)`` runs ``fn(engine)``; only called for features not in the cache.
        settings: ``heads_dir`` (heads, the feature cache, calibrations), decoding limits.
        options: the head, folds, label mapping.
        progress: ``(fraction, message)`` as the job goes (features take the first 80%).

    Raises:
        E2VError: ``bad_request`` (bad data or name, exists), ``not_found``/``head_invalid`` for the head.
    """
    t0 = time.perf_counter()
    lines: list[str] = []

    def say(message: str, fraction: float = 0.85) -> None:
        lines.append(message)
        log.info("calibrate %s: %s", name, message)
        if progress:
            progress(fraction, message)

    name = check_calibration_name(name, required=True)
    heads_dir = Path(settings.heads_dir)
    if calibration_dir(heads_dir, name).exists() and not options.overwrite:
        raise E2VError("bad_request", f"calibration {name!r} already exists; pass --force to replace it. / "
                                      f"校准 {name!r} 已存在,加 --force 可覆盖。")  # fmt: skip
    head = None
    if options.head:
        from emotion2vec_webui.engine.heads import check_backbone
        from emotion2vec_webui.runs.stores.head_store import load_head

        head = load_head(heads_dir, options.head)
        check_backbone(head, backbone.checkpoint_sha256, backbone.name)
        if getattr(head, "kind", "classification") != "classification":  # a regression head has no confidence
            raise E2VError("bad_request", f"head {head.name!r} is a regression head: only classification heads have "
                                          "a confidence to calibrate. / 回归头没有可校准的置信度。")  # fmt: skip
    items = labelled_items(data)
    classes = list(head.labels) if head is not None else list(EMOTIONS)
    y = _targets([it.label for it in items], classes, options.head, options.label_map)
    say(f"{len(items)} clips, calibrating {'head ' + head.name if head else 'the nine classes'}", 0.0)
    feats = extract_features(items, backbone, execute, settings, heads_dir / ".features",
                             (lambda f, m: progress(0.8 * f, m)) if progress else None)  # fmt: skip
    if head is None and np.allclose(feats.nine, 1 / len(EMOTIONS)):
        raise E2VError("bad_request", "this model has no nine-class head: calibrate a trained head (--head NAME). / "
                                      "该模型没有九类情感分类头,请校准一个自训练的分类头。")  # fmt: skip
    logits = head.logits(feats.pooled) if head is not None else logits_from_probs(feats.nine)
    groups = speaker_groups([speaker_of(it.file) for it in items])
    cv = cross_validate(logits, y, groups, options.folds, options.seed)
    grouped = f"{cv['folds']} speaker-grouped folds" if groups is not None else f"{cv['folds']} stratified folds"
    for when in ("before", "after"):
        m = cv[when]
        say(f"held-out ({grouped}) {when}: ECE {m['ece']:.4f}  Brier {m['brier']:.4f}  NLL {m['nll']:.4f}  "
            f"accuracy {m['accuracy']:.3f}")  # fmt: skip
    temperature, bias = fit(logits, y, cv["with_bias"])
    say(f"fitted on all {len(y)} clips: temperature {temperature:.4f}"
        + (", per-class bias kept (it lowered the held-out NLL)" if cv["with_bias"] else ", no per-class bias"))  # fmt: skip
    info = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "n": len(y),
        "folds": cv["folds"],
        "with_bias": cv["with_bias"],
        "before": cv["before"],
        "after": cv["after"],
        "command": options.command,
    }
    calibration = Calibration(
        name=name,
        target=head.name if head is not None else NINE,
        labels=tuple(classes),
        temperature=temperature,
        bias=bias,
        checkpoint_sha256=backbone.checkpoint_sha256,
        head_fingerprint=head_fingerprint(head) if head is not None else None,
        info=info,
    )
    title = (
        f"{'head ' + head.name if head else 'nine classes'} · {grouped}\n"
        f"ECE {cv['before']['ece']:.3f} → {cv['after']['ece']:.3f} · T {temperature:.3f}"
    )
    diagram = reliability_png(reliability(cv["probs_before"], y), reliability(cv["probs_after"], y), title)
    folder = write_calibration(heads_dir, calibration, diagram, options.command)
    say(f"wrote {folder} ({DIAGRAM})", 1.0)
    report = {
        "name": name,
        "target": calibration.target,
        "temperature": round(temperature, 6),
        "bias": [round(float(b), 6) for b in bias],
        **info,
        "grouped_by_speaker": groups is not None,
        "temperature_alone": cv["temperature_alone"],
        "with_bias_figures": cv["with_bias_figures"],
        "fold_temperatures": cv["fold_temperatures"],
        "reliability_before": reliability(cv["probs_before"], y),
        "reliability_after": reliability(cv["probs_after"], y),
        "thresholds": thresholds(cv["probs_after"], y, classes),
        "total_s": round(time.perf_counter() - t0, 3),
    }
    return CalibrateOutcome(folder, report, lines)
