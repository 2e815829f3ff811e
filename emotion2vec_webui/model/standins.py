"""Build random-weight emotion2vec models in FunASR's own layout, for tests and benchmarks.

No model hub is needed: the model is FunASR's ``Emotion2vec`` class built
from the published config (``data/emotion2vec_plus_large.config.yaml``),
optionally shrunk, with random weights. The directory it writes loads through
the same ``funasr.AutoModel`` path as the real model, and carries a marker
(``RANDOM_WEIGHTS_MARKER``) so results say ``"random_weights": true``.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

RANDOM_WEIGHTS_MARKER = "e2v_random_weights.json"
SIZES = ("tiny", "base", "large")

_TINY_SPEC = "[(32, 10, 5)] + [(32, 3, 2)] * 4 + [(32,2,2)] + [(32,2,2)]"


def reference_config() -> dict:
    """The published emotion2vec_plus_large config.yaml as a dict."""
    import yaml

    text = resources.files("emotion2vec_webui.model").joinpath("data/emotion2vec_plus_large.config.yaml").read_text("utf-8")
    return yaml.safe_load(text)


def reference_tokens() -> list[str]:
    """The nine labels of tokens.txt, in model order."""
    text = resources.files("emotion2vec_webui.model").joinpath("data/tokens.txt").read_text("utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


def config_for_size(size: str) -> dict:
    """The published config, reshaped to ``size`` (tiny | base | large)."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, not {size!r}")
    cfg = copy.deepcopy(reference_config())
    mc = cfg["model_conf"]
    audio = mc["modalities"]["audio"]
    if size == "base":
        mc["embed_dim"], mc["num_heads"] = 768, 12
        audio["num_alibi_heads"] = 12
    elif size == "tiny":
        # Same graph (conv front-end with 320x downsampling → 50 frames/s,
        # ALiBi pre-net, transformer blocks), a few hundred thousand parameters.
        mc.update(embed_dim=64, num_heads=4, depth=2, average_top_k_layers=2)
        audio.update(
            num_alibi_heads=4,
            prenet_depth=1,
            model_depth=2,
            conv_pos_depth=2,
            conv_pos_width=19,
            conv_pos_groups=4,
            feature_encoder_spec=_TINY_SPEC,
        )
        audio["decoder"].update(decoder_dim=32, decoder_layers=1, decoder_groups=4)
    return cfg


def build_module(cfg: dict, vocab_size: int, seed: int):
    """Instantiate FunASR's Emotion2vec from a config dict with seeded random weights."""
    import torch

    from emotion2vec_webui.model import funasr_import

    Emotion2vec = funasr_import.registry("Emotion2vec").model_classes["Emotion2vec"]
    torch.manual_seed(seed)
    model = Emotion2vec(model_conf=cfg["model_conf"], vocab_size=vocab_size)
    # Random classifier head with a visible spread, so scores are not uniform.
    with torch.no_grad():
        model.proj.weight.normal_(0.0, 0.5)
        model.proj.bias.normal_(0.0, 0.5)
    return model.eval()


# The forms real checkpoints come in (``make-test-model --checkpoint-form``); each loads to the same scores.
CHECKPOINT_FORMS = ("model", "state_dict", "plain", "module-prefix", "training", "legacy")


def checkpoint_payload(state: dict, form: str):
    """``state`` (module keys → tensors) wrapped the way ``form`` names.

    - ``model``: ``{"model": state}``, the published checkpoints' form;
    - ``state_dict``: ``{"state_dict": state}`` (Lightning-style);
    - ``plain``: the bare state dict;
    - ``module-prefix``: ``{"model": …}`` with ``module.`` before every key (saved from DataParallel/DDP);
    - ``training``: ``{"model": …, "optimizer": …, "epoch": …}``, a file several times larger than its
      weights, like a training checkpoint with Adam's two moments;
    - ``legacy``: ``{"model": state}`` in torch's pre-1.6 (non-zip) serialization, which ``mmap`` refuses.
    """
    import torch

    if form in ("model", "legacy"):
        return {"model": state}
    if form == "state_dict":
        return {"state_dict": state}
    if form == "plain":
        return dict(state)
    if form == "module-prefix":
        return {"model": {f"module.{k}": v for k, v in state.items()}}
    if form == "training":
        moments = {i: {"exp_avg": torch.zeros_like(v), "exp_avg_sq": torch.zeros_like(v)} for i, v in enumerate(state.values())}
        return {"model": state, "optimizer": {"state": moments, "param_groups": [{"lr": 1e-4}]}, "epoch": 3}
    raise ValueError(f"checkpoint form must be one of {', '.join(CHECKPOINT_FORMS)}, not {form!r}")


@contextlib.contextmanager
def model_folder(out: Path) -> Iterator[Path]:
    """A temporary folder beside ``out`` to write a model into; at the end its files replace ``out``'s.

    ``out`` is created when missing, and model files already there are replaced one by one; the temporary
    folder is removed either way (a failed write leaves ``out`` as it was).
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".e2v-model-", dir=out.parent))
    try:
        yield tmp
        out.mkdir(exist_ok=True)
        for f in tmp.iterdir():
            os.replace(f, out / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def make_test_model(
    directory: str | os.PathLike, size: str = "tiny", seed: int = 0, checkpoint_form: str = "model"
) -> Path:
    """Write a random-weight model directory in FunASR's layout.

    Args:
        directory: where to write (created; existing model files are replaced).
        size: ``tiny`` (loads in ~1 s), ``base`` (the base shape) or ``large``
            (the published large model's shape and compute).
        seed: random seed for the weights.
        checkpoint_form: how ``model.pt`` wraps the weights (:data:`CHECKPOINT_FORMS`).

    Returns:
        The directory path.
    """
    import torch
    import yaml

    out = Path(directory).expanduser().resolve()
    cfg = config_for_size(size)
    tokens = reference_tokens()
    model = build_module(cfg, len(tokens), seed)
    # Keys as in the published checkpoint: the encoder under "d2v_model."
    # (config.yaml's scope_map strips it), the classifier head as "proj.*".
    state = {(k if k.startswith("proj.") else f"d2v_model.{k}"): v.contiguous() for k, v in model.state_dict().items()}
    n_params = sum(p.numel() for p in model.parameters())
    with model_folder(out) as tmp:
        torch.save(
            checkpoint_payload(state, checkpoint_form),
            tmp / "model.pt",
            _use_new_zipfile_serialization=checkpoint_form != "legacy",
        )
        (tmp / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True), "utf-8")
        (tmp / "tokens.txt").write_text("\n".join(tokens) + "\n", "utf-8")
        (tmp / "configuration.json").write_text(
            json.dumps(
                {
                    "framework": "pytorch",
                    "task": "emotion-recognition",
                    "model": {"type": "emotion2vec"},
                    "pipeline": {"type": "funasr-pipeline"},
                    "file_path_metas": {
                        "init_param": "model.pt",
                        "config": "config.yaml",
                        "tokenizer_conf": {"token_list": "tokens.txt"},
                    },
                },
                indent=2,
            ),
            "utf-8",
        )
        (tmp / RANDOM_WEIGHTS_MARKER).write_text(
            json.dumps(
                {
                    "random_weights": True,
                    "size": size,
                    "seed": seed,
                    "parameters": n_params,
                    "embed_dim": cfg["model_conf"]["embed_dim"],
                    "created_by": "emotion2vec-webui make-test-model",
                },
                indent=2,
            ),
            "utf-8",
        )
    return out
