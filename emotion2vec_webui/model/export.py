"""Export an emotion2vec+ model (features, classifier head, labels) to a self-contained ONNX folder.

What ``emotion2vec-webui export OUT`` writes (the format :mod:`model.exported` reads back):

- ``model.onnx``: input ``wav`` ``[B, N]`` float32, 16 kHz mono, any ``N`` >= 400
  (clips of one batch share a length); FunASR's waveform layer norm (per clip,
  over its samples, eps 1e-5) is inside the graph, so the input is the raw
  decoded waveform. Outputs ``scores`` ``[B, 9]`` (softmax over the nine
  classes, ``unuse`` tokens dropped), ``frame_logits`` ``[B, T, 9]``,
  ``embedding`` ``[B, D]`` (mean of the frames) and ``frame_embeddings``
  ``[B, T, D]``; ``T = (N - 400) // 320 + 1`` (50 frames per second).
  With ``--head NAME`` also ``head_scores`` ``[B, C]`` (a classifier head's
  softmax) or ``head_values`` ``[B, K]`` (a regression head's target values).
- ``model.int8.onnx`` (``--quantize int8``): ONNX Runtime's dynamic int8
  quantisation of the transformer's MLP matmuls (:func:`quantize_graph`).
- ``head.npz``: the classifier head (``weight`` ``[9, D]``, ``bias`` ``[9]``,
  fp32, unused classes dropped), for stitching long audio window by window.
- ``custom_head.npz`` (``--head NAME``): the trained head's arrays (``mean``,
  ``scale``, ``W0``, ``b0``, …); its kind and targets in ``config.json`` and ``labels.json``.
- ``labels.json``, ``config.json``, ``README.md`` and ``infer.py`` (copied from
  ``model/data/export_infer.py``: needs only onnxruntime, numpy, soundfile and soxr).

The graph is FunASR's own module (not the fast-path swaps, which use strided
views the ONNX tracer does not keep), traced with ``torch.onnx.export`` (opset 17,
dynamic batch and time axes).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from importlib import resources
from pathlib import Path

import numpy as np

from emotion2vec_webui.audio.format import FRAME_HOP, MIN_MODEL_SAMPLES, SAMPLE_RATE
from emotion2vec_webui.labels import EMOTIONS, EMOTIONS_ZH
from emotion2vec_webui.model.exported import (
    CONFIG_FILE,
    EXPORT_FORMAT,
    EXPORT_VERSION,
    HEAD_FILE,
    INT8_FILE,
    MODEL_FILE,
)

log = logging.getLogger(__name__)

OPSET = 17
OUTPUTS = ["scores", "frame_logits", "embedding", "frame_embeddings"]
CUSTOM_HEAD_FILE = "custom_head.npz"
CALIBRATION_FILE = "calibration.json"  # export --calibration: runs/exported_extras.py reads it back
# the transformer blocks' MLP matmuls (2/3 of their matmul work). On the large test model (20 speech clips, max
# score difference against fp32): every transformer matmul 0.0219, attention projection + MLP 0.0231, MLP only
# 0.0051 (benchmarks/export_onnx.md). ONNX Runtime's dynamic int8 has one activation scale per call; the
# torch int8 mode's per-row, centred activations (model/fastpath.py) are what let it quantise attention too.
INT8_LAYERS = ("fc1", "fc2")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _wrapper(module, keep: list[int], normalize: bool, custom: dict | None = None):
    import torch

    class Exportable(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = module
            self.register_buffer("keep", torch.tensor(keep, dtype=torch.long))
            self.custom = None
            self.regression = custom is not None and custom.get("kind") == "regression"
            if custom is not None:  # a trained head (engine/heads.py): standardise, dense layers, ReLU between
                t = lambda a: torch.tensor(np.asarray(a, dtype=np.float32))  # noqa: E731
                self.register_buffer("head_mean", t(custom["mean"]))
                self.register_buffer("head_scale", t(custom["scale"]))
                self.custom = torch.nn.ParameterList()
                for w, b in custom["layers"]:
                    self.custom.append(torch.nn.Parameter(t(w), requires_grad=False))
                    self.custom.append(torch.nn.Parameter(t(b), requires_grad=False))

        def head_scores(self, pooled):
            x = (pooled - self.head_mean) / self.head_scale
            n = len(self.custom) // 2
            for i in range(n):
                x = x @ self.custom[2 * i] + self.custom[2 * i + 1]
                if i < n - 1:
                    x = torch.relu(x)
            return x if self.regression else torch.softmax(x, dim=-1)  # a regression head's values: no softmax

        def forward(self, wav):
            if normalize:  # F.layer_norm over each clip's samples, written out so the time axis stays dynamic
                mean = wav.mean(dim=-1, keepdim=True)
                centred = wav - mean
                wav = centred / torch.sqrt((centred * centred).mean(dim=-1, keepdim=True) + 1e-5)
            x = self.inner.extract_features(wav, padding_mask=None)["x"]  # [B, T, D]
            pooled = x.mean(dim=1)
            frame_logits = self.inner.proj(x).index_select(-1, self.keep)
            scores = torch.softmax(self.inner.proj(pooled).index_select(-1, self.keep), dim=-1)
            if self.custom is not None:
                return scores, frame_logits, pooled, x, self.head_scores(pooled)
            return scores, frame_logits, pooled, x

    return Exportable().eval()


def head_output_name(head: dict) -> str:
    """The graph output of an exported trained head: ``head_values`` (regression) or ``head_scores`` (softmax)."""
    return "head_values" if head.get("kind") == "regression" else "head_scores"


def quantize_graph(source: Path, target: Path) -> int:
    """ONNX Runtime dynamic int8 (per-channel weights) of the transformer blocks' MLP matmuls (``INT8_LAYERS``).

    Attention (qkv, its projection), the conv front-end, the feature
    projection and the classifier heads stay fp32: with the attention
    matmuls in int8 too, the large model's scores moved by 0.022, past the
    0.01 bound (benchmarks/export_onnx.md). Returns how many matmuls were quantised.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(source), load_external_data=False).graph
    consts = {init.name for init in graph.initializer}
    nodes = [
        n.name
        for n in graph.node
        if n.op_type == "MatMul"
        and "/blocks." in n.name
        and any(f"/{layer}/" in n.name for layer in INT8_LAYERS)
        and len(n.input) > 1
        and n.input[1] in consts
    ]
    tmp = target.with_suffix(".tmp.onnx")
    quantize_dynamic(
        str(source),
        str(tmp),
        per_channel=True,
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["MatMul"],
        nodes_to_quantize=nodes,
        extra_options={"MatMulConstBOnly": True},
    )
    os.replace(tmp, target)
    return len(nodes)


def _readme(source: str, quantized: bool) -> str:
    int8 = "\n`model.int8.onnx` is the same graph with int8 MLP matmuls (faster on CPU, scores within ~0.01).\n"
    return f"""# emotion2vec+ as ONNX ({source})

Speech emotion recognition (nine classes) with ONNX Runtime alone: no PyTorch, no FunASR.
Written by `emotion2vec-webui export`. Labels in `labels.json`, provenance in `config.json`.
{int8 if quantized else ""}
    pip install onnxruntime numpy soundfile soxr
    python infer.py clip.wav            # JSON like `emotion2vec-webui recognize --json`
    python infer.py clip.wav --int8 --frames

## In your own code (~20 lines)

```python
import json
import numpy as np
import onnxruntime as ort
import soundfile as sf
import soxr

labels = json.load(open("labels.json", encoding="utf-8"))["labels"]
session = ort.InferenceSession("model.onnx", providers=["CPUExecutionProvider"])

audio, rate = sf.read("clip.wav", dtype="float32", always_2d=True)
audio = audio.mean(axis=1)                       # mono
if rate != 16000:
    audio = soxr.resample(audio, rate, 16000)    # the model takes 16 kHz
scores, frame_logits, embedding, frame_embeddings = session.run(
    None, {{"wav": audio[None].astype(np.float32)}}  # raw waveform: the layer norm is in the graph
)
best = int(np.argmax(scores[0]))
print(labels[best]["en"], labels[best]["zh"], float(scores[0, best]))
```

## The graph

- input `wav` `[batch, samples]` float32, 16 kHz mono, at least 400 samples (clips in one batch share a length);
  FunASR's waveform normalisation (layer norm over each clip, eps 1e-5) is inside the graph.
- `scores` `[batch, 9]`: class probabilities in `labels.json` order (softmax of the head on the mean frame).
- `frame_logits` `[batch, frames, 9]`: the head on each frame (softmax them for per-frame scores); 50 frames/s,
  `frames = (samples - 400) // 320 + 1`.
- `embedding` `[batch, D]` (mean of the frames), `frame_embeddings` `[batch, frames, D]`.
- `head_scores` `[batch, classes]` (only when exported with `--head NAME`): your trained head on `embedding`,
  its labels under `labels.json`'s `"head"`. A regression (dimensional) head gives `head_values`
  `[batch, targets]` instead: its targets' values (arousal, valence …, no softmax), the targets under
  `labels.json`'s `"head"` (`"kind": "regression"`); `infer.py` prints them as `"dimensions"`.
- `head.npz`: the head's weights, for stitching recordings longer than ~30 s window by window
  (attention memory grows with the square of the length).
- `calibration.json` (only when exported with `--calibration NAME`): calibrated confidence,
  `softmax(logits / temperature + bias)` on the nine classes' logits (`target` `"nine"`) or on the trained
  head's (`target` = its name); `infer.py` applies it and says so in its `"calibration"` field. The graph's
  `scores` and `head_scores` are the uncalibrated ones.
"""


def export_model(
    out: Path,
    model: str = "emotion2vec_plus_large",
    hub: str = "ms",
    quantize: str | None = None,
    head: dict | None = None,
    calibration: dict | None = None,
) -> dict:
    """Write the export folder ``out`` (created; must be empty or absent). Returns its ``config.json``.

    ``head``: a trained head to put in the graph (output ``head_scores``), as
    ``engine/heads.py`` loads it: ``name``, ``kind`` (``classification``, the default, or ``regression``:
    output ``head_values``, no softmax), ``labels`` (a regression head's targets), ``labels_zh``, ``spec``
    (its ``checkpoint_sha256`` must be this model's), ``mean``, ``scale``,
    ``layers`` (``[(W [in, out], b [out]), …]``). The faces load it (model/ is below engine/).

    ``calibration``: a saved calibration's ``calibration.json`` document (``engine/calibration.py``), written
    beside the graph as ``calibration.json``: ``infer.py`` and ``E2V_MODEL=<export>`` apply it. Its
    ``checkpoint_sha256`` must be this model's; a head's calibration needs that head (the face checks it).
    """
    import torch

    from emotion2vec_webui import __version__
    from emotion2vec_webui.errors import ERROR_CODES, E2VError
    from emotion2vec_webui.labels import english_key
    from emotion2vec_webui.model.loading import load_automodel_lean
    from emotion2vec_webui.model.resolve import checkpoint_coverage, marker_info, resolve_model

    out = Path(out)
    head_output = [head_output_name(head)] if head is not None else []
    if out.exists() and any(out.iterdir()):
        raise E2VError("bad_request", f"{out} exists and is not empty. / {out} 已存在且非空。")
    t0 = time.perf_counter()
    resolved = resolve_model(model, hub)
    automodel = load_automodel_lean(resolved, "cpu")
    module = automodel.model.eval()
    missing = checkpoint_coverage(module, resolved.path / "model.pt")
    if any(name.startswith("proj.") for name in missing) or getattr(module, "proj", None) is None:
        raise E2VError("model_unavailable", f"The model in {resolved.path} has no classifier head.")
    tokens = list(automodel.kwargs["tokenizer"].token_list)
    keep = [i for i, lab in enumerate(tokens) if not lab.startswith("unuse")]
    if [english_key(tokens[i]) for i in keep] != list(EMOTIONS):
        raise E2VError("model_unavailable", f"The model's labels {tokens} are not the nine emotion2vec+ classes.")
    normalize = bool(module.cfg.normalize)
    checkpoint_hash = file_sha256(resolved.path / "model.pt")
    if head is not None and head["spec"].get("checkpoint_sha256") != checkpoint_hash:
        raise E2VError(
            "head_mismatch" if "head_mismatch" in ERROR_CODES else "bad_request",
            f"Head {head['name']!r} was trained on another model (checkpoint "
            f"{str(head['spec'].get('checkpoint_sha256'))[:12]}…), not {resolved.path} ({checkpoint_hash[:12]}…). / "
            f"分类头 {head['name']!r} 是在另一个模型上训练的，与 {resolved.path} 不匹配。",
        )
    if calibration is not None and calibration.get("checkpoint_sha256") != checkpoint_hash:
        raise E2VError(
            "head_mismatch",
            f"Calibration {calibration.get('name')!r} was fitted on another model (checkpoint "
            f"{str(calibration.get('checkpoint_sha256'))[:12]}…), not {resolved.path} ({checkpoint_hash[:12]}…). / "
            f"校准 {calibration.get('name')!r} 是在另一个模型上拟合的，与 {resolved.path} 不匹配。",
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    staging.chmod(0o755)
    try:
        import warnings

        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer warnings about Python ints in FunASR's ALiBi code
            torch.onnx.export(
                _wrapper(module, keep, normalize, head),
                (torch.zeros(1, 48000),),
                str(staging / MODEL_FILE),
                input_names=["wav"],
                output_names=OUTPUTS + head_output,
                dynamic_axes={
                    **{name: {0: "batch"} for name in head_output},
                    "wav": {0: "batch", 1: "samples"},
                    "scores": {0: "batch"},
                    "frame_logits": {0: "batch", 1: "frames"},
                    "embedding": {0: "batch"},
                    "frame_embeddings": {0: "batch", 1: "frames"},
                },
                opset_version=OPSET,
                dynamo=False,
            )
        weight = module.proj.weight.detach().float().numpy()[keep]
        bias = module.proj.bias.detach().float().numpy()[keep]
        np.savez(staging / HEAD_FILE, weight=weight, bias=bias)
        if head is not None:  # for infer.py's long-audio path (the graph holds the same head)
            arrays = {"mean": head["mean"], "scale": head["scale"]}
            for i, (w, b) in enumerate(head["layers"]):
                arrays[f"W{i}"], arrays[f"b{i}"] = w, b
            np.savez(staging / CUSTOM_HEAD_FILE, **{k: np.asarray(v, dtype=np.float32) for k, v in arrays.items()})
        quantized = 0
        if quantize == "int8":
            quantized = quantize_graph(staging / MODEL_FILE, staging / INT8_FILE)
        elif quantize is not None:
            raise E2VError("bad_request", f"--quantize must be int8, not {quantize!r}.")
        labels = {
            "labels": [{"index": i, "en": k, "zh": EMOTIONS_ZH[k]} for i, k in enumerate(EMOTIONS)],
            "source_tokens": tokens,
            "kept_token_indices": keep,
        }
        if head is not None:
            labels["head"] = {
                "name": head["name"],
                "kind": head.get("kind", "classification"),  # regression: labels are its targets
                "labels": list(head["labels"]),
                "labels_zh": [head["labels_zh"].get(lab, lab) for lab in head["labels"]],
            }
        (staging / "labels.json").write_text(json.dumps(labels, ensure_ascii=False, indent=2) + "\n", "utf-8")
        if calibration is not None:  # applied by infer.py and by the engine on E2V_MODEL=<export>
            text = json.dumps(calibration, ensure_ascii=False, indent=2) + "\n"
            (staging / CALIBRATION_FILE).write_text(text, "utf-8")
        marker = marker_info(resolved.path)
        config = {
            "format": EXPORT_FORMAT,
            "format_version": EXPORT_VERSION,
            "sample_rate": SAMPLE_RATE,
            "frame_rate": SAMPLE_RATE // FRAME_HOP,
            "frame_hop_samples": FRAME_HOP,
            "receptive_field_samples": MIN_MODEL_SAMPLES,
            "waveform_normalization": "layer_norm over each clip's samples, eps 1e-5, inside the graph"
            if normalize
            else "none",
            "opset": OPSET,
            "inputs": {"wav": "[batch, samples] float32, 16 kHz mono"},
            "outputs": OUTPUTS + head_output,
            "files": {"fp32": MODEL_FILE, "int8": INT8_FILE if quantized else None, "head": HEAD_FILE},
            "int8_quantized_matmuls": quantized,
            "embedding_dim": int(weight.shape[1]),
            "num_parameters": int(sum(p.numel() for p in module.parameters())),
            "source_model": {
                "name": resolved.name if resolved.hub != "local" else resolved.path.name,
                "hub": resolved.hub,
                "hub_id": resolved.hub_id,
                "checkpoint_sha256": checkpoint_hash,
                "random_weights": resolved.random_weights,
                "size": marker.get("size"),
            },
            "head": "emotion2vec+ classifier (nine classes)",
            "custom_head": None
            if head is None
            else {
                "name": head["name"],
                "kind": head.get("kind", "classification"),
                "output": head_output[0],
                "classifier": head["spec"].get("classifier"),
                "checkpoint_sha256": head["spec"].get("checkpoint_sha256"),
            },
            "calibration": None
            if calibration is None
            else {"name": calibration.get("name"), "target": calibration.get("target"), "file": CALIBRATION_FILE},
            "tool": {"name": "emotion2vec-webui", "version": __version__, "torch": torch.__version__},
        }
        (staging / CONFIG_FILE).write_text(json.dumps(config, ensure_ascii=False, indent=2) + "\n", "utf-8")
        (staging / "README.md").write_text(_readme(config["source_model"]["name"], bool(quantized)), "utf-8")
        infer = resources.files("emotion2vec_webui.model").joinpath("data/export_infer.py").read_text("utf-8")
        (staging / "infer.py").write_text(infer, "utf-8")
        if out.exists():
            out.rmdir()
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.info("exported %s to %s in %.1f s", resolved.path, out, time.perf_counter() - t0)
    return config
