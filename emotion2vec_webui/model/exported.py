"""Read an ``emotion2vec-webui export`` folder and run it with ONNX Runtime: no torch, no FunASR.

This module imports only numpy (and onnxruntime when a graph is loaded), so a
deployment whose environment has neither PyTorch nor FunASR can serve an
export (``E2V_MODEL=<export folder>``; see README "ONNX-only install").
The writer is :mod:`model.export`.

An export folder can be copied around and edited, so :func:`load_export`
checks it before use: ``config.json`` and ``labels.json`` (types, the nine
classes in the graph's order, as many as the graph's ``scores`` has), the
graph's outputs, and ``head.npz`` (read header first by :mod:`model.safe_npz`:
shapes against ``embedding_dim``, finite values). A folder that fails is
``model_unavailable`` with the reason, naming the folder by its name.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emotion2vec_webui.errors import ModelUnavailableError
from emotion2vec_webui.labels import EMOTIONS
from emotion2vec_webui.model.safe_npz import NpzRefused, read_npz

log = logging.getLogger(__name__)

EXPORT_FORMAT = "emotion2vec-webui-onnx"
EXPORT_VERSION = 1
CONFIG_FILE = "config.json"
MODEL_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
HEAD_FILE = "head.npz"
LABELS_FILE = "labels.json"
OUTPUTS = ("scores", "frame_logits", "embedding", "frame_embeddings")
MAX_JSON_BYTES = 1 << 20
MAX_HEAD_BYTES = 64 << 20


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
    labels: tuple[str, ...] = EMOTIONS  # the classes of ``scores``, in order (labels.json, checked)

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
    """Open the fp32 (or, with ``int8``, the int8) graph of the export at ``path`` in ONNX Runtime (CPU).

    Raises:
        ModelUnavailableError: the folder fails a check (the reason, in English and Chinese).
        FileNotFoundError: the graph asked for is not there.
    """
    import onnxruntime as ort

    folder = Path(path).expanduser().resolve()
    config = check_config(folder, _read_json(folder, CONFIG_FILE))
    labels = check_labels(folder, _read_json(folder, LABELS_FILE))
    graph = folder / (INT8_FILE if int8 else MODEL_FILE)
    if not graph.is_file():
        raise FileNotFoundError(f"{graph.name} is not there (export with --quantize int8 for the int8 graph)")
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, threads)
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # as onnx_backend.py
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
    check_outputs(folder, graph.name, session, len(labels), config)
    weight, bias = check_head(folder, len(labels), config["embedding_dim"])
    return ExportedModel(
        path=folder,
        config=config,
        graph=str(graph),
        session=session,
        head_weight=weight,
        head_bias=bias,
        labels=tuple(labels),
    )


def _invalid(folder: Path, file: str, en: str, zh: str) -> ModelUnavailableError:
    return ModelUnavailableError(
        f"The ONNX export {folder.name!r} is invalid: {file}: {en}. Export the model again "
        f"(emotion2vec-webui export). / ONNX 导出目录 {folder.name!r} 无效:{file}:{zh}。请重新导出"
        "(emotion2vec-webui export)。"
    )


def _type(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _read_json(folder: Path, name: str) -> object:
    try:
        with (folder / name).open("rb") as fh:
            data = fh.read(MAX_JSON_BYTES + 1)
    except OSError as exc:
        raise _invalid(folder, name, f"cannot be read ({exc.strerror})", "无法读取") from None
    if len(data) > MAX_JSON_BYTES:
        raise _invalid(folder, name, "the file is over 1 MiB", "文件超过 1 MiB")
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _invalid(folder, name, f"not valid JSON ({str(exc)[:120]})", "不是有效的 JSON") from None


def check_config(folder: Path, config: object) -> dict:
    """``config.json``'s fields that are read, by type. Raises ``model_unavailable``."""

    def bad(en: str, zh: str) -> ModelUnavailableError:
        return _invalid(folder, CONFIG_FILE, en, zh)

    if not isinstance(config, dict) or config.get("format") != EXPORT_FORMAT:
        raise bad(f'not an object with "format": "{EXPORT_FORMAT}"', f'应为 "format" 为 "{EXPORT_FORMAT}" 的对象')
    version = config.get("format_version", EXPORT_VERSION)
    if not _whole(version) or version > EXPORT_VERSION:
        raise bad(f"format_version {str(version)[:20]} is not one this version reads ({EXPORT_VERSION})",
                  f"format_version {str(version)[:20]} 不受支持")  # fmt: skip
    if not _whole(config.get("embedding_dim")) or config["embedding_dim"] <= 0:
        raise bad('"embedding_dim" must be a positive whole number', '"embedding_dim" 应为正整数')
    if not _whole(config.get("num_parameters", 0)) or config.get("num_parameters", 0) < 0:
        raise bad('"num_parameters" must be a whole number', '"num_parameters" 应为整数')
    source = config.get("source_model", {})
    if not isinstance(source, dict):
        raise bad(f'"source_model" must be an object, not {_type(source)}', '"source_model" 应为对象')
    for key in ("name", "hub", "hub_id", "size", "checkpoint_sha256"):
        if source.get(key) is not None and not isinstance(source[key], str):
            raise bad(f'"source_model.{key}" must be text, not {_type(source[key])}', f'"source_model.{key}" 应为文本')
    if not isinstance(source.get("random_weights", False), bool):
        raise bad('"source_model.random_weights" must be true or false', '"source_model.random_weights" 应为布尔值')
    if not isinstance(config.get("custom_head"), dict | None):
        raise bad('"custom_head" must be an object or null', '"custom_head" 应为对象或 null')
    return config


def check_labels(folder: Path, doc: object) -> list[str]:
    """``labels.json``: the nine emotion2vec+ classes in the graph's order. Raises ``model_unavailable``."""

    def bad(en: str, zh: str) -> ModelUnavailableError:
        return _invalid(folder, LABELS_FILE, en, zh)

    labels = doc.get("labels") if isinstance(doc, dict) else None
    if not isinstance(labels, list) or not all(
        isinstance(x, dict) and isinstance(x.get("en"), str) and isinstance(x.get("zh"), str) for x in labels
    ):
        raise bad('must be an object whose "labels" lists {"en": …, "zh": …} for each class',
                  '应为对象,其 "labels" 为每个类别的 {"en": …, "zh": …} 列表')  # fmt: skip
    keys = [x["en"] for x in labels]
    if keys != list(EMOTIONS):
        shown = ", ".join(k[:20] for k in keys[:12])
        raise bad(f"the classes ({len(keys)}: {shown}) are not the nine emotion2vec+ classes in the graph's order "
                  f"({', '.join(EMOTIONS)})", f"类别({len(keys)} 个)不是按模型输出顺序排列的九个 emotion2vec+ 类别")  # fmt: skip
    head = doc.get("head")
    if head is not None and not (
        isinstance(head, dict)
        and isinstance(head.get("name"), str)
        and isinstance(head.get("labels"), list)
        and all(isinstance(x, str) for x in head["labels"])
        and isinstance(head.get("labels_zh"), list)
        and len(head["labels_zh"]) == len(head["labels"])
        and all(isinstance(x, str) for x in head["labels_zh"])
    ):
        raise bad('"head" must name the trained head and list its labels and labels_zh (text, one each)',
                  '"head" 应包含分类头名称及等长的 labels、labels_zh 文本列表')  # fmt: skip
    return keys


def check_outputs(folder: Path, graph: str, session, classes: int, config: dict) -> None:
    """The graph has the four outputs, ``classes`` scores and ``embedding_dim`` features. Raises ``model_unavailable``."""
    shapes = {o.name: list(o.shape or []) for o in session.get_outputs()}
    missing = [name for name in OUTPUTS if name not in shapes]
    if missing:
        raise _invalid(folder, graph, f"the graph lacks the outputs {', '.join(missing)}",
                       f"模型缺少输出 {', '.join(missing)}")  # fmt: skip
    widths = {"scores": classes, "frame_logits": classes, "embedding": config["embedding_dim"],
              "frame_embeddings": config["embedding_dim"]}  # fmt: skip
    for name, want in widths.items():
        got = shapes[name][-1] if shapes[name] else None
        if isinstance(got, int) and got != want:
            file = LABELS_FILE if name in ("scores", "frame_logits") else CONFIG_FILE
            raise _invalid(folder, file, f"says {want} but the graph's {name} has {got}",
                           f"为 {want},但模型输出 {name} 为 {got}")  # fmt: skip


def check_head(folder: Path, classes: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """``head.npz``'s ``weight`` ``[classes, dim]`` and ``bias`` ``[classes]``, finite. Raises ``model_unavailable``."""
    try:
        arrays = read_npz(folder / HEAD_FILE, MAX_HEAD_BYTES)
    except NpzRefused as exc:
        raise _invalid(folder, HEAD_FILE, exc.en, exc.zh) from None
    except OSError as exc:
        raise _invalid(folder, HEAD_FILE, f"cannot be read ({exc.strerror})", "无法读取") from None
    weight, bias = arrays.get("weight"), arrays.get("bias")
    if set(arrays) != {"weight", "bias"} or weight.shape != (classes, dim) or bias.shape != (classes,):
        shapes = ", ".join(f"{k} {v.shape}" for k, v in sorted(arrays.items())[:4]) or "nothing"
        raise _invalid(folder, HEAD_FILE, f"must hold weight [{classes}, {dim}] and bias [{classes}], not {shapes}",
                       f"应包含 weight [{classes}, {dim}] 与 bias [{classes}],实际为 {shapes}")  # fmt: skip
    weight = np.ascontiguousarray(weight, dtype=np.float32)
    bias = np.ascontiguousarray(bias, dtype=np.float32)
    if not (np.isfinite(weight).all() and np.isfinite(bias).all()):
        raise _invalid(folder, HEAD_FILE, "holds NaN or infinite values", "含有 NaN 或无穷大")
    return weight, bias
