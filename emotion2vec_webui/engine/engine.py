"""The emotion engine: a 16 kHz waveform in, an :class:`EmotionResult` out.

One object, loaded once, shared by every adapter (UI, REST, CLI, batch). It
knows nothing of files, HTTP or Gradio. It runs the FunASR ``Emotion2vec``
module that ``funasr.AutoModel`` loaded, doing what
``Emotion2vec.inference`` does (layer-norm the waveform, extract features,
mean-pool, classifier head, mask ``unuse`` classes, softmax) on a waveform we
decoded ourselves, so FunASR's generic loader never sees untrusted input, and
exposing the per-frame features that ``inference`` throws away.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from emotion2vec_webui.audio.format import SAMPLE_RATE
from emotion2vec_webui.engine.batching import recognize_batch
from emotion2vec_webui.engine.longform import recognize_windowed
from emotion2vec_webui.engine.precision import (  # noqa: F401  (PRECISIONS, resolve_precision: imported from here too)
    _DTYPE_NAMES,
    PRECISIONS,
    choose_precision,
    resolve_precision,
)
from emotion2vec_webui.engine.result import EmotionResult, check_waveforms, result_from_features
from emotion2vec_webui.errors import ModelUnavailableError
from emotion2vec_webui.labels import EMOTIONS, english_key
from emotion2vec_webui.model.loading import load_automodel_lean, prepare_for_precision
from emotion2vec_webui.model.resolve import (
    HUB_NAMES,
    ModelInfo,
    checkpoint_coverage,
    marker_info,
    resolve_device,
    resolve_model,
)

log = logging.getLogger(__name__)

def _source(module, waveform: np.ndarray, device: str):
    """The model's input for one 16 kHz waveform: a float32 tensor on ``device``, normalised if the config says so."""
    import torch
    import torch.nn.functional as F

    source = torch.from_numpy(np.ascontiguousarray(waveform, dtype=np.float32)).to(device)
    if module.cfg.normalize:
        source = F.layer_norm(source, source.shape)
    return source


class EmotionEngine:
    """A loaded emotion2vec model and the one way to run it.

    Calls are serialised by a lock: one inference at a time per engine (and
    so per device); queueing in front of it is the adapters' business.
    """

    def __init__(self, automodel, info: ModelInfo, labels: list[str], exported=None) -> None:
        self.automodel = automodel  # None for an ONNX export (``exported``: model.exported.ExportedModel)
        self.module = automodel.model if automodel is not None else None
        self.info = info
        self.labels = labels  # model token order, English keys ("unuse…" kept as is)
        self.lock = threading.Lock()  # one inference at a time on this model
        self._precision = {v: k for k, v in _DTYPE_NAMES.items()}[info.dtype]
        self._onnx = None  # onnx_backend.OnnxFeatures in the onnx* modes
        self.exported = exported  # an export folder run by ONNX Runtime alone (no torch): numpy in, numpy out
        keep = [i for i, lab in enumerate(labels) if not lab.startswith("unuse")]
        self._keep = keep
        # Head-only mode (emotion2vec_base, or a checkpoint without the nine-class head): features only;
        # every recognition then needs a trained head (engine/heads.py, runs/recognize.py refuses without).
        self.head_only = [labels[i] for i in keep] != list(EMOTIONS)
        if self.head_only:
            log.warning("no nine-class head (labels %s): head-only mode, recognition needs a trained head", labels)

    @classmethod
    def load(
        cls,
        model: str = "emotion2vec_plus_large",
        hub: str = "ms",
        device: str = "auto",
        precision: str = "auto",
        warmup: bool = True,
    ) -> EmotionEngine:
        """Resolve, load and warm up a model.

        Args:
            model: a name from docs/README.md, a hub id, or a local directory.
            hub: ``ms`` or ``hf``.
            device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
            precision: one of ``options.PRECISION`` (``auto``, ``fp32``, ``bf16``, ``fp16``, ``int8``, ``onnx``,
                ``onnx-int8``); :func:`resolve_precision` picks the mode ``auto`` means here.
            warmup: run one short inference so the first request is not slow.

        Raises:
            ModelUnavailableError: the model cannot be had or loaded.
            E2VError: ``bad_request`` for a precision not in options.PRECISION (before anything is resolved).
        """
        t0 = time.perf_counter()
        from emotion2vec_webui.model.exported import is_export
        from emotion2vec_webui.options import PRECISION

        precision = PRECISION.check(precision)  # bad_request before resolve_model, which may start a 2 GB download
        if is_export(model):  # ONNX Runtime alone: this branch imports neither torch nor FunASR
            return cls._load_export(model, device, precision, warmup, t0)
        resolved = resolve_model(model, hub)
        dev = resolve_device(device)
        mode, note = choose_precision(precision, dev)
        if note:
            log.info("precision %s", note)
        try:
            automodel = load_automodel_lean(resolved, dev)  # FunASR's class and config, weights memory-mapped
        except Exception as exc:  # FunASR raises many types for a broken directory
            raise ModelUnavailableError(
                f"FunASR could not load the model from {resolved.path}: {type(exc).__name__}: {str(exc)[:300]}"
            ) from exc
        module = automodel.model
        missing = checkpoint_coverage(module, resolved.path / "model.pt")
        if missing:
            log.warning(
                "%d of %d tensors were not in %s (left at random init): %s",
                len(missing),
                len(module.state_dict()),
                resolved.path / "model.pt",
                ", ".join(missing[:5]),
            )
        # No nine-class head in the checkpoint (emotion2vec_base) or the module: head-only mode (docs/heads.md).
        head_only = any(name.startswith("proj.") for name in missing) or getattr(module, "proj", None) is None
        onnx = None
        if mode.startswith("onnx"):  # the feature path runs in ONNX Runtime; the torch module stays fp32
            import torch

            from emotion2vec_webui.model.onnx_backend import load_features

            onnx = load_features(module, resolved.path, mode == "onnx-int8", torch.get_num_threads())
        else:
            from emotion2vec_webui.model.fastpath import use_conv_front_end, use_pos_conv

            use_conv_front_end(module)  # same math as FunASR's; after the coverage check (it renames tensors)
            if dev == "cpu":  # on a GPU one grouped convolution beats a product per kernel tap
                use_pos_conv(module)
            if mode != "fp32":
                from emotion2vec_webui.model.fastpath import calibration_signal

                def calibrate():
                    module.extract_features(_source(module, calibration_signal(), dev).view(1, -1), padding_mask=None)

                module = prepare_for_precision(module, mode, dev, calibrate)
                automodel.model = module
        tokenizer = automodel.kwargs.get("tokenizer")
        tokens = [] if head_only or tokenizer is None else list(tokenizer.token_list)
        labels = [lab if lab.startswith("unuse") else english_key(lab) for lab in tokens]
        marker = marker_info(resolved.path)
        display = (
            resolved.name
            if resolved.hub != "local"
            else (f"{resolved.path.name} (random weights, {marker.get('size', '?')})" if marker else resolved.path.name)
        )
        info = ModelInfo(
            name=display,
            hub=resolved.hub,
            hub_id=resolved.hub_id,
            path=str(resolved.path),
            device=dev,
            dtype=_DTYPE_NAMES[mode],
            random_weights=resolved.random_weights,
            num_parameters=sum(p.numel() for p in module.parameters()),
            embedding_dim=int(getattr(getattr(module, "proj", None), "in_features", 0) or 0),
            load_s=0.0,
            precision_note=note,
        )
        engine = cls(automodel, info, labels)
        engine._onnx = onnx
        if warmup:
            engine.recognize(np.random.default_rng(0).normal(0, 0.1, SAMPLE_RATE).astype(np.float32))
        engine.info = replace(info, load_s=time.perf_counter() - t0)
        log.info(
            "model ready: %s from %s on %s (%s) in %.1f s%s",
            info.name,
            HUB_NAMES[info.hub],
            dev,
            info.dtype,
            engine.info.load_s,
            " — RANDOM WEIGHTS" if info.random_weights else "",
        )
        return engine

    @classmethod
    def _load_export(cls, path: str, device: str, precision: str, warmup: bool, t0: float) -> EmotionEngine:
        """An engine on an ``emotion2vec-webui export`` folder: ONNX Runtime, CPU, fp32 or int8 graph."""
        import os
        from pathlib import Path

        from emotion2vec_webui.model.exported import INT8_FILE, load_export, onnxruntime_available

        if not onnxruntime_available():
            raise ModelUnavailableError(
                f"{path} is an ONNX export; running it needs onnxruntime (pip install onnxruntime). / "
                "该目录是 ONNX 导出模型，运行需要 onnxruntime。"
            )
        precision = (precision or "auto").lower()
        if device not in ("auto", "cpu"):
            log.warning("an ONNX export runs on CPU only: ignoring device %s", device)
        has_int8 = (Path(path).expanduser() / INT8_FILE).is_file()
        if precision in ("int8", "onnx-int8") and not has_int8:
            log.warning("%s has no int8 graph (export with --quantize int8): using fp32", path)
        int8 = precision in ("int8", "onnx-int8") and has_int8
        if precision not in ("auto", "fp32", "onnx", "int8", "onnx-int8"):
            log.warning("an ONNX export runs fp32 or int8 graphs, not %s: using fp32", precision)
        try:
            exported = load_export(path, int8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)
        except ModelUnavailableError:  # a folder that fails a check: the reason says which file and why
            raise
        except Exception as exc:  # a broken graph (its text names the folder by name, not by server path)
            name, reason = Path(path).expanduser().resolve(), str(exc)[:300]
            raise ModelUnavailableError(
                f"The ONNX export {name.name!r} could not be loaded: {type(exc).__name__}: "
                f"{reason.replace(str(name), name.name)} / ONNX 导出目录 {name.name!r} 无法加载。"
            ) from exc
        config, source = exported.config, exported.config.get("source_model", {})
        labels = list(exported.labels)  # labels.json, checked by load_export
        size = f", {source['size']}" if source.get("size") else ""
        info = ModelInfo(
            name=f"{source.get('name', exported.path.name)} (ONNX export{size}"
            + (", random weights)" if source.get("random_weights") else ")"),
            hub="local",
            hub_id=source.get("hub_id"),
            path=str(exported.path),
            device="cpu",
            dtype="onnx-int8" if int8 else "onnx-float32",
            random_weights=bool(source.get("random_weights")),
            num_parameters=int(config.get("num_parameters", 0)),
            embedding_dim=int(config.get("embedding_dim", 0)),
            load_s=0.0,
            precision_note="auto: an ONNX export runs its fp32 graph (E2V_PRECISION=int8 for model.int8.onnx)"
            if precision == "auto"
            else "",
        )
        engine = cls(None, info, labels, exported=exported)
        if warmup:
            engine.recognize(np.random.default_rng(0).normal(0, 0.1, SAMPLE_RATE).astype(np.float32))
        engine.info = replace(info, load_s=time.perf_counter() - t0)
        log.info("model ready: %s, ONNX Runtime (%s) in %.1f s", info.name, info.dtype, engine.info.load_s)
        return engine

    @classmethod
    def from_settings(cls, settings, warmup: bool = True) -> EmotionEngine:
        """Load the engine that ``settings`` (``E2V_MODEL``, ``E2V_HUB``, ``E2V_DEVICE``, ``E2V_PRECISION``) name."""
        return cls.load(settings.model, settings.hub, settings.device, settings.precision, warmup=warmup)

    def autocast(self):
        """The autocast context of this engine's precision (a no-op in fp32 and int8)."""
        import contextlib

        if self.exported is not None or self._precision not in ("bf16", "fp16"):
            return contextlib.nullcontext()
        import torch

        if self._precision in ("bf16", "fp16"):
            dtype = torch.bfloat16 if self._precision == "bf16" else torch.float16
            return torch.autocast(device_type=self.info.device.split(":")[0], dtype=dtype)
        return contextlib.nullcontext()

    def frame_features(self, waveform: np.ndarray):
        """Per-frame features ``[T, D]`` (a float32 torch tensor on the model's device; numpy for an export)."""
        if self.exported is not None:
            return self.exported.frame_features(waveform)
        import torch

        source = _source(self.module, waveform, self.info.device)
        if self._onnx is not None:
            return torch.from_numpy(self._onnx(source.numpy()))
        with torch.inference_mode(), self.autocast():
            x = self.module.extract_features(source.view(1, -1), padding_mask=None)["x"]
        return x[0].float()

    def head_logits(self, features):
        """Classifier head on features ``[..., D]`` → logits ``[..., 9]`` with unused classes dropped.

        Head-only mode: zeros (uniform placeholder scores; recognition then requires a trained head).
        """
        if self.head_only:
            return features.new_zeros((*features.shape[:-1], len(EMOTIONS))).float()
        if self.exported is not None:  # the export's head already drops them
            return self.exported.head_logits(features)
        import torch

        with torch.inference_mode():
            logits = self.module.proj(features)
        return logits[..., self._keep].float()

    def recognize_batch(
        self,
        waveforms: list[np.ndarray],
        granularity: str = "utterance",
        extract_embedding: bool = True,
        max_batch: int | None = None,
        window_s: float = 30.0,
    ) -> list[EmotionResult]:
        """Classify several waveforms in length-bucketed, correctly masked batches (see batching.py).

        Results equal one-by-one :meth:`recognize` calls (to ~1e-6). ``max_batch``
        defaults to 8 on CUDA and 1 on CPU, where padded batches do not pay.
        Clips longer than ``window_s`` go through the windowed path, as in :meth:`recognize`.
        """
        if max_batch is None or self.exported is not None:  # an export runs clip by clip
            max_batch = 8 if self.info.device.startswith("cuda") and self.exported is None else 1
        return recognize_batch(self, waveforms, granularity, extract_embedding, max_batch, window_s=window_s)

    @property
    def batchable(self) -> bool:
        """Whether :meth:`features_batch` runs one padded pass (a PyTorch module); ONNX paths run clip by clip."""
        return self.exported is None and self._onnx is None and self.module is not None

    def features_batch(self, waveforms: list[np.ndarray]) -> list:
        """Frame features of several short clips (each under ``E2V_WINDOW_S``) in one padded, masked pass.

        Each item equals :meth:`frame_features` of its clip (to ~1e-6 in fp32; see batching.py); an engine that
        is not :attr:`batchable` runs them one by one. The scheduler's batching entry point (runs/inference/scheduler.py).
        """
        from emotion2vec_webui.engine.batching import padded_features

        with self.lock:
            if len(waveforms) == 1 or not self.batchable:
                return [self.frame_features(w) for w in waveforms]
            return padded_features(self, waveforms)

    def recognize(
        self,
        waveform: np.ndarray,
        granularity: str = "utterance",
        extract_embedding: bool = True,
        window_s: float = 30.0,
        on_window: Callable[[int, int], None] | None = None,
    ) -> EmotionResult:
        """Classify one 16 kHz mono float32 waveform.

        Args:
            waveform: the decoded signal (see :func:`audio.decode_audio`).
            granularity: ``utterance`` (one embedding ``[D]``) or ``frame``
                (embedding ``[T, D]`` and per-frame logits).
            extract_embedding: return the embedding.
            window_s: longer audio is processed in overlapping windows (E2V_WINDOW_S; see longform.py).
            on_window: ``on_window(k, n)`` as window ``k`` of ``n`` starts (long audio only), for progress.

        Returns:
            The scores of all nine classes and, when asked, the embedding.
        """
        check_waveforms([waveform], granularity)
        if window_s > 0 and waveform.size > window_s * SAMPLE_RATE:  # bounded memory, linear time
            with self.lock:
                return recognize_windowed(self, waveform, granularity, extract_embedding, window_s, on_window)
        with self.lock:
            t0 = time.perf_counter()
            feats = self.frame_features(waveform)  # [T, D]
            return result_from_features(self.head_logits, feats, granularity, extract_embedding, time.perf_counter() - t0)
