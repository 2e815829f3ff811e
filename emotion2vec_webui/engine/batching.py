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

Whether batching pays is a per device and precision question, answered by
measurement (``runs/inference/scheduler.py`` holds the figures): on a 2-core CPU the
large model in fp32 ran 1.1-1.2x faster in batches of 4-8 equal clips, in
int8 no faster (0.75-0.99x); on a GPU batches are the whole game. On CUDA the
padded batch is staged in pinned host memory and copied without blocking
(:func:`to_device`); :func:`bucket_audio_s` sizes a batch from the device's
free memory.
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
    pin = pinned(device)  # CUDA: page-locked host memory, copied to the device without blocking
    source = torch.zeros(len(waveforms), longest, dtype=torch.float32, pin_memory=pin)
    padding = torch.ones(len(waveforms), longest, dtype=torch.bool, pin_memory=pin)
    for i, w in enumerate(waveforms):
        clip = torch.from_numpy(np.ascontiguousarray(w, dtype=np.float32))
        if module.cfg.normalize:  # per clip, before padding, as a lone clip is normalised
            clip = F.layer_norm(clip, clip.shape)
        source[i, : len(w)] = clip
        padding[i, : len(w)] = False
    source, padding = to_device(source, device), to_device(padding, device)

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


def pinned(device: str) -> bool:
    """Whether a batch bound for ``device`` is staged in pinned (page-locked) host memory: on CUDA only."""
    return str(device).startswith("cuda")


def to_device(tensor, device: str):
    """``tensor`` on ``device``: from pinned memory without blocking on CUDA (the stream orders the copy before
    the forward pass that reads it); on CPU the tensor itself, no copy."""
    if not pinned(device):
        return tensor
    return tensor.to(device, non_blocking=True)


# Device memory a padded batch needs per second of audio, per 1024 feature channels, fp32 activations, measured
# as peak minus weights on CPU for the large model: a 10 s clip ~0.45 GB, of which the convolutional front-end's
# first layers take most; attention adds T^2 per head. Doubled for safety; reduced precisions halve activations.
BYTES_PER_AUDIO_S = 96 * 1024 * 1024


def bucket_audio_s(free_bytes: int, embedding_dim: int = 1024, dtype: str = "float32", share: float = 0.5,
                   floor_s: float = 30.0, ceiling_s: float = 1200.0) -> float:
    """Seconds of audio one padded batch may hold on a device with ``free_bytes`` free: ``share`` of the free
    memory over the activations a second of audio needs (:data:`BYTES_PER_AUDIO_S`, scaled by the model's width
    and halved in bf16/fp16), within ``[floor_s, ceiling_s]``."""
    per_s = BYTES_PER_AUDIO_S * max(embedding_dim, 1) / 1024
    if dtype in ("bfloat16", "float16"):
        per_s /= 2
    return float(min(ceiling_s, max(floor_s, share * max(free_bytes, 0) / per_s)))


def device_free_bytes(device: str) -> int | None:
    """Free memory on a CUDA ``device`` (``torch.cuda.mem_get_info``); None on CPU or when it cannot be read."""
    if not str(device).startswith("cuda"):
        return None
    try:
        import torch

        free, _total = torch.cuda.mem_get_info(torch.device(device))
        return int(free)
    except Exception:  # no CUDA runtime: no figure
        return None


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


def recognize_each(engine, waveforms: Sequence[np.ndarray], granularity: str = "utterance",
                   extract_embedding: bool = False, window_s: float = 30.0) -> list:  # fmt: skip
    """Every clip's result through the engine's batched call where it has one, else one by one.

    ``recognize_batch`` of a server job's engine (``runs/scheduler.QueuedEngine``) queues every clip at once, so
    the scheduler batches them by length; an :class:`engine.EmotionEngine`'s batches on CUDA and goes clip by
    clip on CPU. VAD segments and conversation turns come through here.
    """
    batched = getattr(engine, "recognize_batch", None)
    if batched is None or len(waveforms) < 2:
        return [engine.recognize(w, granularity, extract_embedding, window_s=window_s) for w in waveforms]
    return batched(list(waveforms), granularity, extract_embedding, window_s=window_s)

