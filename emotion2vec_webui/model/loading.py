"""Lean checkpoint loading: FunASR's model class and config, without FunASR's extra copies.

``funasr.AutoModel`` builds the module with random initial weights, then
``load_pretrained_model`` reads ``model.pt`` fully into memory, deep-copies
it, and copies every tensor into the module: three copies of the weights at
its peak (2.4 GB RSS for the large model, 1.2 GB steady). Here the same
``AutoModel`` call runs with two of its steps swapped for the time of the
call:

- the model class (looked up in FunASR's registry by ``config.yaml``'s
  ``model``) is constructed on the ``meta`` device: no memory, no random init;
- ``load_pretrained_model`` becomes :func:`assign_checkpoint`, which opens the
  checkpoint memory-mapped (``torch.load(mmap=True, weights_only=True)``),
  maps keys with ``config.yaml``'s ``scope_map`` exactly as FunASR does
  (``d2v_model.`` prefix) and installs the tensors with
  ``load_state_dict(assign=True)``: the weights stay in the file's pages.

Everything else (tokenizer, kwargs, ``AutoModel.generate()``) is FunASR's
own. :func:`prepare_for_precision` then puts the loaded module in the form a
precision mode runs in (int8 quantisation, bf16 weights on CPU). When the checkpoint does not cover every parameter (a tensor would be
left on ``meta``), or the lean path fails in any other way (a legacy
non-zip file, which ``mmap`` refuses; an object ``weights_only`` will not
unpickle), the failure is logged and the caller falls back to FunASR's plain
loading, which keeps random init for missing keys.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from pathlib import Path

from emotion2vec_webui.model.resolve import ResolvedModel, checkpoint_state, load_automodel

log = logging.getLogger(__name__)

# AutoModel's registry and module globals are process-wide: one lean load at a time.
_PATCH_LOCK = threading.Lock()


class LeanLoadError(RuntimeError):
    """The checkpoint cannot be installed without a copy (keys missing or mismatched)."""


def _state_dict_of(checkpoint: Path) -> dict:
    return checkpoint_state(checkpoint)


def _source_key(name: str, state: dict, scope_map: list[str]) -> str | None:
    """The checkpoint key for module key ``name``, following FunASR's ``load_pretrained_model`` rules."""
    found = name if name in state else None
    pairs = list(scope_map) + ["module.", "None"]
    for i in range(0, len(pairs) - 1, 2):
        src = pairs[i] if pairs[i].lower() != "none" else ""
        dst = pairs[i + 1] if pairs[i + 1].lower() != "none" else ""
        if dst == "" and src + name in state:
            found = src + name
        elif name.startswith(dst) and name.replace(dst, src, 1) in state:
            found = name.replace(dst, src, 1)
    return found


def assign_checkpoint(model, path, scope_map=(), excludes=None, **_ignored) -> list[str]:
    """Install a checkpoint's tensors into ``model`` without copying them.

    Signature-compatible with ``funasr.train_utils.load_pretrained_model``
    (``path``, ``model``, ``scope_map``, ``excludes`` as keywords).

    Returns:
        The module keys that were loaded (all of them).

    Raises:
        LeanLoadError: a key is missing from the checkpoint or has another shape.
    """
    state = _state_dict_of(Path(path))
    if isinstance(scope_map, str):
        scope_map = scope_map.split(",")
    excludes = excludes.split(",") if isinstance(excludes, str) else list(excludes or [])
    mapped, missing = {}, []
    for name, tensor in model.state_dict(keep_vars=True).items():
        if any(name.startswith(ex) for ex in excludes):
            missing.append(name)
            continue
        src = _source_key(name, state, list(scope_map or []))
        if src is None or tuple(state[src].shape) != tuple(tensor.shape):
            missing.append(name)
            continue
        mapped[name] = state[src]
    if missing:
        raise LeanLoadError(f"{len(missing)} tensors not in {path}: {', '.join(missing[:5])}")
    model.load_state_dict(mapped, strict=True, assign=True)
    on_loaded = getattr(model, "on_pretrained_model_loaded", None)
    if callable(on_loaded):
        on_loaded(frozenset(mapped))
    return sorted(mapped)


# torch.nn.init's normal-distribution initialisers: on a meta tensor, torch runs them through its Python
# reference implementations, whose first call imports torch._dynamo (1.4 s of a 7 s CLI start on the 2-core VM).
_NORMAL_INITS = ("normal_", "trunc_normal_", "kaiming_normal_", "xavier_normal_")


@contextlib.contextmanager
def _no_init_on_meta():
    """Within: those initialisers leave meta tensors alone (they hold no values; the checkpoint replaces them)."""
    import torch.nn.init as init

    originals = {name: getattr(init, name) for name in _NORMAL_INITS}

    def skipping(original):
        def init_unless_meta(tensor, *args, **kwargs):
            return tensor if tensor.is_meta else original(tensor, *args, **kwargs)

        return init_unless_meta

    for name, original in originals.items():
        setattr(init, name, skipping(original))
    try:
        yield
    finally:
        for name, original in originals.items():
            setattr(init, name, original)


def _meta_factory(model_class):
    def build(**kwargs):
        import torch

        with torch.device("meta"), _no_init_on_meta():
            return model_class(**kwargs)

    return build


@contextlib.contextmanager
def lean_funasr(model_name: str):
    """Within: FunASR builds ``model_name`` on the meta device and loads weights with :func:`assign_checkpoint`."""
    from funasr.register import tables

    from emotion2vec_webui.model.funasr_import import auto_model as import_auto_model

    auto_model = import_auto_model()
    with _PATCH_LOCK:
        original_class = tables.model_classes.get(model_name)
        original_loader = auto_model.load_pretrained_model
        if original_class is None:
            raise LeanLoadError(f"model class {model_name!r} is not in FunASR's registry")
        tables.model_classes[model_name] = _meta_factory(original_class)
        auto_model.load_pretrained_model = assign_checkpoint
        try:
            yield
        finally:
            tables.model_classes[model_name] = original_class
            auto_model.load_pretrained_model = original_loader


def model_class_name(directory: Path) -> str:
    """``config.yaml``'s ``model`` entry (FunASR's registry key), e.g. ``Emotion2vec``."""
    import yaml

    cfg = yaml.safe_load((directory / "config.yaml").read_text("utf-8")) or {}
    return str(cfg.get("model", "Emotion2vec"))


def load_automodel_lean(resolved: ResolvedModel, device: str):
    """``funasr.AutoModel`` for ``resolved``, with the weights memory-mapped instead of copied.

    Falls back to :func:`model.load_automodel` (FunASR's own loading), with a
    logged warning, when the checkpoint does not cover the module.
    """
    from emotion2vec_webui.model import funasr_import
    from emotion2vec_webui.model.resolve import quiet_funasr

    with quiet_funasr():
        funasr_import.register_config(resolved.path)  # the classes lean_funasr swaps must be registered
    name = model_class_name(resolved.path)
    try:
        with lean_funasr(name):
            automodel = load_automodel(resolved, device)
    except Exception as exc:  # any lean-path failure: FunASR's own loading may still read the file
        log.warning(
            "lean loading not possible (%s: %s): loading through FunASR's own copy", type(exc).__name__, exc
        )
        return load_automodel(resolved, device)
    leftover = [n for n, t in automodel.model.state_dict().items() if t.is_meta]
    if leftover:  # pragma: no cover - assign_checkpoint raises first
        raise LeanLoadError(f"tensors left on the meta device: {', '.join(leftover[:5])}")
    use_fused_attention(automodel.model)
    return automodel


def _fused_attention_forward(self, x, padding_mask=None, alibi_bias=None):
    """``AltAttention.forward`` as one ``scaled_dot_product_attention`` call (same math, fp32 to ~1e-6).

    FunASR materialises the ``[B, H, T, T]`` scores, adds the ALiBi bias in
    place and softmaxes them: at 30 s (1,500 frames) that is over half the
    CPU time. The fused kernel takes the bias as ``attn_mask`` and works in
    blocks. Cases it does not cover (cosine attention, a bias over fewer
    heads, reduced-precision activations) run FunASR's own code.
    """
    import torch
    import torch.nn.functional as F

    B, N, C = x.shape
    autocast = torch.is_autocast_enabled(x.device.type)  # bf16 modes: FunASR's fp32 softmax over fp32 scores
    plain = not self.cosine_attention and x.dtype == torch.float32 and not autocast and not self.training
    if not plain or (alibi_bias is not None and alibi_bias.size(1) != self.num_heads):
        return type(self).forward(self, x, padding_mask, alibi_bias)
    q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
    mask = None if alibi_bias is None else alibi_bias.to(q.dtype).expand(B, -1, N, N)
    if padding_mask is not None and padding_mask.any():
        keys = padding_mask.view(B, 1, 1, N).to(torch.bool)
        mask = (torch.zeros(B, 1, N, N, dtype=q.dtype) if mask is None else mask).masked_fill(keys, float("-inf"))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scale)
    return self.proj(out.transpose(1, 2).reshape(B, N, C))


def use_fused_attention(module) -> int:
    """Run every FunASR ``AltAttention`` in ``module`` through :func:`_fused_attention_forward`.

    Per instance: FunASR's class (and so a plain ``AutoModel``) is untouched.

    Returns:
        How many attention layers were switched.
    """
    import types

    try:
        from funasr.models.emotion2vec.modules import AltAttention
    except ImportError:  # pragma: no cover - another FunASR layout
        return 0
    layers = [m for m in module.modules() if isinstance(m, AltAttention)]
    for layer in layers:
        layer.forward = types.MethodType(_fused_attention_forward, layer)
    return len(layers)


def prepare_for_precision(module, mode: str, device: str, calibrate=None):
    """The module as it should run in precision ``mode`` on ``device`` (may return a new module).

    - ``int8``: the transformer's ``qkv``/``proj``/``fc1``/``fc2`` in int8, the rest
      fp32 (CPU; :func:`fastpath.quantize_int8`, whose module says how the
      layers were chosen and how the scores stay within 0.01 of fp32).
      ``calibrate`` (no arguments) runs the fp32 module once on
      :func:`fastpath.calibration_signal`, which centres each int8 layer.
    - ``bf16`` / ``fp16`` on CPU: the weights of ``Linear`` and ``Conv1d``
      layers are cast once to bfloat16. CPU autocast does not cache weight
      casts under ``inference_mode``, so with fp32 weights every call copied
      all 164M weights to bf16 again (a third of the bf16 time). Norm layers
      keep fp32 weights; autocast still runs them in fp32.
    - everything else (fp32; CUDA autocast) is left as loaded.

    The classifier head (``proj``, 9 outputs) always stays fp32: it costs
    nothing and keeps the scores' last step exact.
    """
    import torch

    if mode == "int8":
        from emotion2vec_webui.model.fastpath import quantize_int8

        quantize_int8(module, calibrate)
        return module
    if mode in ("bf16", "fp16") and not device.startswith("cuda"):
        for layer in module.modules():
            if isinstance(layer, (torch.nn.Linear, torch.nn.Conv1d)) and layer is not module.proj:
                layer.to(torch.bfloat16)
    return module
