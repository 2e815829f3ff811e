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
left on ``meta``), :class:`LeanLoadError` is raised and the caller falls back
to FunASR's plain loading, which keeps random init for missing keys.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from pathlib import Path

from .model import ResolvedModel, load_automodel

log = logging.getLogger(__name__)

# AutoModel's registry and module globals are process-wide: one lean load at a time.
_PATCH_LOCK = threading.Lock()


class LeanLoadError(RuntimeError):
    """The checkpoint cannot be installed without a copy (keys missing or mismatched)."""


def _state_dict_of(checkpoint: Path) -> dict:
    import torch

    state = torch.load(checkpoint, map_location="cpu", mmap=True, weights_only=True)
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    return state


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


def _meta_factory(model_class):
    def build(**kwargs):
        import torch

        with torch.device("meta"):
            return model_class(**kwargs)

    return build


@contextlib.contextmanager
def lean_funasr(model_name: str):
    """Within: FunASR builds ``model_name`` on the meta device and loads weights with :func:`assign_checkpoint`."""
    from funasr.auto import auto_model
    from funasr.register import tables

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
    from .model import quiet_funasr

    with quiet_funasr():
        import funasr  # noqa: F401  (fills FunASR's registry)
    name = model_class_name(resolved.path)
    try:
        with lean_funasr(name):
            automodel = load_automodel(resolved, device)
    except LeanLoadError as exc:
        log.warning("lean loading not possible (%s): loading through FunASR's own copy", exc)
        return load_automodel(resolved, device)
    leftover = [n for n, t in automodel.model.state_dict().items() if t.is_meta]
    if leftover:  # pragma: no cover - assign_checkpoint raises first
        raise LeanLoadError(f"tensors left on the meta device: {', '.join(leftover[:5])}")
    return automodel


def prepare_for_precision(module, mode: str, device: str):
    """The module as it should run in precision ``mode`` on ``device`` (may return a new module).

    - ``int8``: dynamic int8 quantisation of the ``Linear`` layers (CPU);
      activations stay float, the conv front-end stays fp32.
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
        import warnings

        with warnings.catch_warnings():  # torch.ao.quantization deprecation notices
            warnings.simplefilter("ignore")
            head = module.proj
            module = torch.ao.quantization.quantize_dynamic(module, {torch.nn.Linear}, dtype=torch.qint8)
            module.proj = head
            return module
    if mode in ("bf16", "fp16") and not device.startswith("cuda"):
        for layer in module.modules():
            if isinstance(layer, (torch.nn.Linear, torch.nn.Conv1d)) and layer is not module.proj:
                layer.to(torch.bfloat16)
    return module
