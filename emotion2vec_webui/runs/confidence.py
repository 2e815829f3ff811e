"""Calibrated confidence and abstention in the recognise flow (``--calibration NAME``, ``--min-confidence X``).

A calibration (:mod:`engine.calibration`, saved by ``calibrate``) rescales the scores it was fitted for: the
nine classes — the utterance's scores, the per-frame logits (so the timeline and its segments), each VAD
segment and each conversation turn (their engine calls go through :class:`CalibratedEngine`) — or a
trained head (folded into the head's last layer, so its frames and segments follow). result.json's
``calibration`` block says which calibration produced the confidence.

Abstention: with ``min_confidence`` a result, segment, turn or head answer whose (calibrated) confidence
is below it is marked ``"uncertain": true`` / 不确定; its top emotion and confidence stay beside the mark,
so nothing is lost. :func:`selective` scores the answered part of a labelled batch: coverage (the share
answered) and the accuracy on it.
"""

from __future__ import annotations

from collections.abc import Sequence

from emotion2vec_webui.engine.calibration import NINE, Calibration, calibrate_head, calibrate_result
from emotion2vec_webui.errors import E2VError

UNCERTAIN, UNCERTAIN_ZH = "uncertain", "不确定"


class CalibratedEngine:
    """An engine whose nine-class answers come calibrated; everything else is the wrapped engine's."""

    def __init__(self, engine, calibration: Calibration) -> None:
        self._engine, self._calibration = engine, calibration

    def __getattr__(self, name: str):
        return getattr(self._engine, name)

    def recognize(self, *args, **kwargs):
        return calibrate_result(self._engine.recognize(*args, **kwargs), self._calibration)

    def recognize_batch(self, *args, **kwargs):
        batched = getattr(self._engine, "recognize_batch", None)
        if batched is None:  # what engine.batching.recognize_each does for an engine without batches
            waveforms, rest = args[0], args[1:]
            return [self.recognize(w, *rest, **kwargs) for w in waveforms]
        return [calibrate_result(r, self._calibration) for r in batched(*args, **kwargs)]


def load_calibration(options, settings, engine, head):
    """The calibration ``options.calibration`` asks for (None without one) and the head, calibrated if it is the head's.

    An export's own calibration (:mod:`runs.exported_extras`) is found first, then the saved ones. A calibration
    of a head needs that head (it is folded into it); a nine-class one leaves ``head`` as it is.

    Raises:
        E2VError: ``not_found``, ``head_invalid``, ``head_mismatch`` (another backbone or head), ``bad_request``
            (a head's calibration without that head; a nine-class one on a model without the nine classes).
    """
    name = options.calibration
    if not name:
        return None, head
    from emotion2vec_webui.runs.exported_extras import exported_calibration
    from emotion2vec_webui.runs.stores.calibration_store import load_for_engine

    calibration = exported_calibration(engine, name) or load_for_engine(settings.heads_dir, name, engine)
    if calibration.target == NINE:
        if getattr(engine, "head_only", False):
            raise E2VError("bad_request", f"Calibration {name!r} is for the nine classes, which this model does not "
                                          "have. / 该模型没有九类情感分类头,此校准不适用。")  # fmt: skip
        return calibration, head
    if head is None:
        raise E2VError(
            "bad_request",
            f"Calibration {name!r} is for head {calibration.target!r}: pick that head too (--head "
            f'{calibration.target}, "head" on the API). / 校准 {name!r} 属于分类头 {calibration.target!r},'
            "请同时选择该分类头。",
        )
    return calibration, calibrate_head(head, calibration)


def nine_class(calibration: Calibration | None) -> Calibration | None:
    """The calibration when it is the nine classes' (the engine's answers then go through it), else None."""
    return calibration if calibration is not None and calibration.target == NINE else None


def is_uncertain(confidence: float, min_confidence: float | None) -> bool:
    """Whether an answer of this confidence abstains (never without a threshold)."""
    return min_confidence is not None and confidence < min_confidence


def mark_uncertain(payload: dict, min_confidence: float | None) -> None:
    """Add ``min_confidence`` and ``uncertain`` to a result.json object, its segments, turns and head block.

    Without a threshold the result says ``"uncertain": false`` and the parts are left as they are.
    """
    payload["min_confidence"] = min_confidence
    payload["uncertain"] = is_uncertain(payload["confidence"], min_confidence)
    if min_confidence is None:
        return
    head = payload.get("head") or {}
    for item in [*(payload.get("segments") or []), *(payload.get("turns") or []), *(head.get("segments") or [])]:
        if isinstance(item.get("confidence"), int | float):
            item["uncertain"] = is_uncertain(item["confidence"], min_confidence)
    if isinstance(head.get("confidence"), int | float):
        head["uncertain"] = is_uncertain(head["confidence"], min_confidence)


def shown(answer: str, uncertain: bool) -> str:
    """An answer for people as it is (``happy / 开心 0.812``), or, abstained, ``uncertain / 不确定 (happy / 开心 0.412)``."""
    return f"{UNCERTAIN} / {UNCERTAIN_ZH} ({answer})" if uncertain else answer


def selective(reference: Sequence[str], predicted: Sequence[str], uncertain: Sequence[bool]) -> dict:
    """Coverage and accuracy of the answered part of a labelled set.

    Args:
        reference: the labels.
        predicted: the top answers (also for abstained rows).
        uncertain: which rows abstained.

    Returns:
        ``{"n", "answered", "coverage", "accuracy_answered", "accuracy_all"}`` (accuracy on nothing is None).
    """
    n = len(reference)
    answered = [r == p for r, p, u in zip(reference, predicted, uncertain, strict=True) if not u]
    return {
        "n": n,
        "answered": len(answered),
        "coverage": round(len(answered) / n, 6) if n else None,
        "accuracy_answered": round(sum(answered) / len(answered), 6) if answered else None,
        "accuracy_all": round(sum(r == p for r, p in zip(reference, predicted, strict=True)) / n, 6) if n else None,
    }
