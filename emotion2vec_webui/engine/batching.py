"""Length-bucketed batched inference whose results equal one-by-one calls.

Padding a batch changes emotion2vec's output unless two things are masked
(upstream emotion2vec #37: "padding changed the pooled embeddings"):

1. attention must ignore padded frames: FunASR's ``extract_features`` does
   this when given a ``padding_mask`` (sample-level, True = padding; it
   converts it to frames with the conv front-end's length formula);
2. the convolutional positional encoder (five grouped ``Conv1d`` layers with
   ``padding=k//2``) must see zeros past each clip's end, as it does for a
   lone clip. FunASR does not mask there, so the frames near each clip's end
   mixed in features computed from padding. For the duration of a batched
   call, a forward pre-hook on each of those convolutions zeroes the padded
   frames of its input (on CPU, where :class:`fastpath.PosConv` runs the
   encoder, its ``padding`` mask does the same).

With both, the first ``T_i`` frames of clip ``i`` equal its unbatched frames
(to float rounding: ~1e-6), and mean pooling runs over those frames only.
Clips are sorted by length and grouped so that padding stays below
``max_padding`` of a bucket's compute; a bucket of one clip, and audio long
enough to be windowed, take the engine's ordinary path.

On CPU, batching does not pay (padded batches ran at 0.8x sequential speed
on a 2-core machine): the engine uses it on CUDA, and for batch jobs.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from emotion2vec_webui.audio.format import SAMPLE_RATE
from emotion2vec_webui.engine.result import check_waveforms, result_from_features


def plan_buckets(lengths: Sequence[int], max_batch: int = 8, max_padding: float = 0.1) -> list[list[int]]:
    """Group indices of ``lengths`` into buckets of similar length.

    Args:
        lengths: samples per clip.
        max_batch: most clips per bucket.
        max_padding: most padding allowed, as a fraction of a bucket's
            longest clip (0 = only equal lengths share a bucket).

    Returns:
        Buckets of indices into ``lengths``, each sorted by length, covering
        every index once.
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    buckets: list[list[int]] = []
    for i in order:
        if buckets:
            bucket = buckets[-1]
            shortest = lengths[bucket[0]]
            if len(bucket) < max_batch and (lengths[i] - shortest) <= max_padding * lengths[i]:
                bucket.append(i)
                continue
        buckets.append([i])
    return buckets


def _mask_positional_encoder(module, mask):
    """Make the positional encoder's convolutions see zeros on padded frames (``mask`` ``[B, T]``, True = padding).

    Returns:
        The function that undoes it.
    """
    import torch

    from emotion2vec_webui.model.fastpath import PosConv

    encoder = module.modality_encoders["AUDIO"].relative_positional_encoder
    if encoder is None:
        return lambda: None

    def zero_padded_frames(_conv, inputs):  # FunASR's convolutions (and PosConv's reduced-precision path)
        (x,) = inputs  # [B, C, T]
        return (x * (~mask[:, None, : x.shape[-1]]).to(x.dtype),)

    hooks = [
        m.register_forward_pre_hook(zero_padded_frames) for m in encoder.modules() if isinstance(m, torch.nn.Conv1d)
    ]
    if isinstance(encoder, PosConv):
        encoder.padding = mask

    def undo() -> None:
        for hook in hooks:
            hook.remove()
        if isinstance(encoder, PosConv):
            encoder.padding = None

    return undo


def padded_features(engine, waveforms: Sequence[np.ndarray]) -> list:
    """Frame features of several clips in one padded forward pass.

    Args:
        engine: a loaded :class:`engine.EmotionEngine` (the caller holds its lock).
        waveforms: 1-D float32 16 kHz clips.

    Returns:
        One float32 tensor ``[T_i, D]`` per clip, equal to
        ``engine.frame_features(waveforms[i])``.
    """
    import torch
    import torch.nn.functional as F

    module = engine.module
    device = engine.info.device
    longest = max(len(w) for w in waveforms)
    source = torch.zeros(len(waveforms), longest, dtype=torch.float32)
    padding = torch.ones(len(waveforms), longest, dtype=torch.bool)
    for i, w in enumerate(waveforms):
        clip = torch.from_numpy(np.ascontiguousarray(w, dtype=np.float32))
        if module.cfg.normalize:  # per clip, before padding, as a lone clip is normalised
            clip = F.layer_norm(clip, clip.shape)
        source[i, : len(w)] = clip
        padding[i, : len(w)] = False
    source, padding = source.to(device), padding.to(device)

    encoder = module.modality_encoders["AUDIO"]
    undo = None
    try:
        with torch.inference_mode():
            undo = _mask_positional_encoder(module, _frame_padding(encoder, padding, longest))
            with engine.autocast():
                out = module.extract_features(source, padding_mask=padding)
    finally:
        if undo is not None:
            undo()
    x = out["x"].float()
    mask = out["padding_mask"]
    lengths = (~mask).sum(dim=1).tolist() if mask is not None else [x.shape[1]] * x.shape[0]
    return [x[i, : int(n)] for i, n in enumerate(lengths)]


def _frame_padding(encoder, padding, longest: int):
    """Frame-level padding mask ``[B, T]`` (True = padding), as FunASR derives it from samples."""
    import torch

    frames = longest
    for _, kernel, stride in encoder.feature_enc_layers:
        frames = (frames - kernel) // stride + 1
    dummy = torch.zeros(padding.shape[0], frames, 1, device=padding.device)
    return encoder.convert_padding_mask(dummy, padding)


def recognize_batch(
    engine,
    waveforms: Sequence[np.ndarray],
    granularity: str = "utterance",
    extract_embedding: bool = True,
    max_batch: int = 8,
    max_padding: float = 0.1,
    *,
    window_s: float = 30.0,
) -> list:
    """Classify several waveforms, batched by length; results equal one-by-one ``engine.recognize``.

    Args:
        engine: a loaded :class:`engine.EmotionEngine`.
        waveforms: 1-D float32 16 kHz clips.
        granularity: ``utterance`` or ``frame``.
        extract_embedding: return embeddings.
        max_batch: most clips per forward pass.
        max_padding: most padding in a bucket, as a fraction of its longest clip.
        window_s: clips longer than this take the engine's windowed path (``E2V_WINDOW_S``).

    Returns:
        One :class:`engine.EmotionResult` per waveform, in input order.
    """
    check_waveforms(waveforms, granularity)
    results: list = [None] * len(waveforms)
    short = [i for i, w in enumerate(waveforms) if not (window_s > 0 and w.size > window_s * SAMPLE_RATE)]
    for i in set(range(len(waveforms))) - set(short):  # long audio: the engine's windowed path
        results[i] = engine.recognize(waveforms[i], granularity, extract_embedding, window_s)
    for bucket in plan_buckets([len(waveforms[i]) for i in short], max_batch, max_padding):
        indices = [short[j] for j in bucket]
        if len(indices) == 1:
            results[indices[0]] = engine.recognize(waveforms[indices[0]], granularity, extract_embedding, window_s)
            continue
        with engine.lock:
            t0 = time.perf_counter()
            feats = padded_features(engine, [waveforms[i] for i in indices])
            elapsed = (time.perf_counter() - t0) / len(indices)
            for i, f in zip(indices, feats, strict=True):
                results[i] = result_from_features(engine.head_logits, f, granularity, extract_embedding, elapsed)
    return results
