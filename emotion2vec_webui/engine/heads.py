"""Trained classifier heads: one's own labels on emotion2vec features, beside the nine built-in classes.

This module is the math and the rules of a head; it reads no files. The head
folders (``<E2V_HEADS_DIR>/<name>/``: ``weights.npz``, ``labels.json``,
``spec.json``, the report) are read, cached and listed by
:mod:`runs.head_store`, which hands their parsed contents to
:func:`build_head`.

* ``weights.npz`` — ``mean`` and ``scale`` (the standardisation), then dense
  layers ``W0, b0, W1, b1, …`` (ReLU between them), softmax at the end.
* ``labels.json`` — ``{"labels": [...], "labels_zh": {label: 中文}}``.
* ``spec.json`` — the feature spec: model name, ``checkpoint_sha256`` of the
  backbone's ``model.pt``, ``pooling`` (``mean`` of the frame features),
  ``embedding_dim``, the classifier kind.

:func:`build_head` checks every type, shape and value before a head exists
(a folder anyone may have edited must never crash a request): a broken head
is ``head_invalid`` (HTTP 422). Applying a head checks the backbone: a head
applied to another model's features would give confident nonsense, so a
checkpoint-hash mismatch is :class:`errors.HeadMismatchError`
(``head_mismatch``, HTTP 409), and a head of the right backbone but the wrong
feature width is ``head_invalid``. Applying a head is numpy only: the
utterance scores come from the head on the mean-pooled features (the same
pooling the nine-class head uses), frame scores from the head on each frame's
features, smoothed and segmented like the nine-class timeline.

A **regression** head (``spec.json`` ``"kind": "regression"``, format 2; a
format-1 reader refuses it rather than softmax its values) has the same
arrays with no softmax at the end: its outputs are the values of its targets
(``labels.json`` ``labels``: ``arousal``, ``valence`` … — one or more).
:mod:`engine.dimensions` applies it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from emotion2vec_webui.engine.timeline import HOP_S, MIN_SEGMENT_S, frame_scores, merge_short_runs, softmax
from emotion2vec_webui.errors import E2VError, HeadMismatchError
from emotion2vec_webui.labels import EMOTIONS
from emotion2vec_webui.options import HEAD_NAME_RE, check_head_name

FORMAT = 1  # a classification head's spec.json format
REGRESSION_FORMAT = 2  # a regression head's (the newest this version reads)
KINDS = ("classification", "regression")
RESERVED_TARGETS = frozenset({*EMOTIONS, "time_s"})  # frames.csv's columns: a target may not take one
NAME_RE = HEAD_NAME_RE  # options.py: a head's name, defined once
MAX_LABELS = 1000
MAX_LABEL_CHARS = 200
MAX_LAYERS = 16
_SPEC_TEXT = ("model", "model_path", "classifier", "created", "pooling")  # optional string fields of spec.json


def check_name(name: str) -> str:
    """A head name usable as a folder name (letters, digits, ``_ . -``; at most 64), else ``bad_request``."""
    return check_head_name(name, required=True)


class HeadContentError(ValueError):
    """One file of a head folder breaks the head's rules.

    Args:
        file: which file (``labels.json``, ``spec.json``, ``weights.npz``).
        en: what is wrong, in English.
        zh: what is wrong, in Chinese.
    """

    def __init__(self, file: str, en: str, zh: str) -> None:
        super().__init__(f"{file}: {en}")
        self.file, self.en, self.zh = file, en, zh

    def error(self, name: str) -> E2VError:
        """The ``head_invalid`` error of head ``name`` (named by name, never by path)."""
        return E2VError(
            "head_invalid",
            f"Head {name!r} is invalid: {self.file}: {self.en}. Retrain it (or delete the folder). / "
            f"分类头 {name!r} 无效:{self.file}:{self.zh}。请重新训练(或删除该文件夹)。",
        )


@dataclass(frozen=True)
class Head:
    name: str
    labels: list[str]  # class names, output order
    labels_zh: dict[str, str]  # optional Chinese names
    spec: dict  # model, checkpoint_sha256, pooling, embedding_dim, classifier
    mean: np.ndarray  # [D]
    scale: np.ndarray  # [D], no zeros
    layers: list[tuple[np.ndarray, np.ndarray]]  # (W [in, out], b [out]); ReLU between, softmax after
    kind: str = "classification"  # or "regression": labels are targets, outputs their values (no softmax)

    @property
    def embedding_dim(self) -> int:
        """The feature width ``D`` the head takes."""
        return int(self.mean.shape[0])

    def logits(self, features: np.ndarray) -> np.ndarray:
        """Logits ``[..., C]`` for features ``[..., D]``."""
        x = (np.asarray(features, dtype=np.float64) - self.mean) / self.scale
        for i, (w, b) in enumerate(self.layers):
            x = x @ w + b
            if i < len(self.layers) - 1:
                x = np.maximum(x, 0.0)
        return x

    def probs(self, features: np.ndarray) -> np.ndarray:
        return softmax(self.logits(features))

    def label_zh(self, label: str) -> str:
        return self.labels_zh.get(label, label)


def build_head(name: str, labels_doc: object, spec: object, arrays: dict[str, np.ndarray]) -> Head:
    """A head from a folder's parsed contents, every type, shape and value checked.

    Args:
        name: the head's name.
        labels_doc: labels.json, parsed.
        spec: spec.json, parsed.
        arrays: weights.npz's arrays (numeric; :mod:`model.safe_npz` reads them).

    Raises:
        HeadContentError: the first rule broken, with its file.
    """
    spec = _check_spec(spec)
    kind = spec.get("kind", "classification")
    labels, labels_zh = _check_labels(labels_doc, kind)
    mean, scale, layers = _check_arrays(arrays, len(labels), spec.get("embedding_dim"))
    return Head(name, labels, labels_zh, spec, mean, scale, layers, kind)


def _type(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _check_labels(doc: object, kind: str = "classification") -> tuple[list[str], dict[str, str]]:
    def bad(en: str, zh: str) -> HeadContentError:
        return HeadContentError("labels.json", en, zh)

    if not isinstance(doc, dict):
        raise bad(f'must be an object {{"labels": [...], "labels_zh": {{...}}}}, not {_type(doc)}',
                  f'应为 {{"labels": [...], "labels_zh": {{...}}}} 形式的对象,而不是 {_type(doc)}')  # fmt: skip
    labels = doc.get("labels")
    least = 1 if kind == "regression" else 2  # one target is a regression head; one class is no classifier
    if not isinstance(labels, list) or not least <= len(labels) <= MAX_LABELS:
        raise bad(f'"labels" must be a list of {least} to {MAX_LABELS} names',
                  f'"labels" 应为 {least} 到 {MAX_LABELS} 个名称的列表')  # fmt: skip
    if kind == "regression" and RESERVED_TARGETS & set(map(str, labels)):
        taken = ", ".join(sorted(RESERVED_TARGETS & set(map(str, labels))))
        raise bad(f"target {taken} is a frames.csv column of the nine classes: rename it",
                  f"目标 {taken} 与 frames.csv 中九类情感的列重名,请改名")  # fmt: skip
    for label in labels:
        if not isinstance(label, str) or not label.strip() or len(label) > MAX_LABEL_CHARS:
            raise bad(f"label {str(label)[:40]!r} ({_type(label)}) is not a name of 1-{MAX_LABEL_CHARS} characters",
                      f"标签 {str(label)[:40]!r} 不是 1-{MAX_LABEL_CHARS} 个字符的名称")  # fmt: skip
    if len(set(labels)) != len(labels):
        raise bad("a label appears twice", "有重复的标签")
    zh = doc.get("labels_zh") or {}
    if not isinstance(zh, dict) or not all(isinstance(v, str) and len(v) <= MAX_LABEL_CHARS for v in zh.values()):
        raise bad('"labels_zh" must map labels to Chinese names (text)', '"labels_zh" 应为 标签 → 中文名称 的映射')
    return list(labels), {k: v for k, v in zh.items() if k in labels}


def _check_spec(spec: object) -> dict:
    def bad(en: str, zh: str) -> HeadContentError:
        return HeadContentError("spec.json", en, zh)

    if not isinstance(spec, dict):
        raise bad(f"must be an object, not {_type(spec)}", f"应为对象,而不是 {_type(spec)}")
    checkpoint = spec.get("checkpoint_sha256")
    if not isinstance(checkpoint, str) or not 0 < len(checkpoint) <= 128:
        raise bad('"checkpoint_sha256" (the backbone\'s identity) must be text',
                  '"checkpoint_sha256"(主干模型的标识)应为文本')  # fmt: skip
    for key in _SPEC_TEXT:
        if spec.get(key) is not None and not isinstance(spec[key], str):
            raise bad(f'"{key}" must be text, not {_type(spec[key])}', f'"{key}" 应为文本')
    if spec.get("pooling", "mean") != "mean":
        raise bad(f"pooling {spec['pooling'][:40]!r} is not supported (mean only)", "只支持 mean 池化")
    dim = spec.get("embedding_dim")
    if dim is not None and (not isinstance(dim, int) or isinstance(dim, bool) or dim <= 0):
        raise bad('"embedding_dim" must be a positive whole number', '"embedding_dim" 应为正整数')
    version = spec.get("format", FORMAT)
    if not isinstance(version, int) or isinstance(version, bool) or version > REGRESSION_FORMAT:
        raise bad(f"format {str(version)[:20]} is newer than this version reads ({REGRESSION_FORMAT})",
                  f"格式版本 {str(version)[:20]} 比本程序支持的 ({REGRESSION_FORMAT}) 更新")  # fmt: skip
    kind = spec.get("kind", "classification")
    if kind not in KINDS or (kind == "regression" and version < REGRESSION_FORMAT):
        raise bad(f'"kind" must be {" or ".join(KINDS)} (regression from format {REGRESSION_FORMAT})',
                  f'"kind" 应为 {" 或 ".join(KINDS)}(regression 需格式 {REGRESSION_FORMAT})')  # fmt: skip
    return dict(spec)


def _check_arrays(arrays: dict[str, np.ndarray], n_labels: int, spec_dim: int | None):
    def bad(en: str, zh: str) -> HeadContentError:
        return HeadContentError("weights.npz", en, zh)

    n = sum(1 for key in arrays if key.startswith("W"))
    expected = {"mean", "scale"} | {f"W{i}" for i in range(n)} | {f"b{i}" for i in range(n)}
    if set(arrays) != expected or not 1 <= n <= MAX_LAYERS:
        odd = sorted(set(arrays) ^ expected)[:6]
        raise bad(f"must hold mean, scale and layers W0, b0, … (1-{MAX_LAYERS}); missing or unexpected: "
                  f"{', '.join(odd) or 'the layers'}", f"应包含 mean、scale 和 W0、b0 等层;缺少或多余:{', '.join(odd)}")  # fmt: skip
    out = {key: np.asarray(value, dtype=np.float64) for key, value in arrays.items()}
    mean, scale = out["mean"], out["scale"]
    if mean.ndim != 1 or not mean.size or scale.shape != mean.shape:
        raise bad(f"mean {mean.shape} and scale {scale.shape} must be one vector each, of one length",
                  f"mean {mean.shape} 和 scale {scale.shape} 应为等长的向量")  # fmt: skip
    if spec_dim is not None and spec_dim != mean.size:
        raise bad(f"mean has {mean.size} features but spec.json says embedding_dim {spec_dim}",
                  f"mean 有 {mean.size} 维,但 spec.json 的 embedding_dim 为 {spec_dim}")  # fmt: skip
    layers, width = [], mean.size
    for i in range(n):
        w, b = out[f"W{i}"], out[f"b{i}"]
        if w.ndim != 2 or w.shape[0] != width or b.shape != (w.shape[1],) or not w.shape[1]:
            raise bad(f"layer {i}: W{i} {w.shape} and b{i} {b.shape} do not take {width} inputs",
                      f"第 {i} 层:W{i} {w.shape} 与 b{i} {b.shape} 的形状与输入宽度 {width} 不符")  # fmt: skip
        layers.append((w, b))
        width = w.shape[1]
    if width != n_labels:
        raise bad(f"the last layer has {width} outputs for {n_labels} labels",
                  f"最后一层有 {width} 个输出,但有 {n_labels} 个标签")  # fmt: skip
    for key, value in out.items():
        if not np.isfinite(value).all():
            raise bad(f"{key} holds NaN or infinite values", f"{key} 含有 NaN 或无穷大")
    if not np.all(scale != 0):
        raise bad("scale holds zeros (division by zero)", "scale 含有 0(会除以零)")
    return mean, scale, layers


def check_backbone(head: Head, checkpoint: str, model_name: str) -> None:
    """Refuse a head trained on another backbone.

    Raises:
        HeadMismatchError: the checkpoint hashes differ.
    """
    trained = head.spec.get("checkpoint_sha256", "")
    if trained != checkpoint:
        raise HeadMismatchError(
            f"Head {head.name!r} was trained on model {head.spec.get('model', '?')} (checkpoint "
            f"{trained[:12]}…), but the loaded model is {model_name} (checkpoint {checkpoint[:12]}…); its scores "
            f"would be meaningless. Load that model, or retrain the head on this one. / 分类头 {head.name!r} "
            f"是在另一个模型({head.spec.get('model', '?')})上训练的,与当前模型 {model_name} 不匹配;"
            "请加载原模型,或在当前模型上重新训练。"
        )


def check_width(head: Head, embedding_dim: int) -> None:
    """Refuse a head whose feature width is not the model's (a head of the right backbone cannot differ).

    Raises:
        E2VError: ``head_invalid``.
    """
    if embedding_dim and head.embedding_dim != embedding_dim:
        raise HeadContentError(
            "weights.npz",
            f"it takes {head.embedding_dim} features, the model gives {embedding_dim}",
            f"它需要 {head.embedding_dim} 维特征,而模型输出 {embedding_dim} 维",
        ).error(head.name)


def apply_head(head: Head, features: np.ndarray, smoothing_s: float, duration_s: float) -> dict:
    """The ``head`` block of result.json for one clip.

    Args:
        head: a loaded head.
        features: the clip's features, ``[D]`` (utterance) or ``[T, D]`` (frames; also gives a timeline).
        smoothing_s: frame-logit smoothing (E2V_FRAME_SMOOTHING_S), as for the nine classes.
        duration_s: the audio's duration (the last segment ends there).
    """
    if head.kind == "regression":  # its outputs are values, not logits: engine/dimensions.py applies it
        raise E2VError("bad_request", f"Head {head.name!r} is a regression head: it gives values, not labels. / "
                                      f"分类头 {head.name!r} 是回归头:输出数值而非标签。")  # fmt: skip
    features = np.asarray(features)
    check_width(head, int(features.shape[-1]))  # a head-only model reports no width before this
    frames = features if features.ndim == 2 else None
    pooled = features.mean(axis=0) if frames is not None else features
    probs = head.probs(pooled)
    top = int(np.argmax(probs))
    block = {
        "name": head.name,
        "labels": list(head.labels),
        "labels_zh": [head.label_zh(lab) for lab in head.labels],
        "label": head.labels[top],
        "label_zh": head.label_zh(head.labels[top]),
        "confidence": round(float(probs[top]), 6),
        "scores": {lab: round(float(p), 6) for lab, p in zip(head.labels, probs, strict=True)},
        "checkpoint_sha256": head.spec.get("checkpoint_sha256"),
        "frames": None,
        "segments": None,
    }
    if frames is not None and len(frames):
        fprobs = frame_scores(head.logits(frames), smoothing_s, HOP_S)
        block["frames"] = {
            "hop_s": HOP_S,
            "smoothing_s": smoothing_s,
            "labels": list(head.labels),
            "scores": np.round(fprobs, 5).tolist(),
        }
        block["segments"] = head_segments(head, fprobs, duration_s)
    return block


def head_segments(head: Head, scores: np.ndarray, duration_s: float) -> list[dict]:
    """Runs of the head's per-frame top label, short runs merged as in the nine-class timeline."""
    runs = merge_short_runs(scores, max(1, int(round(MIN_SEGMENT_S / HOP_S))))
    out = []
    for k, (lab, start, end) in enumerate(runs):
        mean = scores[start:end].mean(axis=0)
        out.append(
            {
                "start_s": round(start * HOP_S, 3),
                "end_s": round(duration_s if k == len(runs) - 1 else end * HOP_S, 3),
                "label": head.labels[lab],
                "confidence": round(float(mean[lab]), 6),
                "scores": {e: round(float(v), 6) for e, v in zip(head.labels, mean, strict=True)},
            }
        )
    return out
