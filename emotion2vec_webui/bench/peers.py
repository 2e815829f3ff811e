"""Hugging Face speech emotion classifiers, run the way transformers runs them, for ``bench``.

Users choose between Emotion2Vec+ and Hugging Face peers (wav2vec2-base and
HuBERT-large fine-tuned for emotion on SUPERB ER). A peer is named
``hf:<repo id>`` (e.g. ``hf:superb/hubert-large-superb-er``, loaded with
``AutoFeatureExtractor`` + ``AutoModelForAudioClassification``, from the HF
cache or hub), or ``hf-random:<name>``: the same architecture built from a
config with random weights, for machines without a hub. The stand-ins have
the real models' shape and compute, so their speed and memory are the real
models' (their accuracy is chance).

transformers is an optional dependency (``pip install 'emotion2vec-webui[bench]'``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from emotion2vec_webui.audio.format import SAMPLE_RATE
from emotion2vec_webui.errors import E2VError, ModelUnavailableError
from emotion2vec_webui.jobs.evaluation import map_label

# SUPERB ER (IEMOCAP, four classes) as the superb/*-superb-er checkpoints label them.
SUPERB_ER_LABELS = ("neu", "hap", "ang", "sad")
RANDOM_PEERS = ("wav2vec2-base", "hubert-large", "wav2vec2-tiny")  # tiny: for tests and smoke runs


@dataclass(frozen=True)
class PeerInfo:
    name: str  # as asked: hf:<repo> or hf-random:<name>
    architecture: str  # transformers model class
    num_parameters: int
    labels: tuple[str, ...]  # the peer's own labels, model order
    random_weights: bool  # a stand-in built from a config
    device: str
    dtype: str  # float32, bfloat16, float16, int8
    load_s: float  # seconds to build or load


@lru_cache(maxsize=1)
def _transformers():
    try:
        import transformers
    except ImportError as exc:
        raise ModelUnavailableError(
            "Hugging Face peers need transformers: pip install 'emotion2vec-webui[bench]'"
        ) from exc
    transformers.logging.set_verbosity_error()
    return transformers


def is_peer(name: str) -> bool:
    """True for ``hf:<repo>`` and ``hf-random:<name>``."""
    return name.startswith(("hf:", "hf-random:"))


def random_config(name: str):
    """A transformers config with the shape of the SUPERB ER checkpoint ``name`` stands in for."""
    tf = _transformers()
    labels = {"id2label": dict(enumerate(SUPERB_ER_LABELS)), "label2id": {k: i for i, k in enumerate(SUPERB_ER_LABELS)}}
    if name == "wav2vec2-base":  # superb/wav2vec2-base-superb-er
        return tf.Wav2Vec2Config(use_weighted_layer_sum=True, classifier_proj_size=256, **labels)
    if name == "wav2vec2-tiny":  # the wav2vec2 graph at toy size: tests and smoke runs only
        return tf.Wav2Vec2Config(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            conv_dim=(32, 32, 32, 32, 32, 32, 32),
            num_conv_pos_embeddings=16,
            num_conv_pos_embedding_groups=4,
            use_weighted_layer_sum=True,
            classifier_proj_size=16,
            **labels,
        )
    if name == "hubert-large":  # superb/hubert-large-superb-er
        return tf.HubertConfig(
            hidden_size=1024,
            num_hidden_layers=24,
            num_attention_heads=16,
            intermediate_size=4096,
            feat_extract_norm="layer",
            do_stable_layer_norm=True,
            conv_bias=True,
            use_weighted_layer_sum=True,
            classifier_proj_size=256,
            **labels,
        )
    raise ModelUnavailableError(f"unknown random peer {name!r}: use one of {', '.join(RANDOM_PEERS)}")


def _from_hub(tf, repo: str):
    """(feature extractor, model) of ``repo``: the HF cache first, the hub only when it answers."""
    from emotion2vec_webui.model.resolve import _hub_endpoint, _reachable

    try:
        return (
            tf.AutoFeatureExtractor.from_pretrained(repo, local_files_only=True),
            tf.AutoModelForAudioClassification.from_pretrained(repo, local_files_only=True),
        )
    except Exception:  # not cached: try the hub below
        pass
    hint = "fill HF_HOME on a connected machine, or use hf-random:wav2vec2-base / hf-random:hubert-large"
    reason = _reachable(_hub_endpoint("hf"))
    if reason:
        raise ModelUnavailableError(
            f"Hugging Face model {repo} is not cached and the hub is unreachable ({reason}); {hint}."
        )
    try:
        return tf.AutoFeatureExtractor.from_pretrained(repo), tf.AutoModelForAudioClassification.from_pretrained(repo)
    except Exception as exc:  # hub errors come in many types
        raise ModelUnavailableError(
            f"Hugging Face model {repo} is not available ({type(exc).__name__}: {str(exc)[:160]}); {hint}."
        ) from exc


def random_peer_dir(name: str) -> Path:
    """Where the stand-in ``name`` is saved (``E2V_BENCH_CACHE``, default ``~/.cache/emotion2vec-webui/hf-random``)."""
    from emotion2vec_webui.config import bench_cache_dir

    return bench_cache_dir() / name


def prepare_random_peer(name: str) -> Path:
    """Build the stand-in ``name`` with random weights and save it (safetensors), once.

    Loading it afterwards goes through ``from_pretrained`` like a downloaded
    checkpoint, so load time and memory are measured on the real loading path.
    """
    import torch

    tf = _transformers()
    folder = random_peer_dir(name)
    if (folder / "config.json").is_file():
        return folder
    config = random_config(name)
    torch.manual_seed(0)
    model = tf.AutoModelForAudioClassification.from_config(config)
    extractor = tf.Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=SAMPLE_RATE, padding_value=0.0, do_normalize=True
    )
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=_ensure_parent(folder)))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        extractor.save_pretrained(tmp)
        os.replace(tmp, folder)  # whole folder or nothing
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _ensure_parent(folder: Path) -> Path:
    folder.parent.mkdir(parents=True, exist_ok=True)
    return folder.parent


class HFPeer:
    """A transformers audio-classification model with its feature extractor."""

    def __init__(self, model, extractor, info: PeerInfo) -> None:
        self.model = model
        self.extractor = extractor
        self.info = info
        self._autocast_dtype = {"bfloat16": "bfloat16", "float16": "float16"}.get(info.dtype)

    @classmethod
    def load(cls, name: str, device: str = "cpu", precision: str = "fp32") -> HFPeer:
        """Load ``hf:<repo>`` or build ``hf-random:<name>``.

        Raises:
            ModelUnavailableError: transformers is missing, or the repository cannot be had.
        """
        import torch

        from emotion2vec_webui.engine.engine import resolve_precision
        from emotion2vec_webui.model.resolve import resolve_device

        tf = _transformers()
        device = resolve_device(device)
        mode = resolve_precision(precision, device)
        t0 = time.perf_counter()
        if name.startswith("hf-random:"):
            folder = random_peer_dir(name.split(":", 1)[1])
            if not (folder / "config.json").is_file():
                raise ModelUnavailableError(f"{name} is not built yet: call peers.prepare_random_peer first")
            extractor = tf.AutoFeatureExtractor.from_pretrained(folder)
            model = tf.AutoModelForAudioClassification.from_pretrained(folder)
            random_weights = True
        else:
            extractor, model = _from_hub(tf, name.split(":", 1)[1])
            random_weights = False
        model.eval()
        if mode == "int8":
            model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        model.to(device)
        labels = tuple(model.config.id2label[i] for i in range(len(model.config.id2label)))
        info = PeerInfo(
            name=name,
            architecture=type(model).__name__,
            num_parameters=sum(p.numel() for p in model.parameters()),
            labels=labels,
            random_weights=random_weights,
            device=device,
            dtype={"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "int8": "int8"}[mode],
            load_s=time.perf_counter() - t0,
        )
        return cls(model, extractor, info)

    def scores(self, waveform: np.ndarray) -> dict[str, float]:
        """Softmax scores under the peer's own labels for one 16 kHz mono waveform."""
        import contextlib

        import torch

        if waveform.ndim != 1 or waveform.size < 400:
            raise E2VError("audio_too_short", "the waveform must be 1-D with at least 400 samples")
        inputs = self.extractor(waveform, sampling_rate=SAMPLE_RATE, return_tensors="pt")
        inputs = {k: v.to(self.info.device) for k, v in inputs.items()}
        autocast = (
            torch.autocast(self.info.device.split(":")[0], dtype=getattr(torch, self._autocast_dtype))
            if self._autocast_dtype
            else contextlib.nullcontext()
        )
        with torch.inference_mode(), autocast:
            logits = self.model(**inputs).logits[0].float()
        probs = torch.softmax(logits, dim=-1).cpu().numpy()
        return {label: float(p) for label, p in zip(self.info.labels, probs, strict=True)}

    def shared_scores(self, waveform: np.ndarray) -> dict[str, float]:
        """Scores mapped to our class names (``neu`` → ``neutral`` …); unmappable labels are dropped."""
        out: dict[str, float] = {}
        for label, p in self.scores(waveform).items():
            cls = map_label(label)
            if cls is not None:
                out[cls] = out.get(cls, 0.0) + p
        return out
