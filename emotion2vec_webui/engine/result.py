"""What the engine answers: :class:`EmotionResult`, and the one way to build it from frame features.

The engine, its batched path and its long-form path all end here, so a clip's
result is assembled the same way whichever path classified it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from emotion2vec_webui.labels import EMOTIONS
from emotion2vec_webui.options import GRANULARITY

GRANULARITIES = GRANULARITY.values  # options.py, the one definition


@dataclass(frozen=True)
class EmotionResult:
    emotion: str  # top class, English key (one of labels.EMOTIONS)
    confidence: float  # score of the top class
    scores: dict[str, float]  # all nine classes, model order, sum 1
    granularity: str  # "utterance" or "frame"
    embedding: np.ndarray | None  # float32 [D] (utterance) or [T, D] (frame); None when not asked
    frame_logits: np.ndarray | None  # float32 [T, 9] per-frame head outputs (frame granularity)
    num_frames: int  # feature frames the model produced (50 per second)
    inference_s: float  # seconds in the model

    @classmethod
    def from_probs(
        cls,
        probs: np.ndarray,
        granularity: str,
        embedding: np.ndarray | None,
        frame_logits: np.ndarray | None,
        num_frames: int,
        inference_s: float,
    ) -> EmotionResult:
        """Build a result from the nine class probabilities (model order); the argmax is ours."""
        top = int(np.argmax(probs))
        return cls(
            emotion=EMOTIONS[top],
            confidence=float(probs[top]),
            scores={k: float(p) for k, p in zip(EMOTIONS, probs, strict=True)},
            granularity=granularity,
            embedding=embedding,
            frame_logits=frame_logits,
            num_frames=num_frames,
            inference_s=inference_s,
        )


def result_from_features(head, feats, granularity: str, extract_embedding: bool, elapsed: float) -> EmotionResult:
    """An :class:`EmotionResult` from one clip's frame features ``[T, D]`` (a torch tensor).

    Args:
        head: features ``[..., D]`` → logits ``[..., 9]`` (``EmotionEngine.head_logits``).
        feats: the clip's frame features.
        granularity: ``utterance`` or ``frame`` (adds per-frame logits and a ``[T, D]`` embedding).
        extract_embedding: return the embedding.
        elapsed: seconds the model took for this clip.
    """
    if isinstance(feats, np.ndarray):  # an ONNX export's engine: numpy throughout, no torch
        pooled = feats.mean(axis=0)
        probs = softmax(head(pooled).astype(np.float64))
        frame_logits = head(feats) if granularity == "frame" else None
        embedding = None
        if extract_embedding:
            embedding = (feats if granularity == "frame" else pooled).astype(np.float32)
        return EmotionResult.from_probs(probs, granularity, embedding, frame_logits, int(feats.shape[0]), elapsed)
    import torch

    pooled = feats.mean(dim=0)
    probs = torch.softmax(head(pooled), dim=-1).cpu().numpy().astype(np.float64)
    frame_logits = head(feats).cpu().numpy() if granularity == "frame" else None
    embedding = None
    if extract_embedding:
        embedding = (feats if granularity == "frame" else pooled).cpu().numpy().astype(np.float32)
    return EmotionResult.from_probs(probs, granularity, embedding, frame_logits, int(feats.shape[0]), elapsed)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis (float64 in, float64 out)."""
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def check_waveforms(waveforms, granularity: str) -> None:
    """Refuse what no path can classify: an unknown granularity, or a clip shorter than one frame."""
    from emotion2vec_webui.audio.format import MIN_MODEL_SAMPLES
    from emotion2vec_webui.errors import E2VError

    if granularity not in GRANULARITIES:
        raise E2VError("bad_request", f"granularity must be 'utterance' or 'frame', not {granularity!r}")
    for w in waveforms:
        if w.ndim != 1 or w.size < MIN_MODEL_SAMPLES:
            raise E2VError("audio_too_short", f"each waveform must be 1-D with at least {MIN_MODEL_SAMPLES} samples")
