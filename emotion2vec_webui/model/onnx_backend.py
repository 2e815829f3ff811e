"""ONNX Runtime backend for the feature path (waveform → per-frame features), CPU only.

Why: on CPUs without AMX, torch's eager fp32 path spends a fifth of its time
in copies (transposes around the conv front-end's layer norms and the
attention reshapes) and runs LayerNorm, GELU and the ALiBi attention as
separate kernels. ONNX Runtime's graph optimiser fuses them, and gives the
same features to ~1e-5 (precision ``onnx``). ``onnx-int8`` adds ONNX Runtime's
dynamic int8 quantisation of the weight matmuls (per-channel, VNNI kernels):
faster still, but further from fp32 (see benchmarks/engine_vs_funasr.md).

The module FunASR loaded is exported once (``torch.onnx.export``, dynamic
time axis) and cached under ``E2V_ONNX_CACHE`` (default
``~/.cache/emotion2vec-webui/onnx``), keyed by the checkpoint's path, size
and mtime and the torch version; the classifier head stays in torch (fp32).
``onnx`` and ``onnxruntime`` are default dependencies (pyproject.toml); where
they are missing anyway, :func:`available` is false and the engine falls back
to torch with a logged warning (``pip install onnx onnxruntime``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


def available() -> bool:
    """Whether ``onnxruntime`` (and ``onnx``, for the export) can be imported."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def cache_dir() -> Path:
    """Where exported graphs live (``E2V_ONNX_CACHE``)."""
    from emotion2vec_webui.config import onnx_cache_dir

    return onnx_cache_dir()


def _cache_key(model_dir: Path) -> str:
    import torch

    checkpoint = model_dir / "model.pt"
    stat = checkpoint.stat()
    ident = f"{checkpoint.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{torch.__version__}|v1"
    return hashlib.sha256(ident.encode()).hexdigest()[:16]


def _export(module, target: Path) -> None:
    """Export ``module.extract_features`` (normalised waveform ``[1, N]`` → ``[1, T, D]``) to ``target``, atomically."""
    import warnings

    import torch

    class Features(torch.nn.Module):
        def __init__(self, inner) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, wav):
            return self.inner.extract_features(wav, padding_mask=None)["x"]

    example = torch.zeros(1, 48000)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python ints in FunASR's ALiBi code
        path = Path(tmp) / "features.onnx"
        torch.onnx.export(
            Features(module).eval(),
            (example,),
            str(path),
            input_names=["wav"],
            output_names=["x"],
            dynamic_axes={"wav": {1: "samples"}, "x": {1: "frames"}},
            opset_version=17,
            dynamo=False,
        )
        os.replace(path, target)


def _quantize(source: Path, target: Path) -> None:
    """ONNX Runtime dynamic int8 of the transformer blocks' MLP matmuls, as ``export --quantize int8`` does.

    Attention stays fp32 (:func:`model.export.quantize_graph` says why): with every matmul in int8, onnxruntime
    1.32 moved the tiny test model's scores by 0.12 (its own bound is 0.05). Written atomically by that function.
    """
    from emotion2vec_webui.model.export import quantize_graph

    count = quantize_graph(source, target)
    log.info("onnx-int8: %d MLP matmuls in int8 (attention in fp32)", count)


@dataclass(frozen=True)
class OnnxFeatures:
    session: object  # onnxruntime.InferenceSession of the feature graph
    path: str  # the graph file it runs

    def __call__(self, normalized: np.ndarray) -> np.ndarray:
        """Features ``[T, D]`` (float32) of a layer-normalised 16 kHz waveform ``[N]``."""
        wav = np.ascontiguousarray(normalized, dtype=np.float32)[None]
        return self.session.run(None, {"wav": wav})[0][0]


def load_features(module, model_dir: Path, quantize: bool, threads: int) -> OnnxFeatures:
    """The feature graph of ``module`` as an ONNX Runtime session (exported and cached on first use).

    Args:
        module: FunASR's ``Emotion2vec`` module, fp32, as loaded.
        model_dir: the model's directory (its ``model.pt`` keys the cache).
        quantize: use the dynamic int8 graph.
        threads: intra-op threads (the engine's torch thread count).
    """
    import onnxruntime as ort

    folder = cache_dir() / _cache_key(model_dir)
    folder.mkdir(parents=True, exist_ok=True)
    fp32 = folder / "features.onnx"
    if not fp32.exists():
        log.info("exporting the feature path to ONNX (once per model): %s", fp32)
        _export(module, fp32)
    path = fp32
    if quantize:
        path = folder / "features.int8.onnx"
        if not path.exists():
            log.info("quantising the ONNX graph to int8 (once per model): %s", path)
            _quantize(fp32, path)
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, threads)
    options.inter_op_num_threads = 1
    # ONNX Runtime's threads otherwise spin for a while after each run, taking the cores from the
    # torch work (the HTTP server, other engines) that shares this process
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return OnnxFeatures(session=session, path=str(path))
