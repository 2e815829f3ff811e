"""Read an ``emotion2vec-webui export`` folder and run it with ONNX Runtime: no torch, no FunASR.

This module imports only numpy (and onnxruntime when a graph is loaded), so a
deployment whose environment has neither PyTorch nor FunASR can serve an
export (``E2V_MODEL=<export folder>``; see README "ONNX-only install").
The writer is :mod:`model.export`.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

EXPORT_FORMAT = "emotion2vec-webui-onnx"
EXPORT_VERSION = 1
CONFIG_FILE = "config.json"
MODEL_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
HEAD_FILE = "head.npz"


def is_export(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a directory written by ``emotion2vec-webui export``."""
    config = Path(path).expanduser() / CONFIG_FILE
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text("utf-8")).get("format") == EXPORT_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass
class ExportedModel:
    """A loaded export: the ONNX Runtime session, its head and its provenance."""

    path: Path
    config: dict
    graph: str  # the .onnx file the session runs
    session: object  # onnxruntime.InferenceSession
    head_weight: np.ndarray  # [9, D] float32
    head_bias: np.ndarray  # [9] float32

    def frame_features(self, waveform: np.ndarray) -> np.ndarray:
        """Frame embeddings ``[T, D]`` (float32) of one raw 16 kHz waveform (normalised inside the graph)."""
        wav = np.ascontiguousarray(waveform, dtype=np.float32)[None]
        return self.session.run(["frame_embeddings"], {"wav": wav})[0][0]

    def run(self, waveforms: np.ndarray) -> dict[str, np.ndarray]:
        """All four outputs for a batch ``[B, N]`` of equal-length raw waveforms."""
        names = [o.name for o in self.session.get_outputs()]
        wav = np.ascontiguousarray(waveforms, dtype=np.float32)
        return dict(zip(names, self.session.run(names, {"wav": wav}), strict=True))

    def head_logits(self, features: np.ndarray) -> np.ndarray:
        """The classifier head on ``[..., D]`` → ``[..., 9]`` (float32)."""
        return (np.asarray(features, dtype=np.float32) @ self.head_weight.T + self.head_bias).astype(np.float32)


def load_export(path: str | os.PathLike, int8: bool, threads: int) -> ExportedModel:
    """Open the fp32 (or, with ``int8``, the int8) graph of the export at ``path`` in ONNX Runtime (CPU)."""
    import onnxruntime as ort

    folder = Path(path).expanduser().resolve()
    config = json.loads((folder / CONFIG_FILE).read_text("utf-8"))
    graph = folder / (INT8_FILE if int8 else MODEL_FILE)
    if not graph.is_file():
        raise FileNotFoundError(f"{graph} is not there (export with --quantize int8 for the int8 graph)")
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, threads)
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # as onnx_backend.py
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
    head = np.load(folder / HEAD_FILE)
    return ExportedModel(
        path=folder,
        config=config,
        graph=str(graph),
        session=session,
        head_weight=np.ascontiguousarray(head["weight"], dtype=np.float32),
        head_bias=np.ascontiguousarray(head["bias"], dtype=np.float32),
    )
