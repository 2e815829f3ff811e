"""Utterance features for training heads, cached on disk per (file content, backbone checkpoint).

``train-head`` needs one pooled feature vector per labelled clip (the mean of
the frame features: the input of the nine-class head, and of a trained one),
plus the nine-class scores for the baseline. Extraction is the slow part, so
each clip's answer is kept in ``<cache>/<checkpoint sha256[:16]>/<file sha256>.npz``:
a second run on the same files with the same model does no inference (and
does not even load the model), whatever the files are called or where they lie.
A different model (another checkpoint hash) never sees these features.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.files import atomic_open
from emotion2vec_webui.jobs.inputs import BatchItem

log = logging.getLogger(__name__)

Progress = Callable[[float, str], None]  # (fraction done, message)
_RAVDESS_SPEAKER = re.compile(r"^\d{2}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2}-(\d{2})$")
_CREMAD_SPEAKER = re.compile(r"^(\d{4})_[A-Z]{3}_[A-Z]{3}_[A-Z]{1,2}$")


@dataclass(frozen=True)
class Backbone:
    name: str  # model display name
    path: str  # model directory
    checkpoint_sha256: str  # identity of model.pt

    @classmethod
    def of_engine(cls, engine) -> Backbone:
        """The backbone of a loaded engine (the server's faces: the model is loaded already)."""
        from emotion2vec_webui.runs.stores.head_store import engine_hash

        return cls(engine.info.name, engine.info.path, engine_hash(engine))


def lazy_backbone(settings) -> tuple[Backbone, Callable]:
    """The configured model as a :class:`Backbone` without loading it, and an ``execute`` that loads it once needed.

    The command line's ``train-head`` and ``calibrate`` run on it: the model loads on the first clip not in the
    feature cache, so a second run on the same files loads no model at all.

    Returns:
        (backbone, ``execute(fn)`` → ``fn(engine)``).
    """
    from emotion2vec_webui.engine.engine import EmotionEngine
    from emotion2vec_webui.model.resolve import resolve_model
    from emotion2vec_webui.runs.stores.head_store import checkpoint_sha256

    resolved = resolve_model(settings.model, settings.hub)
    backbone = Backbone(resolved.path.name, str(resolved.path), checkpoint_sha256(resolved.path))
    engine = None

    def execute(fn):  # loaded on the first clip not in the feature cache
        nonlocal engine
        if engine is None:
            engine = EmotionEngine.from_settings(settings)
        return fn(engine)

    return backbone, execute


@dataclass(frozen=True)
class Features:
    pooled: np.ndarray  # [N, D] float32, mean-pooled utterance features
    nine: np.ndarray  # [N, 9] nine-class probabilities (EMOTIONS order)
    cached: int  # how many came from the cache
    extracted: int  # how many needed inference
    seconds: float  # wall time of this step


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def speaker_of(path: str | os.PathLike) -> str | None:
    """The speaker a RAVDESS (actor, last field) or CREMA-D (first field) file name encodes, or None."""
    stem = Path(path).stem
    m = _RAVDESS_SPEAKER.match(stem) or _CREMAD_SPEAKER.match(stem)
    return m.group(1) if m else None


def speaker_groups(speakers: list[str | None]) -> np.ndarray | None:
    """The folds' groups: each clip's speaker when every clip has one and there are two or more, else None."""
    return np.array(speakers) if all(speakers) and len(set(speakers)) >= 2 else None


class FeatureCache:
    """``<root>/<checkpoint[:16]>/<content sha256>.npz`` holding ``pooled`` [D] and ``nine`` [9]."""

    def __init__(self, root: str | os.PathLike, checkpoint_sha256: str) -> None:
        self.folder = Path(root) / checkpoint_sha256[:16]

    def path(self, content_hash: str) -> Path:
        return self.folder / f"{content_hash}.npz"

    def get(self, content_hash: str) -> tuple[np.ndarray, np.ndarray] | None:
        path = self.path(content_hash)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                return z["pooled"].astype(np.float32), z["nine"].astype(np.float64)
        except (OSError, ValueError, KeyError):  # a damaged entry is recomputed
            return None

    def put(self, content_hash: str, pooled: np.ndarray, nine: np.ndarray) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        with atomic_open(self.path(content_hash), "wb", encoding=None) as fh:
            np.savez(fh, pooled=np.asarray(pooled, np.float32), nine=np.asarray(nine, np.float64))


def extract_features(
    items: list[BatchItem],
    backbone: Backbone,
    execute: Callable,
    settings,
    cache_root: str | os.PathLike,
    progress: Progress | None = None,
) -> Features:
    """One pooled feature vector and the nine-class scores per item, from the cache or the model.

    Args:
        items: labelled inputs (:func:`jobs.inputs.discover_inputs`).
        backbone: the model's identity (the cache key with each file's content hash).
        execute: ``execute(fn)`` calls ``fn(engine)`` (the server's inference queue, or the CLI's lazy engine);
            called only for files not in the cache.
        settings: decoding limits and ``window_s``.
        cache_root: the feature cache's root folder.
        progress: told of each file.

    Raises:
        E2VError: a file cannot be decoded (named in the message).
    """
    from emotion2vec_webui.audio.decode import AudioLimits
    from emotion2vec_webui.audio.decoder_pool import decode_guarded
    from emotion2vec_webui.labels import EMOTIONS

    t0 = time.perf_counter()
    cache = FeatureCache(cache_root, backbone.checkpoint_sha256)
    limits = AudioLimits.from_settings(settings)
    pooled, nine = [], []
    cached = 0
    for i, item in enumerate(items):
        key = file_sha256(item.file)
        hit = cache.get(key)
        if hit is None:
            try:
                # a background job waits its turn for a decoder instead of failing `overloaded` at a busy moment
                decoded = decode_guarded(item.file, source_name=Path(item.file).name, limits=limits, wait_s=math.inf)
            except E2VError as exc:
                raise E2VError(exc.code, f"{item.file}: {exc.message}") from exc

            def classify(engine, wave=decoded.waveform):
                r = engine.recognize(wave, "utterance", True, settings.window_s)
                return r.embedding, np.array([r.scores[e] for e in EMOTIONS])

            emb, probs = execute(classify)
            cache.put(key, emb, probs)
            hit = (np.asarray(emb, np.float32), probs)
        else:
            cached += 1
        pooled.append(hit[0])
        nine.append(hit[1])
        if progress:
            progress((i + 1) / len(items), f"features {i + 1}/{len(items)} ({cached} from the cache)")
    seconds = time.perf_counter() - t0
    return Features(np.stack(pooled), np.stack(nine), cached, len(items) - cached, seconds)
