"""How alike two clips sound: two numbers, what they mean, both emotions, and a record of the comparison.

* ``cosine``: cosine similarity of the utterance embeddings (the mean of the
  model's frame features, the vector the classifier head sees). Raw
  emotion2vec embeddings are close for most speech: 0.9 or more is common
  even between different emotions (emotion2vec issue #66), so one cosine on
  its own says little; compare cosines with each other.
* ``scores_similarity``: how alike the two nine-class score distributions
  are, ``1 − JSD`` (Jensen–Shannon divergence, base 2): 1 = the same
  distribution, 0 = no class in common. ``scores_cosine`` is the cosine of
  the two score vectors. These read on the emotions themselves.

Every comparison is kept as ``<outputs>/similarity/similarity_YYYYMMDD_HHMMSS[_N].json``
(written atomically; :func:`list_records`), which the UI's History lists.
Used by ``emotion2vec-webui similarity A B``, ``POST /api/v1/similarity`` and
the UI's Similarity tab (and its ``/similarity`` Gradio API endpoint).
"""

from __future__ import annotations

import json
import os
import re
from datetime import datetime
from pathlib import Path

import numpy as np

from emotion2vec_webui.files import write_atomic
from emotion2vec_webui.labels import EMOTIONS

RECORDS_DIR = "similarity"  # under the outputs root
RECORD_ID_RE = re.compile(r"^similarity_\d{8}_\d{6}(_\d+)?$")
# What the numbers mean, for every face (English, Chinese).
MEANING = (
    "cosine: cosine similarity of the two utterance embeddings (1 = same direction, 0 = unrelated). Raw "
    "emotion2vec embeddings are close for most speech — 0.9 or more is common even across different emotions "
    "(emotion2vec issue #66) — so compare cosines with each other rather than reading one alone. "
    "Score similarity: how alike the two nine-class emotion distributions are (1 − Jensen–Shannon divergence; "
    "1 = the same distribution, 0 = nothing in common).",
    "余弦相似度：两段话语级嵌入的余弦（1 = 方向相同，0 = 无关）。emotion2vec 的原始嵌入对大多数语音都很接近——"
    "即使情绪不同，0.9 以上也很常见（emotion2vec issue #66）——请相互比较，不要单看一个数。"
    "情绪分布相似度：两段九类情绪得分分布的相似程度（1 − Jensen–Shannon 散度；1 = 分布相同，0 = 毫无重叠）。",
)
# (lowest scores_similarity, English, Chinese), first match wins
VERDICTS = (
    (0.9, "very similar emotion profiles", "情绪分布非常相似"),
    (0.7, "similar emotion profiles", "情绪分布相似"),
    (0.4, "somewhat different emotion profiles", "情绪分布有些不同"),
    (0.0, "different emotion profiles", "情绪分布不同"),
)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two vectors, in ``[-1, 1]`` (0 when either is all zeros)."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"embeddings differ in shape: {a.shape} vs {b.shape}")
    denom = float(np.linalg.norm(a) * np.linalg.norm(b))
    if denom == 0.0:
        return 0.0
    return float(np.clip(np.dot(a, b) / denom, -1.0, 1.0))


def js_similarity(p, q) -> float:
    """``1 − JSD(p, q)`` with base-2 logs: 1 for equal distributions, 0 for disjoint ones.

    Args:
        p: non-negative weights (normalised here).
        q: the same length.
    """
    p = np.clip(np.asarray(p, dtype=np.float64).ravel(), 0, None)
    q = np.clip(np.asarray(q, dtype=np.float64).ravel(), 0, None)
    if p.shape != q.shape or p.sum() <= 0 or q.sum() <= 0:
        raise ValueError("two non-empty distributions of the same length are needed")
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def kl(x: np.ndarray) -> float:
        nz = x > 0
        return float(np.sum(x[nz] * np.log2(x[nz] / m[nz])))

    return float(np.clip(1.0 - (kl(p) + kl(q)) / 2, 0.0, 1.0))


def verdict(scores_similarity: float) -> tuple[str, str]:
    """A few words for a score similarity, (English, Chinese)."""
    for floor, en, zh in VERDICTS:
        if scores_similarity >= floor:
            return en, zh
    return VERDICTS[-1][1:]


def compare_results(ra, rb, a, b) -> dict:
    """The comparison object of two engine results (``ra``, ``rb``) of decoded clips ``a``, ``b``."""
    pa = [ra.scores[k] for k in EMOTIONS]
    pb = [rb.scores[k] for k in EMOTIONS]
    scores_similarity = js_similarity(pa, pb)
    en, zh = verdict(scores_similarity)
    return {
        "cosine": round(cosine(ra.embedding, rb.embedding), 6),
        "scores_similarity": round(scores_similarity, 6),
        "scores_cosine": round(cosine(pa, pb), 6),
        "same_emotion": ra.emotion == rb.emotion,
        "verdict": en,
        "verdict_zh": zh,
        "meaning": MEANING[0],
        "meaning_zh": MEANING[1],
        "a": _clip_summary(ra, a),
        "b": _clip_summary(rb, b),
    }


def _clip_summary(result, decoded) -> dict:
    return {
        "emotion": result.emotion,
        "confidence": round(result.confidence, 6),
        "scores": {k: round(v, 6) for k, v in result.scores.items()},
        "source_name": decoded.source_name,
        "duration_s": round(decoded.duration_s, 4),
    }


def similarity_decoded(engine, a, b, window_s: float = 30.0) -> dict:
    """Compare two decoded clips with a loaded engine.

    Args:
        engine: a loaded :class:`engine.EmotionEngine`.
        a: the first clip (:class:`audio.DecodedAudio`).
        b: the second clip.
        window_s: clips longer than this are processed in windows.

    Returns:
        ``{"cosine", "scores_similarity", "scores_cosine", "same_emotion", "verdict", "verdict_zh",
        "meaning", "meaning_zh", "a": {emotion, confidence, scores, source_name, duration_s}, "b": {…}}``.
    """
    ra = engine.recognize(a.waveform, "utterance", True, window_s=window_s)
    rb = engine.recognize(b.waveform, "utterance", True, window_s=window_s)
    return compare_results(ra, rb, a, b)


def record_similarity(root: str | os.PathLike, out: dict, model: str | None = None) -> str:
    """Keep one comparison as ``<root>/similarity/similarity_YYYYMMDD_HHMMSS[_N].json`` (atomic).

    Args:
        root: the outputs root.
        out: from :func:`similarity_decoded`.
        model: the model's name, for the record.

    Returns:
        The record's id (its file name without ``.json``).
    """
    folder = Path(root) / RECORDS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    when = datetime.now().astimezone()
    base = when.strftime("similarity_%Y%m%d_%H%M%S")
    for n in range(10_000):
        record_id = base if n == 0 else f"{base}_{n}"
        path = folder / f"{record_id}.json"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)  # claims the name
        except FileExistsError:
            continue
        os.close(fd)
        record = {"id": record_id, "timestamp": when.isoformat(timespec="seconds"), "model": model, **out}
        write_atomic(path, json.dumps(record, ensure_ascii=False, indent=2) + "\n")
        return record_id
    raise RuntimeError(f"no free similarity record name in {folder}")


def list_records(root: str | os.PathLike, limit: int | None = None) -> list[dict]:
    """Kept comparisons, newest first (unreadable files are skipped)."""
    folder = Path(root) / RECORDS_DIR
    if not folder.is_dir():
        return []
    names = sorted((p.stem for p in folder.glob("similarity_*.json") if RECORD_ID_RE.match(p.stem)), reverse=True)
    out = []
    for name in names:
        record = read_record(root, name)
        if record is not None:
            out.append(record)
            if limit is not None and len(out) >= limit:
                break
    return out


def read_record(root: str | os.PathLike, record_id: str) -> dict | None:
    """One kept comparison by id (validated; None when invalid, absent or unreadable)."""
    if not RECORD_ID_RE.match(record_id or ""):
        return None
    try:
        return json.loads((Path(root) / RECORDS_DIR / f"{record_id}.json").read_text("utf-8"))
    except (OSError, ValueError):
        return None


def similarity_from_sources(service, a_source, a_name: str | None, b_source, b_name: str | None) -> dict:
    """Decode two paths or byte strings and compare them on the service's inference worker.

    Args:
        service: a :class:`service.Service`.
        a_source: path or bytes of the first clip.
        a_name: its name for messages and the result (None: the path's file name).
        b_source: path or bytes of the second clip.
        b_name: its name.

    Returns:
        See :func:`similarity_decoded`, plus ``record``: the id of the kept comparison.

    Raises:
        E2VError: audio errors (the message names the clip), ``model_unavailable``, ``overloaded``.
    """
    from emotion2vec_webui.audio.decode import AudioLimits
    from emotion2vec_webui.audio.decoder_pool import decode_guarded

    _ = service.engine  # fail fast (model_unavailable) before decoding
    limits = AudioLimits.from_settings(service.settings)
    a = decode_guarded(a_source, source_name=a_name, limits=limits)
    b = decode_guarded(b_source, source_name=b_name, limits=limits)
    window_s = service.settings.window_s
    out = service.call(lambda engine: similarity_decoded(engine, a, b, window_s))
    model = getattr(getattr(service.status, "info", None), "name", None)
    return {**out, "record": record_similarity(service.settings.output_dir, out, model)}


