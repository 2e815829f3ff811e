"""How alike two clips sound: cosine similarity of their utterance embeddings, and both emotions.

The utterance embedding is the mean of the model's frame features (the same
vector the classifier head sees), so two clips with a high cosine also get
similar scores. Used by ``emotion2vec-webui similarity A B``,
``POST /api/v1/similarity`` and the UI's similarity tab; nothing is written
to disk.
"""

from __future__ import annotations

import numpy as np


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
        ``{"cosine", "a": {emotion, confidence, scores, source_name, duration_s}, "b": {…}}``.
    """
    ra = engine.recognize(a.waveform, "utterance", True, window_s=window_s)
    rb = engine.recognize(b.waveform, "utterance", True, window_s=window_s)
    return {
        "cosine": round(cosine(ra.embedding, rb.embedding), 6),
        "a": _clip_summary(ra, a),
        "b": _clip_summary(rb, b),
    }


def similarity_from_sources(service, a_source, a_name: str | None, b_source, b_name: str | None) -> dict:
    """Decode two paths or byte strings and compare them on the service's inference worker.

    Args:
        service: a :class:`service.Service`.
        a_source: path or bytes of the first clip.
        a_name: its name for messages and the result (None: the path's file name).
        b_source: path or bytes of the second clip.
        b_name: its name.

    Returns:
        See :func:`similarity_decoded`.

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
    return service.call(lambda engine: similarity_decoded(engine, a, b, window_s))


