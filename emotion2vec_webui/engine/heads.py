"""Trained classifier heads: one's own labels on emotion2vec features, beside the nine built-in classes.

A head is a small folder ``<E2V_HEADS_DIR>/<name>/`` (``jobs/train_head.py`` writes it):

* ``weights.npz`` — ``mean`` and ``scale`` (the standardisation), then dense
  layers ``W0, b0, W1, b1, …`` (ReLU between them), softmax at the end. Plain
  arrays: loading runs no pickle and needs no scikit-learn.
* ``labels.json`` — ``{"labels": [...], "labels_zh": {label: 中文}}``.
* ``spec.json`` — the feature spec: model name, ``checkpoint_sha256`` of the
  backbone's ``model.pt``, ``pooling`` (``mean`` of the frame features),
  ``embedding_dim``, the classifier kind.
* ``report.json``, ``confusion_matrix.csv`` / ``.png``, ``command.txt`` — the
  training report and the exact command that built it.

Loading checks the backbone: a head applied to another model's features would
give confident nonsense, so a checkpoint-hash mismatch is a
:class:`errors.HeadMismatchError` (``head_mismatch``, HTTP 409), never a
silent wrong answer. Applying a head is numpy only: the utterance scores come
from the head on the mean-pooled features (the same pooling the nine-class
head uses), frame scores from the head on each frame's features, smoothed and
segmented like the nine-class timeline.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emotion2vec_webui.engine.timeline import HOP_S, MIN_SEGMENT_S, frame_scores, merge_short_runs, softmax
from emotion2vec_webui.errors import E2VError, HeadMismatchError

FORMAT = 1
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
WEIGHTS, LABELS, SPEC, REPORT, COMMAND = "weights.npz", "labels.json", "spec.json", "report.json", "command.txt"

_hash_lock = threading.Lock()
_hashes: dict[tuple[str, int, int], str] = {}
_heads_lock = threading.Lock()
_heads: dict[tuple[str, int], Head] = {}


BACKBONE_FILES = ("model.pt", "model.onnx")  # a FunASR directory, or an ``export`` folder (its own identity)


def checkpoint_sha256(model_dir: str | os.PathLike) -> str:
    """SHA-256 of a model directory's ``model.pt`` (the backbone's identity), memoised per (path, size, mtime).

    An ONNX ``export`` folder has no ``model.pt``: its ``model.onnx`` identifies it (heads trained on it fit it).

    Raises:
        E2VError: ``model_unavailable`` when the folder holds neither.
    """
    found = [Path(model_dir) / name for name in BACKBONE_FILES if (Path(model_dir) / name).is_file()]
    if not found:
        raise E2VError(
            "model_unavailable",
            f"{model_dir} holds no model.pt or model.onnx to identify the backbone for a head. / 找不到模型权重文件。",
        )
    path = found[0]
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    with _hash_lock:
        if key in _hashes:
            return _hashes[key]
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    value = digest.hexdigest()
    with _hash_lock:
        _hashes[key] = value
    return value


def engine_hash(engine) -> str:
    """The checkpoint hash of a loaded engine's backbone."""
    return checkpoint_sha256(engine.info.path)


def check_name(name: str) -> str:
    """A head name usable as a folder name (letters, digits, ``_ . -``; at most 64), else ``bad_request``."""
    name = str(name or "").strip()
    if not NAME_RE.match(name) or ".." in name:
        raise E2VError(
            "bad_request",
            f"Head name {name!r} must be 1-64 letters, digits, '_', '.' or '-' (starting with a letter or digit). / "
            f"分类头名称 {name!r} 只能包含字母、数字、“_”“.”“-”(1-64 个字符)。",
        )
    return name


@dataclass(frozen=True)
class Head:
    name: str
    labels: list[str]  # class names, output order
    labels_zh: dict[str, str]  # optional Chinese names
    spec: dict  # model, checkpoint_sha256, pooling, embedding_dim, classifier
    mean: np.ndarray  # [D]
    scale: np.ndarray  # [D]
    layers: list[tuple[np.ndarray, np.ndarray]]  # (W [in, out], b [out]); ReLU between, softmax after

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


def head_dir(heads_dir: str | os.PathLike, name: str) -> Path:
    return Path(heads_dir) / check_name(name)


def load_head(heads_dir: str | os.PathLike, name: str) -> Head:
    """Read ``<heads_dir>/<name>/`` (memoised until its weights change).

    Raises:
        E2VError: ``not_found`` (no such head) or ``bad_request`` (a broken folder).
    """
    folder = head_dir(heads_dir, name)
    weights = folder / WEIGHTS
    try:
        st = weights.stat()
    except OSError:
        known = ", ".join(h["name"] for h in list_heads(heads_dir)) or "none"
        raise E2VError(
            "not_found",
            f"No trained head {name!r} in {Path(heads_dir)} (known: {known}); train one with "
            f"`emotion2vec-webui train-head DATA --name {name}`. / 没有名为 {name!r} 的分类头,请先训练。",
        ) from None
    key = (str(folder.resolve()), st.st_mtime_ns)
    with _heads_lock:
        if key in _heads:
            return _heads[key]
    try:
        labels = json.loads((folder / LABELS).read_text("utf-8"))
        spec = json.loads((folder / SPEC).read_text("utf-8"))
        with np.load(weights, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        n = sum(1 for k in arrays if k.startswith("W"))
        layers = [(arrays[f"W{i}"].astype(np.float64), arrays[f"b{i}"].astype(np.float64)) for i in range(n)]
        head = Head(
            name=name,
            labels=list(labels["labels"]),
            labels_zh=dict(labels.get("labels_zh") or {}),
            spec=spec,
            mean=arrays["mean"].astype(np.float64),
            scale=arrays["scale"].astype(np.float64),
            layers=layers,
        )
        if not layers or layers[-1][0].shape[1] != len(head.labels):
            raise ValueError("the last layer's width differs from the number of labels")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise E2VError(
            "bad_request", f"Head {name!r} in {folder} is broken: {exc}. / 分类头 {name!r} 已损坏。"
        ) from exc
    with _heads_lock:
        _heads[key] = head
    return head


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


def load_for_engine(heads_dir: str | os.PathLike, name: str, engine) -> Head:
    """Load a head and check it against ``engine``'s backbone (``not_found`` / ``head_mismatch``)."""
    head = load_head(heads_dir, name)
    check_backbone(head, engine_hash(engine), engine.info.name)
    return head


def list_heads(heads_dir: str | os.PathLike) -> list[dict]:
    """Every head folder under ``heads_dir``: name, labels, spec and the report's headline figures."""
    root = Path(heads_dir)
    out = []
    if not root.is_dir():
        return out
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and NAME_RE.match(p.name)):
        if not (folder / WEIGHTS).is_file():
            continue
        try:
            labels = json.loads((folder / LABELS).read_text("utf-8"))
            spec = json.loads((folder / SPEC).read_text("utf-8"))
            report = json.loads((folder / REPORT).read_text("utf-8")) if (folder / REPORT).is_file() else {}
        except (OSError, ValueError):
            continue
        out.append(
            {
                "name": folder.name,
                "labels": labels.get("labels", []),
                "labels_zh": labels.get("labels_zh") or {},
                "model": spec.get("model"),
                "checkpoint_sha256": spec.get("checkpoint_sha256"),
                "classifier": spec.get("classifier"),
                "n": report.get("n"),
                "cv_accuracy": report.get("cv_accuracy"),
                "cv_f1_macro": report.get("cv_f1_macro"),
                "created": spec.get("created"),
            }
        )
    return out


def delete_head(heads_dir: str | os.PathLike, name: str) -> None:
    """Remove a head folder (``not_found`` when absent)."""
    folder = head_dir(heads_dir, name)
    if not (folder / WEIGHTS).is_file():
        raise E2VError("not_found", f"No trained head {name!r}. / 没有名为 {name!r} 的分类头。")
    shutil.rmtree(folder)


def apply_head(head: Head, features: np.ndarray, smoothing_s: float, duration_s: float) -> dict:
    """The ``head`` block of result.json for one clip.

    Args:
        head: a loaded head.
        features: the clip's features, ``[D]`` (utterance) or ``[T, D]`` (frames; also gives a timeline).
        smoothing_s: frame-logit smoothing (E2V_FRAME_SMOOTHING_S), as for the nine classes.
        duration_s: the audio's duration (the last segment ends there).
    """
    features = np.asarray(features)
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
