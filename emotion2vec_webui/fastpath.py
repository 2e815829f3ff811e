"""Faster forms of FunASR's Emotion2vec layers, swapped in per instance after loading.

Two things, each checked against FunASR's own modules in tests/test_fastpath.py:

- :class:`ConvFrontEnd` computes the waveform front-end
  (``ConvFeatureExtractionModel`` in ``layer_norm`` mode: seven
  ``Conv1d → LayerNorm → GELU`` blocks) time-major, as one matrix product per
  layer over overlapping windows of the input. FunASR runs it channel-major
  and transposes twice per layer around every LayerNorm; at 3 s of audio those
  strided copies took as long as a fifth of the whole forward pass. Same math,
  fp32 to ~1e-6; every precision mode but ``onnx*`` runs it.
- :class:`Int8Linear` is the ``int8`` precision mode's matrix product:
  int8 × int8 → int32 (``torch._int_mm``; VNNI/AMX kernels through oneDNN),
  int8 weights with one scale per output channel, activations quantised per
  row (token) at call time. Before quantising, each call subtracts the mean
  row ``c`` of its input and adds ``c @ W.T`` back, computed to ~15 bits::

      y = Q(x - c) @ Q(W).T + (c @ W.T + b)

  The split is exact for any ``c``; choosing the mean means the part of the
  weights' rounding error that every frame shares (``c @ (Q(W) - W).T``)
  never reaches the output, and what remains averages out when frames are
  pooled. ``qkv``'s rows are quantised twice (their rounding error as a
  second int8 row), since attention amplifies its input's rounding most.

How far the pooled scores of the large test model (20 speech clips) moved
from fp32, per variant, measured while building this (the max over clips is
a noisy statistic; the mean is steadier):

==========================================================  =======  =======
variant                                                     max      mean
==========================================================  =======  =======
torch dynamic int8, every Linear (the previous int8 mode)   0.023    0.008
per-row int8, every Linear; weights' rounding alone         0.032    0.009
same, mean-centred; weights' rounding alone                 0.004    0.001
mean-centred qkv/fc1/fc2, symmetric rows                   0.010    0.0013
+ ~16-bit qkv rows (this module)                            0.006    0.0010
+ asymmetric rows (dropped: no better, 4-8% slower)         0.006    0.0009
+ attention output projection in int8                       0.012    0.002
+ front-end convolutions in int8 (one scale per clip)       0.058    0.007
==========================================================  =======  =======

So :func:`quantize_int8` takes each transformer block's ``qkv``, ``fc1`` and
``fc2`` (92% of the transformer's arithmetic); the attention output
projection, the conv front-end (whose activations alone, even per row, moved
the scores by 0.011), the feature projection and the classifier head stay fp32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

INT8_LAYERS = ("qkv", "fc1", "fc2")  # the Linear children that quantize_int8() replaces
FINE_ROWS = ("qkv",)  # of those, the ones with ~16-bit activations (Int8Linear(fine_rows=True))


class ConvLayer(torch.nn.Module):
    """One ``Conv1d`` (no bias, no padding) on time-major input ``[B, T, C]`` as a matrix product over windows."""

    def __init__(self, weight: torch.Tensor, stride: int) -> None:
        super().__init__()
        out_dim, in_dim, self.kernel = weight.shape
        self.stride = stride
        # [out, in, k] → [out, k * in], the order of a time-major window's values
        self.weight = torch.nn.Parameter(weight.detach().permute(0, 2, 1).reshape(out_dim, self.kernel * in_dim))

    def windows(self, h: torch.Tensor) -> torch.Tensor:
        """``[B, T', k * C]``: window ``i`` is rows ``[s*i, s*i + k)`` of contiguous ``h``."""
        b, t, c = h.shape
        steps = (t - self.kernel) // self.stride + 1
        return h.as_strided((b, steps, self.kernel * c), (t * c, self.stride * c, 1))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        win = self.windows(h.contiguous())
        return F.linear(win.reshape(-1, win.shape[-1]), self.weight).view(*win.shape[:2], -1)


class ConvFrontEnd(torch.nn.Module):
    """FunASR's ``layer_norm`` conv front-end as time-major matrix products.

    Input ``[B, S]`` waveform; output ``[B, C, T]`` like FunASR's (a transposed
    view of time-major data, so the following ``TransposeLast`` costs nothing).
    """

    def __init__(self, layers: list[tuple[torch.Tensor, int, torch.nn.LayerNorm]]) -> None:
        super().__init__()
        self.conv = torch.nn.ModuleList(ConvLayer(weight, stride) for weight, stride, _ in layers)
        self.norms = torch.nn.ModuleList(norm for _, _, norm in layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.unsqueeze(-1)  # [B, S, 1]: time-major, channels last
        for conv, norm in zip(self.conv, self.norms, strict=True):
            h = conv(h)
            h = F.gelu(F.layer_norm(h.float(), norm.normalized_shape, norm.weight, norm.bias, norm.eps).to(h.dtype))
        return h.transpose(1, 2)


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


def use_conv_front_end(module: torch.nn.Module) -> bool:
    """Replace every FunASR conv front-end in ``module`` by its :class:`ConvFrontEnd`; True when one was."""
    done = False
    for parent in list(module.modules()):
        encoder = getattr(parent, "local_encoder", None)
        if encoder is None or isinstance(encoder, ConvFrontEnd):
            continue
        fast = conv_front_end(encoder)
        if fast is not None:
            parent.local_encoder = fast
            done = True
    return done


def _int8_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 of the rows of ``x`` (``x`` is modified): ``(q, scale)`` with ``x ≈ q * scale``."""
    # amax and amin rather than abs().amax(): one pass, no temporary
    scale = torch.maximum(x.amax(dim=-1, keepdim=True), x.amin(dim=-1, keepdim=True).neg_())
    scale = scale.clamp_min_(1e-12).div_(127)
    return x.div_(scale).round_().to(torch.int8), scale


def _int8_split(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of ``x`` as two int8 rows each, ``x ≈ hi * s + lo * s / 254`` (~15 bits): ``(q [2R, K], s [2R, 1])``."""
    hi, scale = _int8_rows(x.clone())
    rest = x - hi * scale  # |rest| <= scale / 2
    lo_scale = scale / 254
    lo = rest.div_(lo_scale).round_().to(torch.int8)
    return torch.cat([hi, lo]), torch.cat([scale, lo_scale])


class Int8Linear(torch.nn.Module):
    """``torch.nn.Linear`` in int8: per-channel weights, per-row activations, mean-centred (see the module doc).

    The weights are kept as int8 twice over: ``qweight`` (8 bits, what every
    row is multiplied by) and ``residual``, the rounding error of ``qweight``
    in int8 at 1/254 of its step. The mean row (itself split in two int8 rows)
    is multiplied by both, so ``c @ W.T`` is exact to ~15 bits without keeping
    the fp32 weights: a quarter of their memory, and two extra rows in the
    same int8 product instead of an fp32 matrix-vector product per call.
    """

    def __init__(self, linear: torch.nn.Linear, fine_rows: bool = False) -> None:
        """``fine_rows``: quantise each row twice (the second time its rounding error), ~16-bit
        activations for twice the rows in the product; for the layer whose activations matter most."""
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.fine_rows = fine_rows
        weight = linear.weight.detach().float()
        scale = weight.abs().amax(dim=1).clamp_min(1e-12) / 127
        qweight = torch.round(weight / scale[:, None])
        residual = torch.round((weight - qweight * scale[:, None]) / (scale[:, None] / 254))
        self.register_buffer("qweight", qweight.to(torch.int8).t().contiguous())  # [in, out]
        self.register_buffer("residual", residual.to(torch.int8).t().contiguous())
        self.register_buffer("scale", scale)
        bias = linear.bias.detach().float() if linear.bias is not None else torch.zeros(self.out_features)
        self.register_buffer("bias", bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        items = shape[0] if x.dim() > 2 else 1
        seq = x.float().reshape(items, -1, self.in_features)  # [B, T, K]
        mean = seq.mean(dim=1)  # [B, K]: per item, so batched results do not depend on the batch
        centred = (seq - mean[:, None]).view(-1, self.in_features)
        exact_rows = centred.clone() if self.fine_rows else None
        q, row_scale = _int8_rows(centred)
        parts = [q]
        if exact_rows is not None:  # the rounding error, in int8 at 1/254 of the step (|error| <= step / 2)
            fine = exact_rows.div_(row_scale).sub_(q).mul_(254).round_().to(torch.int8)
            parts.append(fine)
        mq, mean_scale = _int8_split(mean)  # [2B, K]
        acc = torch._int_mm(torch.cat([*parts, mq]), self.qweight)  # one product: the rows, then the mean's
        rows = q.shape[0]
        row_acc = acc[:rows] * row_scale
        if exact_rows is not None:
            row_acc.addcmul_(acc[rows : 2 * rows], row_scale, value=1 / 254)
        mean_acc = (acc[len(parts) * rows :] + torch._int_mm(mq, self.residual) / 254).mul_(mean_scale)
        exact = torch.addcmul(self.bias, mean_acc[:items] + mean_acc[items:], self.scale)  # ≈ mean @ W.T + b
        out = torch.addcmul(exact[:, None], row_acc.view(items, -1, self.out_features), self.scale)
        return out.view(*shape[:-1], self.out_features)


def quantize_int8(module: torch.nn.Module, names: tuple[str, ...] = INT8_LAYERS) -> int:
    """Replace the ``Linear`` children named in ``names`` by :class:`Int8Linear`.

    The classifier head (the top module's ``proj``) and anything inside a
    FunASR decoder (training only) are never touched.

    Returns:
        How many layers were replaced.
    """
    count = 0
    for path, parent in list(module.named_modules()):
        if "decoder" in path.split("."):
            continue
        for key, child in list(parent.named_children()):
            if isinstance(child, torch.nn.Linear) and key in names and not (parent is module and key == "proj"):
                setattr(parent, key, Int8Linear(child, fine_rows=key in FINE_ROWS))
                count += 1
    return count
