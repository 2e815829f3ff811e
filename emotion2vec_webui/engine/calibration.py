"""Confidence calibration: temperature scaling (plus a per-class bias where it pays), and how calibrated scores are.

A softmax's top probability is not how often the answer is right: modern networks are over-confident
(Guo et al. 2017, "On Calibration of Modern Neural Networks"). Temperature scaling divides the logits by
one number ``T`` fitted to minimise the negative log-likelihood on labelled data; it never changes the
argmax. A per-class bias added after it (``logits / T + b``) also corrects a class the model over- or
under-predicts on the user's data; it can change the argmax, so :func:`cross_validate` keeps it only when
it lowers the held-out NLL.

This module is the math and the rules of a calibration; it reads no files (``runs/stores/calibration_store.py``
does). The fits use ``scipy.optimize`` (bounded 1-D search for ``T``, L-BFGS with the exact gradient for
``T`` and ``b`` together): scipy comes with scikit-learn, which ``train-head`` already needs, and its
optimisers are well tested where a hand-written search is not. Inputs are logits; for the nine classes
the engine keeps probabilities, whose logarithms are the logits up to a constant per row, which softmax
ignores (:func:`logits_from_probs`).

Metrics (all on the top class unless said): ECE — the mean gap between confidence and accuracy over
equal-width confidence bins, weighted by the bins' counts; Brier score — the mean squared distance between
the probability vector and the one-hot label (all classes); NLL — the mean of ``-log p(label)``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace

import numpy as np

from emotion2vec_webui.engine.heads import Head
from emotion2vec_webui.engine.result import EmotionResult, softmax
from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.labels import EMOTIONS

FORMAT = 1
NINE = "nine"  # a calibration's target when it calibrates the built-in nine classes (else a head's name)
BINS = 15  # ECE and reliability-diagram bins (equal width on [0, 1])
T_RANGE = (0.05, 50.0)  # temperatures searched
BIAS_L2 = 1e-3  # keeps the bias small and unique (a constant added to every class changes nothing)
MAX_LABELS = 1000


@dataclass(frozen=True)
class Calibration:
    """A fitted calibration: ``softmax(logits / temperature + bias)``."""

    name: str
    target: str  # NINE, or the name of the head it calibrates
    labels: tuple[str, ...]  # the classes, in the logits' order
    temperature: float
    bias: np.ndarray  # [C] float64 (zeros when no bias was kept)
    checkpoint_sha256: str  # the backbone the logits came from
    head_fingerprint: str | None = None  # the head's weights (:func:`head_fingerprint`) when target is a head
    info: dict = field(default_factory=dict)  # created, n, metrics: what listings show

    def logits(self, logits: np.ndarray) -> np.ndarray:
        """Calibrated logits ``logits / T + b`` (``[..., C]``)."""
        return np.asarray(logits, dtype=np.float64) / self.temperature + self.bias

    def probs(self, logits: np.ndarray) -> np.ndarray:
        return softmax(self.logits(logits))

    def describe(self) -> dict:
        """result.json's ``calibration`` block: which calibration produced the confidence."""
        return {
            "name": self.name,
            "target": self.target,
            "temperature": round(self.temperature, 6),
            "bias": bool(np.any(self.bias != 0)),
            "checkpoint_sha256": self.checkpoint_sha256,
            "created": self.info.get("created"),
        }


# -- applying -------------------------------------------------------------------------------
def logits_from_probs(probs: np.ndarray) -> np.ndarray:
    """Logits (up to a constant per row) from probabilities: their logarithm, zeros floored at the smallest float."""
    return np.log(np.maximum(np.asarray(probs, dtype=np.float64), np.finfo(np.float64).tiny))


def calibrate_result(result: EmotionResult, calibration: Calibration) -> EmotionResult:
    """The engine's nine-class answer with calibrated scores (and calibrated per-frame logits).

    Raises:
        E2VError: ``bad_request`` when the calibration is not one of the nine classes.
    """
    if calibration.target != NINE or list(calibration.labels) != list(EMOTIONS):
        raise E2VError(
            "bad_request",
            f"Calibration {calibration.name!r} is for head {calibration.target!r}, not the nine classes: pick that "
            f"head too (--head {calibration.target}). / 校准 {calibration.name!r} 属于分类头 {calibration.target!r},"
            "不适用于九类情感;请同时选择该分类头。",
        )
    probs = calibration.probs(logits_from_probs([result.scores[e] for e in EMOTIONS]))
    frame_logits = result.frame_logits
    if frame_logits is not None:
        frame_logits = calibration.logits(frame_logits).astype(np.float32)
    top = int(np.argmax(probs))
    return replace(
        result,
        emotion=EMOTIONS[top],
        confidence=float(probs[top]),
        scores={k: float(p) for k, p in zip(EMOTIONS, probs, strict=True)},
        frame_logits=frame_logits,
    )


def calibrate_head(head: Head, calibration: Calibration) -> Head:
    """``head`` with the calibration folded into its last layer: ``(x W + b) / T + c == x (W / T) + (b / T + c)``.

    The folded head gives calibrated utterance scores, frames and segments through the usual
    ``engine.heads.apply_head``, with no second code path.

    Raises:
        E2VError: ``head_mismatch`` when the calibration was fitted on another head (or another version of it).
    """
    if getattr(head, "kind", "classification") != "classification":
        raise E2VError("bad_request", f"Head {head.name!r} is a regression head: its values have no confidence to "
                                      "calibrate. / 回归头没有可校准的置信度。")  # fmt: skip
    if calibration.target != head.name or calibration.head_fingerprint != head_fingerprint(head):
        raise E2VError(
            "head_mismatch",
            f"Calibration {calibration.name!r} was fitted for head {calibration.target!r}"
            + (" as it was before it was retrained" if calibration.target == head.name else "")
            + f", not head {head.name!r}: calibrate again (emotion2vec-webui calibrate DATA --head {head.name}). / "
            f"校准 {calibration.name!r} 不是为当前的分类头 {head.name!r} 拟合的,请重新校准。",
        )
    w, b = head.layers[-1]
    layers = [*head.layers[:-1], (w / calibration.temperature, b / calibration.temperature + calibration.bias)]
    return replace(head, layers=layers)


def head_fingerprint(head: Head) -> str:
    """SHA-256 (first 16 hex digits) of a head's numbers: a calibration is tied to the head it was fitted on."""
    digest = hashlib.sha256()
    for array in (head.mean, head.scale, *(a for layer in head.layers for a in layer)):
        digest.update(np.ascontiguousarray(array, dtype=np.float64).tobytes())
    return digest.hexdigest()[:16]


# -- measuring ------------------------------------------------------------------------------
def nll(probs: np.ndarray, y: np.ndarray) -> float:
    """Mean negative log-likelihood of the labels ``y`` (class indices)."""
    p = np.asarray(probs, dtype=np.float64)[np.arange(len(y)), y]
    return float(-np.mean(np.log(np.maximum(p, 1e-300))))


def brier(probs: np.ndarray, y: np.ndarray) -> float:
    """Mean over clips of the squared distance between the probabilities and the one-hot label (0 best, 2 worst)."""
    p = np.asarray(probs, dtype=np.float64)
    onehot = np.zeros_like(p)
    onehot[np.arange(len(y)), y] = 1.0
    return float(np.mean(np.sum((p - onehot) ** 2, axis=1)))


def reliability(probs: np.ndarray, y: np.ndarray, bins: int = BINS) -> list[dict]:
    """Equal-width bins of the top-class confidence: each bin's range, count, mean confidence and accuracy."""
    p = np.asarray(probs, dtype=np.float64)
    confidence, correct = p.max(axis=1), (p.argmax(axis=1) == y)
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    out = []
    for k in range(bins):
        inside = which == k
        n = int(inside.sum())
        out.append(
            {
                "low": k / bins,
                "high": (k + 1) / bins,
                "count": n,
                "confidence": float(confidence[inside].mean()) if n else None,
                "accuracy": float(correct[inside].mean()) if n else None,
            }
        )
    return out


def ece(probs: np.ndarray, y: np.ndarray, bins: int = BINS) -> float:
    """Expected calibration error: ``sum_b n_b / N * |accuracy_b - confidence_b|`` over the top class."""
    total = len(y)
    return float(
        sum(
            b["count"] / total * abs(b["accuracy"] - b["confidence"]) for b in reliability(probs, y, bins) if b["count"]
        )
    )


def measures(probs: np.ndarray, y: np.ndarray) -> dict:
    """ECE, Brier score, NLL and accuracy of ``probs`` against ``y``."""
    p = np.asarray(probs, dtype=np.float64)
    return {
        "ece": round(ece(p, y), 6),
        "brier": round(brier(p, y), 6),
        "nll": round(nll(p, y), 6),
        "accuracy": round(float(np.mean(p.argmax(axis=1) == y)), 6),
    }


# -- fitting --------------------------------------------------------------------------------
def _nll_and_grad(params: np.ndarray, logits: np.ndarray, onehot: np.ndarray, with_bias: bool):
    t = float(np.exp(params[0]))
    bias = params[1:] if with_bias else 0.0
    z = logits / t + bias
    z = z - z.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(z).sum(axis=1))
    loss = float(np.mean(log_norm - (z * onehot).sum(axis=1)))
    diff = (np.exp(z - log_norm[:, None]) - onehot) / len(z)  # d loss / d z
    grad_log_t = float(np.sum(diff * (-logits / t)))
    if not with_bias:
        return loss, np.array([grad_log_t])
    loss += BIAS_L2 * float(bias @ bias)
    return loss, np.concatenate([[grad_log_t], diff.sum(axis=0) + 2 * BIAS_L2 * bias])


def fit(logits: np.ndarray, y: np.ndarray, with_bias: bool = False) -> tuple[float, np.ndarray]:
    """The temperature (and, with ``with_bias``, the per-class bias) minimising the NLL of ``y`` given ``logits``.

    Args:
        logits: ``[N, C]``.
        y: ``[N]`` class indices.
        with_bias: fit a per-class bias with the temperature.

    Returns:
        ``(temperature, bias [C])`` (the bias is zeros without ``with_bias``).
    """
    from scipy.optimize import minimize, minimize_scalar

    logits = np.asarray(logits, dtype=np.float64)
    onehot = np.zeros_like(logits)
    onehot[np.arange(len(y)), y] = 1.0
    lo, hi = np.log(T_RANGE[0]), np.log(T_RANGE[1])
    best = minimize_scalar(
        lambda s: _nll_and_grad(np.array([s]), logits, onehot, False)[0], bounds=(lo, hi), method="bounded",
        options={"xatol": 1e-6},
    )  # fmt: skip
    log_t, bias = float(best.x), np.zeros(logits.shape[1])
    if with_bias:
        start = np.concatenate([[log_t], bias])
        bounds = [(lo, hi)] + [(-20.0, 20.0)] * logits.shape[1]
        res = minimize(_nll_and_grad, start, args=(logits, onehot, True), jac=True, method="L-BFGS-B", bounds=bounds)
        log_t, bias = float(res.x[0]), np.asarray(res.x[1:], dtype=np.float64)
    return float(np.exp(log_t)), bias


def cross_validate(logits: np.ndarray, y: np.ndarray, groups: np.ndarray | None, folds: int = 5, seed: int = 0) -> dict:
    """Held-out figures of a calibration: fit on k-1 folds, measure on the k-th (speakers on one side when known).

    Temperature alone and temperature + per-class bias are both cross-validated; the bias is kept only when
    it lowers the held-out NLL (and does not lower accuracy).

    Returns:
        ``{"folds", "grouped_by_speaker", "with_bias", "before", "after", "temperature_alone", "with_bias_figures",
        "fold_temperatures", "probs_before", "probs_after"}`` (probabilities out of fold, for the diagram).

    Raises:
        E2VError: ``bad_request`` when the set is too small to hold anything out.
    """
    from sklearn.model_selection import GroupKFold, StratifiedKFold

    logits = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y)
    if groups is not None:
        k = min(folds, len(set(groups.tolist())))
        splitter, split = GroupKFold(n_splits=k) if k >= 2 else None, (logits, y, groups)
    else:
        k = min(folds, int(np.bincount(y).max()), len(y))
        splitter, split = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed) if k >= 2 else None, (logits, y)
    if splitter is None or len(y) < 4:
        raise E2VError(
            "bad_request",
            "too few clips (or speakers) to calibrate on held-out folds: at least 4 clips and 2 speakers are needed. "
            "/ 数据太少,无法在留出折上校准:至少需要 4 条音频、2 位说话人。",
        )
    before = softmax(logits)
    after = {False: np.zeros_like(logits), True: np.zeros_like(logits)}
    temperatures = []
    for train, test in splitter.split(*split):
        for with_bias in (False, True):
            t, bias = fit(logits[train], y[train], with_bias)
            after[with_bias][test] = softmax(logits[test] / t + bias)
            if not with_bias:
                temperatures.append(round(t, 6))
    alone, biased = measures(after[False], y), measures(after[True], y)
    keep_bias = biased["nll"] < alone["nll"] and biased["accuracy"] >= alone["accuracy"]
    return {
        "folds": k,
        "grouped_by_speaker": groups is not None,
        "with_bias": keep_bias,
        "before": measures(before, y),
        "after": biased if keep_bias else alone,
        "temperature_alone": alone,
        "with_bias_figures": biased,
        "fold_temperatures": temperatures,
        "probs_before": before,
        "probs_after": after[keep_bias],
    }


# -- reading a saved calibration ------------------------------------------------------------
class CalibrationContentError(ValueError):
    """A saved calibration breaks the rules (``calibration.json``'s fields, types, values)."""

    def __init__(self, en: str, zh: str) -> None:
        super().__init__(en)
        self.en, self.zh = en, zh

    def error(self, name: str) -> E2VError:
        """The ``head_invalid`` error of calibration ``name`` (named by name, never by path)."""
        return E2VError(
            "head_invalid",
            f"Calibration {name!r} is invalid: calibration.json: {self.en}. Calibrate again (or delete it). / "
            f"校准 {name!r} 无效:calibration.json:{self.zh}。请重新校准(或删除)。",
        )


def to_document(calibration: Calibration) -> dict:
    """What ``calibration.json`` holds (the figures under ``info``)."""
    return {
        "format": FORMAT,
        "name": calibration.name,
        "target": calibration.target,
        "labels": list(calibration.labels),
        "temperature": calibration.temperature,
        "bias": [float(b) for b in calibration.bias],
        "checkpoint_sha256": calibration.checkpoint_sha256,
        "head_fingerprint": calibration.head_fingerprint,
        **calibration.info,
    }


def build_calibration(name: str, doc: object) -> Calibration:
    """A calibration from ``calibration.json``, parsed; every type and value checked.

    Raises:
        CalibrationContentError: the first rule broken.
    """
    bad = CalibrationContentError
    if not isinstance(doc, dict):
        raise bad("must be an object", "应为对象")
    version = doc.get("format", FORMAT)
    if not isinstance(version, int) or isinstance(version, bool) or version > FORMAT:
        raise bad(f"format {str(version)[:20]} is newer than this version reads ({FORMAT})", "格式版本过新")
    target, labels, checkpoint = doc.get("target"), doc.get("labels"), doc.get("checkpoint_sha256")
    if not isinstance(target, str) or not 0 < len(target) <= 64:
        raise bad('"target" must name the nine classes ("nine") or a head', '"target" 应为 "nine" 或分类头名称')
    if (
        not isinstance(labels, list)
        or not 2 <= len(labels) <= MAX_LABELS
        or not all(isinstance(x, str) and 0 < len(x) <= 200 for x in labels)
    ):
        raise bad(f'"labels" must be a list of 2 to {MAX_LABELS} names', f'"labels" 应为 2 到 {MAX_LABELS} 个名称')
    if target == NINE and labels != list(EMOTIONS):
        raise bad("a nine-class calibration must list the nine classes in model order", "九类校准的标签应为九个类别")
    if not isinstance(checkpoint, str) or not 0 < len(checkpoint) <= 128:
        raise bad('"checkpoint_sha256" (the backbone\'s identity) must be text', '"checkpoint_sha256" 应为文本')
    fingerprint = doc.get("head_fingerprint")
    if target != NINE and (not isinstance(fingerprint, str) or not 0 < len(fingerprint) <= 64):
        raise bad('a head\'s calibration needs "head_fingerprint" (text)', '分类头的校准需要 "head_fingerprint"')
    temperature, bias = doc.get("temperature"), doc.get("bias")
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, int | float)
        or not (T_RANGE[0] <= temperature <= T_RANGE[1])
    ):
        raise bad(f'"temperature" must be a number from {T_RANGE[0]} to {T_RANGE[1]}', '"temperature" 超出范围')
    if (
        not isinstance(bias, list)
        or len(bias) != len(labels)
        or not all(isinstance(b, int | float) and not isinstance(b, bool) and abs(b) <= 100 for b in bias)
    ):
        raise bad('"bias" must hold one number (|b| <= 100) per label', '"bias" 应为每个标签一个数(绝对值不超过 100)')
    info = {k: v for k, v in doc.items() if k in ("created", "n", "before", "after", "with_bias", "folds", "command")}
    return Calibration(
        name=name,
        target=target,
        labels=tuple(labels),
        temperature=float(temperature),
        bias=np.asarray(bias, dtype=np.float64),
        checkpoint_sha256=checkpoint,
        head_fingerprint=fingerprint if target != NINE else None,
        info=info,
    )
