"""Faster forms of FunASR's Emotion2vec layers, swapped in per instance after loading.

One concept: the CPU fast path, whose pieces share the swap-in helper, the
calibration signal and the equality tests against FunASR's own layers; split,
they would only import each other.

Three things, each checked against FunASR's own modules in tests/model/test_fastpath.py:

- :class:`ConvFrontEnd` computes the waveform front-end
  (``ConvFeatureExtractionModel`` in ``layer_norm`` mode: seven
  ``Conv1d → LayerNorm → GELU`` blocks) time-major, as matrix products over
  windows of the input (kernel-3 layers in output pairs that share a
  product), 64 output frames at a time.
  FunASR runs it channel-major over the whole clip and transposes twice per
  layer around every LayerNorm; at 3 s of audio those strided copies took a
  fifth of the forward pass, and at 30 s its 200 MB intermediates cost more
  than the products. Same math, fp32 to ~1e-6; every precision mode but
  ``onnx*`` runs it.
- :class:`PosConv` computes the convolutional positional encoder time-major,
  its grouped convolutions as one batched product per kernel tap (CPU).
- :class:`Int8Linear` is the ``int8`` precision mode's matrix product:
  u8 × s8 → fp32 in oneDNN with the weights packed once (``torch._int_mm``
  where oneDNN's op is missing), int8 weights with one scale per output
  channel, activations quantised per row (token) at call time. Each layer
  first subtracts a fixed row ``c``, its mean input over a calibration signal
  (:func:`calibration_signal`, run once at load), and adds ``W @ c + b`` back
  exactly, in fp32::

      y = Q(x - c) @ Q(W).T + (W @ c + b)

  The split is exact for any ``c``. Inputs after a LayerNorm or a GELU share
  a large per-channel offset; removed before quantising, it no longer meets
  the weights' rounding error, which would otherwise shift every frame alike
  and survive pooling. (The same per-channel shift as "Outlier Suppression+",
  Wei et al. 2023.) ``qkv``'s rows are quantised twice (their rounding error
  as a second int8 row, ~16 bits), since attention amplifies its input's
  rounding most.

How far the pooled scores of the large test model (20 speech clips) moved
from fp32, per variant, measured while building this. The max over clips is
a noisy statistic: any change in the arithmetic (another calibration
signal, even a 1e-6 change in the front-end) redraws every layer's rounding.
Rows marked "draws" give the spread over six calibration signals
(2-5 s); the others are single draws, so differences below ~0.004 between
them mean little.

===============================================================  ==============  =======
variant                                                          max             mean
===============================================================  ==============  =======
torch dynamic int8, every Linear (the first int8 mode)           0.023           0.008
per-row int8, every Linear; weights' rounding alone              0.032           0.009
qkv/fc1/fc2, centred on each call's own mean row (second mode)   0.006           0.0010
qkv/fc1/fc2, centred on the calibrated row, ~16-bit qkv (draws)  0.0015-0.0075   0.0008
+ attention output projection in int8, 8-bit rows (this; draws)  0.0024-0.0061   0.0009
same, calibrated on noise / on another speech clip               0.004           0.0009
this, on 60 clips (draws)                                        0.0030-0.0084   ..
~16-bit qkv rows in the first 6 of 12 blocks only (60; draws)    0.0031-0.0063   ..
~16-bit qkv rows in the first 4 of 12 blocks only (60; draws)    0.0047-0.0074   ..
qkv rows 8-bit, projection fp32 (3 draws)                        0.0030-0.0119   0.0015
projection ~16-bit rows, qkv 8-bit (3 draws)                     0.0043-0.0094   0.0012
~16-bit rows for q and k only / for q only                       0.006           0.0014
qkv rows 8-bit, SmoothQuant channel scales (alpha 0.3)           0.0067          0.0020
one activation scale per call instead of per row (3 draws)       0.0040-0.0083   0.0013
second mode + front-end, ~16-bit activations (one scale/clip)    0.006           0.0010
front-end alone in int8, 8-bit activations and weights           0.020           0.0026
front-end alone, ~16-bit activations and weights (4 products)    0.0001          0.0000
===============================================================  ==============  =======

(Fine ``qkv`` rows in only the first half of the blocks saved ~3% at 3 and
10 s, for a mean difference over all nine scores 13% larger: 0.00017
against 0.00015; 0.00019 with the first four. Left out: on trained weights,
with their outlier channels, the margin is likely smaller than on random
ones.)

So :func:`quantize_int8` takes each transformer block's ``qkv``, attention
output projection ``proj``, ``fc1`` and ``fc2``: all of the transformer's
matrix products. The feature projection and the classifier head stay fp32.
The conv front-end stays fp32 too: in int8 its weights' and its
activations' rounding both move the scores past the bound (it has no
residual path to dilute them), and ~16-bit weights and activations take
three or four int8 products per layer, no faster than one fp32 product. Its
kernel-3 layers instead share products between output pairs
(:meth:`ConvLayer.pairs`). On a 2-core AVX-512 VNNI machine the int8
products run at the cores' peak (~1.2 int8 TOPS), so at 3 s the fp32
front-end is a third of the time.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

INT8_LAYERS = ("qkv", "proj", "fc1", "fc2")  # the Linear children that quantize_int8() replaces ("proj": beside a qkv)
FINE_ROWS = ("qkv",)  # of those, the ones with ~16-bit activations (Int8Linear(fine_rows=True))


class ConvLayer(torch.nn.Module):
    """One ``Conv1d`` (no bias, no padding) on time-major input ``[B, T, C]`` as a matrix product over windows.

    Kernel 3, stride 2 (four of the front-end's seven layers, nearly all its
    arithmetic) takes :meth:`pairs` instead in fp32: a fifth fewer
    multiplications. Not in bf16/fp16: there each of its larger partial
    products is rounded, and the bf16 scores' worst difference from fp32 went
    from 0.008 to 0.019 on the large test model.
    """

    def __init__(self, weight: torch.Tensor, stride: int) -> None:
        super().__init__()
        out_dim, in_dim, self.kernel = weight.shape
        self.stride = stride
        weight = weight.detach()
        self.out_features = out_dim
        # [out, in, k] → [out, k * in], the order of a time-major window's values
        self.weight = torch.nn.Parameter(weight.permute(0, 2, 1).reshape(out_dim, self.kernel * in_dim))
        self.paired = self.kernel == 3 and stride == 2
        if self.paired:
            w0, w1, w2 = weight.unbind(-1)
            self.register_buffer("even", torch.cat([w0, w1], dim=1))  # on [e[2p] - e[2p+1], o[2p]]
            self.register_buffer("odd", torch.cat([w2, w1], dim=1))  # on [e[2p+2] - e[2p+1], o[2p+1]]
            self.register_buffer("shared", w0 + w2)  # on e[2p+1], for both outputs of a pair

    def windows(self, h: torch.Tensor) -> torch.Tensor:
        """``[B, T', k * C]``: window ``i`` is rows ``[s*i, s*i + k)`` of contiguous ``h``."""
        b, t, c = h.shape
        steps = (t - self.kernel) // self.stride + 1
        return h.as_strided((b, steps, self.kernel * c), (t * c, self.stride * c, 1))

    def pairs(self, h: torch.Tensor) -> torch.Tensor:
        """Kernel 3, stride 2 with output frames in pairs, sharing one product (Winograd's F(2, 2)).

        With even input rows ``e[j] = h[2j]``, odd ``o[j] = h[2j+1]`` and taps
        ``w0, w1, w2``, frame ``t`` is ``w0 e[t] + w2 e[t+1] + w1 o[t]``. Frames
        ``2p`` and ``2p+1`` share ``m = (w0 + w2) e[2p+1]``::

            y[2p]   = w0 (e[2p]   - e[2p+1]) + w1 o[2p]   + m
            y[2p+1] = w2 (e[2p+2] - e[2p+1]) + w1 o[2p+1] + m

        five products of a frame's width for two frames instead of six; the
        same sums in another order (fp32 to ~1e-6).
        """
        b, t, c = h.shape
        frames = (t - 3) // 2 + 1
        n_even, n_odd = (frames + 1) // 2, frames // 2  # a last unpaired frame is an even one
        middle = h[:, 2 : 4 * n_even : 4]  # e[2p+1]
        even = torch.empty(b, n_even, 2 * c, dtype=h.dtype, device=h.device)
        torch.sub(h[:, 0 : 4 * n_even : 4], middle, out=even[..., :c])
        even[..., c:] = h[:, 1 : 4 * n_even : 4]
        odd = torch.empty(b, n_odd, 2 * c, dtype=h.dtype, device=h.device)
        torch.sub(h[:, 4 : 4 * n_odd + 1 : 4], middle[:, :n_odd], out=odd[..., :c])
        odd[..., c:] = h[:, 3 : 4 * n_odd : 4]
        shared = F.linear(middle, self.shared)  # [B, n_even, out]
        out = h.new_empty(b, 2 * n_even, shared.shape[-1])
        out[:, 0::2] = torch.baddbmm(shared, even, self.even.t().expand(b, -1, -1))
        out[:, 1::2][:, :n_odd] = torch.baddbmm(shared[:, :n_odd], odd, self.odd.t().expand(b, -1, -1))
        return out[:, :frames]

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = h.contiguous()
        if self.paired and h.dtype == torch.float32 and not torch.is_autocast_enabled(h.device.type):
            return self.pairs(h)
        win = self.windows(h)
        return F.linear(win.reshape(-1, win.shape[-1]), self.weight).view(*win.shape[:2], -1)


class ConvFrontEnd(torch.nn.Module):
    """FunASR's ``layer_norm`` conv front-end as time-major matrix products, a few frames at a time.

    Input ``[B, S]`` waveform; output ``[B, C, T]`` like FunASR's (a transposed
    view of time-major data, so the following ``TransposeLast`` costs nothing).

    Every output frame depends only on its own window of samples
    (``field`` samples, every ``stride``), and the norm is per time step, so
    the waveform can go through all seven layers in pieces of ``chunk_frames``
    output frames with the same result. The pieces' intermediates stay in the
    CPU cache; the whole clip's would not (at 30 s the first layer's output
    alone is 200 MB, written and read by every pass).
    """

    def __init__(self, layers: list[tuple[torch.Tensor, int, torch.nn.LayerNorm]], chunk_frames: int = 64) -> None:
        super().__init__()
        self.conv = torch.nn.ModuleList(ConvLayer(weight, stride) for weight, stride, _ in layers)
        self.norms = torch.nn.ModuleList(norm for _, _, norm in layers)
        self.chunk_frames = chunk_frames
        self.stride, self.field = 1, 1  # samples between output frames; samples one output frame sees
        for conv in reversed(self.conv):
            self.field = (self.field - 1) * conv.stride + conv.kernel
            self.stride *= conv.stride

    def layers(self, x: torch.Tensor) -> torch.Tensor:
        """All layers on waveforms ``[B, S]`` → time-major ``[B, T, C]``."""
        h = x.unsqueeze(-1)  # [B, S, 1]: time-major, channels last
        for conv, norm in zip(self.conv, self.norms, strict=True):
            h = conv(h)
            h = F.gelu(F.layer_norm(h.float(), norm.normalized_shape, norm.weight, norm.bias, norm.eps).to(h.dtype))
        return h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frames = (x.shape[1] - self.field) // self.stride + 1
        if frames <= self.chunk_frames:
            return self.layers(x).transpose(1, 2)
        out = None
        for start in range(0, frames, self.chunk_frames):
            stop = min(frames, start + self.chunk_frames)
            piece = self.layers(x[:, start * self.stride : (stop - 1) * self.stride + self.field])
            if out is None:
                out = piece.new_empty(x.shape[0], frames, piece.shape[-1])
            out[:, start:stop] = piece
        return out.transpose(1, 2)


def conv_front_end(encoder: torch.nn.Module) -> ConvFrontEnd | None:
    """A :class:`ConvFrontEnd` equal to FunASR's ``encoder``, or ``None`` when its layout is not the known one."""
    try:
        from funasr.models.emotion2vec.fairseq_modules import ConvFeatureExtractionModel, Fp32LayerNorm, TransposeLast
    except ImportError:  # pragma: no cover - another FunASR layout
        return None
    if not isinstance(encoder, ConvFeatureExtractionModel):
        return None
    layers = []
    for block in encoder.conv_layers:
        parts = list(block.children())
        if not (
            len(parts) == 4
            and isinstance(parts[0], torch.nn.Conv1d)
            and parts[0].bias is None
            and parts[0].padding == (0,)
            and parts[0].dilation == (1,)
            and parts[0].groups == 1
            and isinstance(parts[1], torch.nn.Dropout)
            and isinstance(parts[2], torch.nn.Sequential)
            and [type(p) for p in parts[2]] == [TransposeLast, Fp32LayerNorm, TransposeLast]
            and isinstance(parts[3], torch.nn.GELU)
            and parts[3].approximate == "none"
        ):
            return None
        layers.append((parts[0].weight, parts[0].stride[0], parts[2][1]))
    return ConvFrontEnd(layers)


def _swap_in(
    module: torch.nn.Module, attribute: str, build: Callable[[torch.nn.Module], torch.nn.Module | None]
) -> bool:
    """Replace each submodule of ``module`` held as ``attribute`` by ``build(it)`` where that is not ``None``."""
    done = False
    for parent in list(module.modules()):
        original = getattr(parent, attribute, None)
        if original is None or isinstance(original, (ConvFrontEnd, PosConv)):
            continue
        fast = build(original)
        if fast is not None:
            setattr(parent, attribute, fast)
            done = True
    return done


def use_conv_front_end(module: torch.nn.Module) -> bool:
    """Replace every FunASR conv front-end in ``module`` by its :class:`ConvFrontEnd`; True when one was."""
    return _swap_in(module, "local_encoder", conv_front_end)


class PosConv(torch.nn.Module):
    """FunASR's convolutional positional encoder time-major: each grouped ``Conv1d`` as batched products.

    FunASR's encoder (``conv_pos_depth`` blocks of grouped ``Conv1d → SamePad
    → LayerNorm → GELU``) runs channel-major and transposes around every
    LayerNorm. Here the convolution's groups are the batch of a product per
    kernel tap, ``[G, T, C/G] @ [G, C/G, C/G]``, accumulated in place over
    shifted views of one padded copy of the input: no window copies, no
    transposes around the norm. The same sums in another order (fp32 to
    ~1e-6). On a 2-core AVX-512 CPU the five blocks of the large model took
    9-12 → 7-10 ms at 3 s and ~100 → ~75 ms at 30 s (oneDNN's grouped
    convolution has little work per group at this width). CPU only: on a GPU
    one grouped convolution beats a product per tap.

    ``padding`` (``[B, T]``, True = padded frame; set by ``batching.py`` for
    one padded batch) zeroes those frames before each convolution, as a lone
    clip's zero padding would be. Reduced precision (bf16/fp16 input, or
    autocast) runs FunASR's own module, kept as ``reference``; this one holds
    its weights once more, tap-major (``taps{i}``: ``[k, G, C/G in, C/G out]``,
    not saved in a state dict).
    """

    def __init__(
        self, reference: torch.nn.Sequential, blocks: list[tuple[torch.nn.Conv1d, int, torch.nn.Module]]
    ) -> None:
        super().__init__()
        self.reference = reference
        self.padding: torch.Tensor | None = None  # [B, T] True = padded frame, zeroed before each convolution
        self.convs = [conv for conv, _, _ in blocks]  # shared with ``reference`` (a plain list: not registered twice)
        self.removes = [remove for _, remove, _ in blocks]  # SamePad: frames dropped at the end
        self.norms = [norm for _, _, norm in blocks]
        for i, (conv, _, _) in enumerate(blocks):
            groups, kernel = conv.groups, conv.kernel_size[0]
            weight = conv.weight.detach().view(groups, conv.out_channels // groups, conv.in_channels // groups, kernel)
            self.register_buffer(f"taps{i}", weight.permute(3, 0, 2, 1).contiguous(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, T, C]`` → ``[B, T, C]``, as FunASR's ``relative_positional_encoder``."""
        if x.dtype != torch.float32 or torch.is_autocast_enabled(x.device.type):
            return self.reference(x)
        b = x.shape[0]
        for i, (conv, remove, norm) in enumerate(zip(self.convs, self.removes, self.norms, strict=True)):
            taps = getattr(self, f"taps{i}")
            kernel, groups, c_in, c_out = taps.shape
            pad = conv.padding[0]
            if self.padding is not None:  # a padded batch: each clip's convolutions see zeros past its end
                x = x * (~self.padding[:, : x.shape[1], None]).to(x.dtype)
            steps = x.shape[1] + 2 * pad - kernel + 1 - remove
            padded = F.pad(x, (0, 0, pad, pad))  # [B, T + 2 pad, C]
            padded = padded.view(b, -1, groups, c_in).transpose(1, 2).reshape(b * groups, -1, c_in)
            if b > 1:
                taps = taps.repeat(1, b, 1, 1)  # [k, B * G, in, out]
            if conv.bias is None:
                out = padded.new_zeros(b * groups, steps, c_out)
            else:
                out = conv.bias.view(1, groups, 1, c_out).repeat(b, 1, steps, 1).view(b * groups, steps, c_out)
            for tap in range(kernel):
                out.baddbmm_(padded[:, tap : tap + steps], taps[tap])
            x = out.view(b, groups, steps, c_out).transpose(1, 2).reshape(b, steps, groups * c_out)
            x = F.gelu(F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps))
        return x


def pos_conv(encoder: torch.nn.Module) -> PosConv | None:
    """A :class:`PosConv` equal to FunASR's ``relative_positional_encoder``, or ``None`` for another layout."""
    try:
        from funasr.models.emotion2vec.fairseq_modules import SamePad, TransposeLast
    except ImportError:  # pragma: no cover - another FunASR layout
        return None

    def is_transpose(m: torch.nn.Module) -> bool:
        return isinstance(m, TransposeLast) and m.deconstruct_idx is None

    parts = list(encoder.children()) if isinstance(encoder, torch.nn.Sequential) else []
    if len(parts) < 3 or not (is_transpose(parts[0]) and is_transpose(parts[-1])):
        return None
    blocks = []
    for block in parts[1:-1]:
        inner = list(block.children()) if isinstance(block, torch.nn.Sequential) else []
        if not (
            len(inner) == 6
            and type(inner[0]) is torch.nn.Conv1d
            and inner[0].stride == (1,)
            and inner[0].dilation == (1,)
            and inner[0].padding_mode == "zeros"
            and isinstance(inner[0].padding, tuple)
            and isinstance(inner[1], SamePad)
            and is_transpose(inner[2])
            and isinstance(inner[3], torch.nn.LayerNorm)
            and is_transpose(inner[4])
            and isinstance(inner[5], torch.nn.GELU)
            and inner[5].approximate == "none"
        ):
            return None
        blocks.append((inner[0], inner[1].remove, inner[3]))
    return PosConv(encoder, blocks)


def use_pos_conv(module: torch.nn.Module) -> bool:
    """Replace every FunASR convolutional positional encoder in ``module`` by its :class:`PosConv`."""
    return _swap_in(module, "relative_positional_encoder", pos_conv)


def _row_codes(rows: torch.Tensor, fine: bool, unsigned: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric 8-bit codes of the rows of ``rows`` (which is modified): ``(codes, scale)``, ``rows ≈ codes * scale``.

    ``fine``: the rounding error as a second block of rows, at 1/254 of the step
    (``rows ≈ (codes[:n] + codes[n:] / 254) * scale``, ~16 bits).
    ``unsigned``: ``uint8`` codes offset by 128 (oneDNN's fast form), else ``int8``.
    """
    # amax and amin rather than abs().amax(): one pass, no temporary
    scale = torch.maximum(rows.amax(dim=-1, keepdim=True), rows.amin(dim=-1, keepdim=True).neg_())
    scale = scale.clamp_min_(1e-12).div_(127)
    steps = rows.mul_(scale.reciprocal())
    if fine:
        coarse = steps.round()
        codes = torch.cat([coarse, steps.sub_(coarse).mul_(254).round_()])  # |error| <= 1/2 step
    else:
        codes = steps.round_()
    codes = codes.to(torch.int8)
    # uint8 offset by 128 is int8 with its top bit flipped; float → uint8 directly is ~6x slower here
    return (codes.view(torch.uint8).bitwise_xor_(128) if unsigned else codes), scale


@functools.cache
def onednn_int8() -> bool:
    """Whether oneDNN's prepacked int8 matmul (``torch.ops.onednn.qlinear_*``) runs here and agrees with ``_int_mm``."""
    try:
        gen = torch.Generator().manual_seed(0)
        weight = torch.randint(-127, 128, (24, 40), dtype=torch.int8, generator=gen)
        codes = torch.randint(-127, 128, (5, 40), dtype=torch.int8, generator=gen)
        zeros = torch.zeros(24, dtype=torch.long)
        got = _onednn_matmul((codes.short() + 128).to(torch.uint8), _onednn_pack(weight), torch.ones(24), zeros)
        return torch.equal(got, torch._int_mm(codes, weight.t().contiguous()).float())
    except (AttributeError, RuntimeError, NotImplementedError):  # no oneDNN, or an op that changed
        return False


@functools.cache
def int_mm_fast() -> bool:
    """Whether ``torch._int_mm`` is at least half as fast as an fp32 product of the same codes here.

    On CPUs without VNNI (AVX2 only) it is not: 150x1024 @ 1024x4096 measured
    1.8 s against 29 ms in fp32 (a 2-core AMD EPYC, AVX2, 2026-12-06), which made
    the large model's int8 ~60x slower than fp32. :class:`Int8Linear` then
    multiplies its int8 codes as fp32 numbers instead: the same integers, their
    sums exact up to fp32 rounding.
    """
    a, b = torch.ones(64, 512, dtype=torch.int8), torch.ones(512, 512, dtype=torch.int8)
    af, bf = a.float(), b.float()

    def best(fn: Callable[[], object]) -> float:
        fn()
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return min(times)

    try:
        return best(lambda: torch._int_mm(a, b)) < 2 * best(lambda: af @ bf)
    except (RuntimeError, NotImplementedError):  # no _int_mm on this build
        return False


def _onednn_pack(qweight: torch.Tensor) -> torch.Tensor:
    """``[out, in]`` int8 weights in oneDNN's blocked layout, packed once instead of at every call."""
    return torch.ops.onednn.qlinear_prepack(qweight, None)


def _onednn_matmul(
    codes: torch.Tensor, packed: torch.Tensor, weight_scale: torch.Tensor, zero_points: torch.Tensor
) -> torch.Tensor:
    """``(codes - 128) @ Q(W).T * weight_scale`` as fp32, from ``uint8`` codes and :func:`_onednn_pack`'s weights
    (``zero_points``: the weights', all zero, int64)."""
    return torch.ops.onednn.qlinear_pointwise(
        codes, 1.0, 128, packed, weight_scale, zero_points, None, 1.0, 0, torch.float32, "none", [], ""
    )


class Int8Linear(torch.nn.Module):
    """``torch.nn.Linear`` in int8: per-channel weights, per-row activations, centred on a calibrated row.

    ``y = Q(x - c) @ Q(W).T + (W @ c + b)``: ``c`` is the layer's mean input
    row over a calibration signal (:func:`quantize_int8`), and ``W @ c + b`` is
    kept exactly in fp32 (``offset``). Only the int8 weights are kept (no fp32
    copy): a quarter of the memory of ``torch.nn.Linear``.

    The product runs in oneDNN with the weights packed once at load
    (:func:`onednn_int8`), else in ``torch._int_mm``, which packs them again at
    every call (its products measured ~14% slower at 160 rows, ~30% at 5), or,
    where ``_int_mm`` is slow (AVX2 without VNNI: :func:`int_mm_fast`), as fp32
    products of the same codes.
    """

    def __init__(
        self,
        linear: torch.nn.Linear,
        centre: torch.Tensor | None = None,
        fine_rows: bool = False,
        prepacked: bool | None = None,
        float_codes: bool | None = None,
    ) -> None:
        """``centre``: the row ``c`` subtracted before quantising (zeros when ``None``: plain int8).
        ``fine_rows``: quantise each row twice (the second time its rounding error), ~16-bit
        activations for twice the rows in the product; for the layer whose activations matter most.
        ``prepacked``: use oneDNN's packed weights (``None``: when :func:`onednn_int8`).
        ``float_codes``: otherwise multiply the codes as fp32 (``None``: when ``_int_mm`` is slow, :func:`int_mm_fast`)."""
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.fine_rows = fine_rows
        weight = linear.weight.detach().float()
        scale = weight.abs().amax(dim=1).clamp_min(1e-12) / 127
        qweight = torch.round(weight / scale[:, None]).to(torch.int8)  # [out, in]
        self.register_buffer("scale", scale)
        centre = torch.zeros(self.in_features) if centre is None else centre.detach().float().reshape(self.in_features)
        bias = linear.bias.detach().float() if linear.bias is not None else torch.zeros(self.out_features)
        self.register_buffer("centre", centre)
        self.register_buffer("offset", torch.addmv(bias, weight, centre))  # what the centre row contributes, exactly
        self.prepacked = onednn_int8() if prepacked is None else prepacked
        # one copy of the weights: oneDNN's packed form (an opaque tensor, so not a buffer) or [in, out] for _int_mm
        self.packed = _onednn_pack(qweight) if self.prepacked else None
        self.register_buffer("zero_points", torch.zeros(self.out_features, dtype=torch.long))  # symmetric weights
        self.register_buffer("qweight", None if self.prepacked else qweight.t().contiguous())
        # without a fast integer product here, the same int8 codes multiplied as fp32 (see int_mm_fast)
        self.float_codes = not self.prepacked and (not int_mm_fast() if float_codes is None else float_codes)

    def extra_repr(self) -> str:
        kind = "oneDNN prepacked" if self.prepacked else "codes as fp32" if self.float_codes else "_int_mm"
        return f"in_features={self.in_features}, out_features={self.out_features}, fine_rows={self.fine_rows}, {kind}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        rows = x.reshape(-1, self.in_features).float() - self.centre
        n = rows.shape[0]
        codes, row_scale = _row_codes(rows, self.fine_rows, unsigned=self.prepacked)
        if self.prepacked:
            acc = _onednn_matmul(codes, self.packed, self.scale, self.zero_points)  # already × the weights' scales
        elif self.float_codes:
            acc = torch.mm(codes.float(), self.qweight.float()).mul_(self.scale)
        else:
            acc = torch._int_mm(codes, self.qweight).float().mul_(self.scale)
        out = torch.addcmul(self.offset, acc[:n], row_scale)
        if self.fine_rows:
            out.addcmul_(acc[n:], row_scale, value=1 / 254)
        return out.view(*shape[:-1], self.out_features)


def calibration_signal(seconds: float = 3.0, rate: int = 16000) -> np.ndarray:
    """A fixed, voiced, speech-like signal for :func:`quantize_int8`'s calibration pass.

    Harmonics of a 90-150 Hz pitch with vibrato, a 3 Hz syllable-like envelope
    and a little noise; deterministic, so the same model always gets the same
    int8 layers.
    """
    t = np.arange(int(seconds * rate)) / rate
    phase = 2 * np.pi * np.cumsum(120 + 30 * np.sin(2 * np.pi * 0.5 * t)) / rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 20))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)
    noise = np.random.default_rng(0).standard_normal(t.size)
    return (0.1 * voiced * envelope + 0.01 * noise).astype(np.float32)


def quantize_int8(
    module: torch.nn.Module, calibrate: Callable[[], object] | None = None, names: tuple[str, ...] = INT8_LAYERS
) -> int:
    """Replace the ``Linear`` children named in ``names`` by :class:`Int8Linear`.

    ``calibrate`` runs the (still fp32) module on :func:`calibration_signal`;
    the mean input row each layer saw becomes its ``centre``. Without it the
    layers are plain int8 (centre zero), which is measurably less exact.
    A ``proj`` is taken only beside a ``qkv`` (an attention's output
    projection): the classifier head (the top module's ``proj``) and anything
    inside a FunASR decoder (training only) are never touched.

    Returns:
        How many layers were replaced.
    """
    targets = []
    for path, parent in list(module.named_modules()):
        if "decoder" in path.split("."):
            continue
        for key, child in list(parent.named_children()):
            if not (isinstance(child, torch.nn.Linear) and key in names):
                continue
            if key == "proj" and not hasattr(parent, "qkv"):  # only an attention's output projection, not the head
                continue
            targets.append((parent, key, child))
    sums: dict[torch.nn.Module, list] = {}

    def record(layer: torch.nn.Module, args: tuple) -> None:
        rows = args[0].detach().reshape(-1, layer.in_features).float()
        total = sums.setdefault(layer, [torch.zeros(layer.in_features, dtype=torch.float64), 0])
        total[0] += rows.sum(dim=0, dtype=torch.float64).cpu()
        total[1] += rows.shape[0]

    if calibrate is not None:
        hooks = [child.register_forward_pre_hook(record) for _, _, child in targets]
        try:
            with torch.inference_mode():
                calibrate()
        finally:
            for hook in hooks:
                hook.remove()
    for parent, key, child in targets:
        total, count = sums.get(child, (None, 0))
        centre = (total / count).float().to(child.weight.device) if count else None
        setattr(parent, key, Int8Linear(child, centre, fine_rows=key in FINE_ROWS))
    return len(targets)
