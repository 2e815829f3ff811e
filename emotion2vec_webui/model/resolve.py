"""Resolve a model name to a local directory, pick the device, and load it through FunASR.

We download the model ourselves (the hubs' ``snapshot_download``, which honour
``MODELSCOPE_CACHE`` / ``HF_HOME`` and their offline switches) and hand FunASR
a local path with ``disable_update=True``. Given a hub id, FunASR retries
ModelScope for ~25 s, then fails with a misleading "model is not registered",
and it does not look in a filled cache; a path avoids all of that.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from emotion2vec_webui.errors import ModelUnavailableError
from emotion2vec_webui.model.standins import RANDOM_WEIGHTS_MARKER

log = logging.getLogger(__name__)

# The model table of docs/README.md: name → hub → repository id.
MODEL_IDS: dict[str, dict[str, str]] = {
    "emotion2vec_plus_large": {"ms": "iic/emotion2vec_plus_large", "hf": "emotion2vec/emotion2vec_plus_large"},
    "emotion2vec_plus_base": {"ms": "iic/emotion2vec_plus_base", "hf": "emotion2vec/emotion2vec_plus_base"},
    "emotion2vec_plus_seed": {"ms": "iic/emotion2vec_plus_seed", "hf": "emotion2vec/emotion2vec_plus_seed"},
}
HUB_NAMES = {"ms": "ModelScope", "hf": "Hugging Face", "local": "local directory"}
REQUIRED_FILES = ("config.yaml", "model.pt", "tokens.txt")
_PROBE_TIMEOUT_S = 4.0


@dataclass(frozen=True)
class ResolvedModel:
    name: str  # what the user asked for (name, hub id or directory)
    hub: str  # "ms", "hf" or "local"
    hub_id: str | None  # repository id on the hub, None for a local directory
    path: Path  # local directory in FunASR's layout
    random_weights: bool  # built by make-test-model


@dataclass(frozen=True)
class ModelInfo:
    name: str  # display name (e.g. emotion2vec_plus_large or the directory name)
    hub: str  # "ms", "hf" or "local"
    hub_id: str | None  # repository id, when from a hub
    path: str  # local directory the weights came from
    device: str  # torch device string, e.g. "cpu", "cuda:0"
    dtype: str  # compute precision: float32, bfloat16, float16, int8
    random_weights: bool  # True for make-test-model models
    num_parameters: int  # parameters of the loaded module
    embedding_dim: int  # width of the embedding
    load_s: float  # seconds to load and warm up
    precision_note: str = ""  # how ``auto`` chose the precision (CPU flags), empty when a mode was asked for


def _is_offline(hub: str) -> bool:
    from emotion2vec_webui.config import hub_offline

    return hub_offline(hub)


def _hub_endpoint(hub: str) -> str:
    if hub == "hf":
        return os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    domain = os.environ.get("MODELSCOPE_ENDPOINT") or os.environ.get("MODELSCOPE_DOMAIN") or "www.modelscope.cn"
    return domain if "://" in domain else f"https://{domain}"


def _reachable(endpoint: str) -> str | None:
    """None when a TCP connection to the hub opens quickly, else the reason."""
    url = urlparse(endpoint)
    host, port = url.hostname or "", url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=_PROBE_TIMEOUT_S):
            return None
    except OSError as exc:
        return f"{host}:{port} unreachable ({exc.strerror or exc})"


def _fixes(name: str) -> str:
    from emotion2vec_webui.config import env_hub

    other = "E2V_HUB=hf" if env_hub() != "hf" else "E2V_HUB=ms"
    return (
        "How to fix: (1) point E2V_MODEL (or --model) at a local directory holding config.yaml, "
        "model.pt and tokens.txt, e.g. one copied from a machine that has the model; "
        f"(2) try the other hub with {other}; "
        "(3) fill the hub cache on a connected machine and share it via MODELSCOPE_CACHE or HF_HOME; "
        "(4) for a quick offline trial, build a random-weight model: "
        "`emotion2vec-webui make-test-model ./test-model --size tiny` and use E2V_MODEL=./test-model."
    )


def _check_dir(path: Path, asked: str) -> None:
    missing = [f for f in REQUIRED_FILES if not (path / f).is_file()]
    if missing:
        raise ModelUnavailableError(
            f"Model directory {path} (from {asked!r}) lacks {', '.join(missing)}. " + _fixes(asked)
        )


def resolve_model(name: str, hub: str = "ms") -> ResolvedModel:
    """Turn a model name, hub id or directory into a local FunASR model directory.

    Looks in the hub's cache first; downloads only when the hub answers.

    Args:
        name: a name from ``MODEL_IDS``, a hub repository id, or a local directory.
        hub: ``ms`` (ModelScope) or ``hf`` (Hugging Face).

    Returns:
        Where the model lies and where it came from.

    Raises:
        ModelUnavailableError: what was tried and how to fix it.
    """
    local = Path(name).expanduser()
    if local.is_dir():
        _check_dir(local, name)
        return ResolvedModel(name, "local", None, local.resolve(), (local / RANDOM_WEIGHTS_MARKER).is_file())
    if hub not in ("ms", "hf"):
        raise ModelUnavailableError(f"Unknown hub {hub!r}: E2V_HUB must be 'ms' (ModelScope) or 'hf' (Hugging Face).")
    if name in MODEL_IDS:
        repo = MODEL_IDS[name][hub]
    elif "/" in name and not name.startswith((".", "/", "~")):
        repo = name
    else:
        known = ", ".join(MODEL_IDS)
        raise ModelUnavailableError(
            f"{name!r} is neither a known model name ({known}), a hub id, nor an existing directory. " + _fixes(name)
        )

    tried: list[str] = []
    path = _from_cache(repo, hub, tried)
    if path is None:
        if _is_offline(hub):
            tried.append(f"{HUB_NAMES[hub]} download skipped: offline mode is on")
        else:
            reason = _reachable(_hub_endpoint(hub))
            if reason:
                tried.append(f"{HUB_NAMES[hub]} download: {reason}")
            else:
                path = _download(repo, hub, tried)
    if path is None:
        raise ModelUnavailableError(
            f"Model {name!r} ({HUB_NAMES[hub]} id {repo}) is not available. Tried: "
            + "; ".join(tried)
            + ". "
            + _fixes(name)
        )
    _check_dir(path, name)
    return ResolvedModel(name, hub, repo, path, (path / RANDOM_WEIGHTS_MARKER).is_file())


def _from_cache(repo: str, hub: str, tried: list[str]) -> Path | None:
    try:
        if hub == "hf":
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(repo, local_files_only=True))
        from modelscope.hub.snapshot_download import snapshot_download

        return Path(snapshot_download(repo, local_files_only=True))
    except Exception as exc:
        if hub == "hf":
            cache = os.environ.get("HF_HUB_CACHE") or os.path.join(
                os.environ.get("HF_HOME", "~/.cache/huggingface"), "hub"
            )
        else:
            cache = os.environ.get("MODELSCOPE_CACHE", "~/.cache/modelscope")
        tried.append(f"{HUB_NAMES[hub]} cache ({cache}): not found ({type(exc).__name__})")
        return None


def _download(repo: str, hub: str, tried: list[str]) -> Path | None:
    log.info("downloading %s from %s (first run only; cached afterwards)", repo, HUB_NAMES[hub])
    try:
        if hub == "hf":
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(repo))
        from modelscope.hub.snapshot_download import snapshot_download

        return Path(snapshot_download(repo))
    except Exception as exc:
        tried.append(f"{HUB_NAMES[hub]} download of {repo}: {type(exc).__name__}: {str(exc)[:200]}")
        return None


def resolve_device(device: str = "auto") -> str:
    """The one place that turns ``auto|cpu|cuda|cuda:N`` into a torch device string.

    Falls back to CPU with a logged warning when CUDA is asked for but absent.
    """
    import torch

    device = (device or "auto").strip().lower()
    if device == "auto":
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return "cpu"
    if device == "cuda" or device.startswith("cuda:"):
        if not torch.cuda.is_available():
            log.warning("device %s asked for but CUDA is not available: using cpu", device)
            return "cpu"
        index = int(device.split(":", 1)[1]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            log.warning("device %s does not exist (%d GPUs): using cuda:0", device, torch.cuda.device_count())
            index = 0
        return f"cuda:{index}"
    raise ValueError(f"device must be auto, cpu, cuda or cuda:N, not {device!r}")


def cpu_threads() -> int:
    """CPU cores this process may use (affinity-aware)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def load_automodel(resolved: ResolvedModel, device: str):
    """Load the model directory with ``funasr.AutoModel``, offline.

    ``ncpu`` is set to the machine's cores: FunASR's default calls
    ``torch.set_num_threads(4)`` for the whole process.
    """
    import torch

    threads = torch.get_num_threads() if os.environ.get("OMP_NUM_THREADS") else cpu_threads()
    with quiet_funasr():
        from emotion2vec_webui.model import funasr_import

        funasr_import.register_config(resolved.path)
        from funasr import AutoModel

        return AutoModel(
            model=str(resolved.path),
            disable_update=True,
            disable_pbar=True,
            disable_log=True,
            log_level="WARNING",
            device=device,
            ncpu=threads,
            hub="ms" if resolved.hub == "local" else resolved.hub,
        )


@contextlib.contextmanager
def quiet_funasr():
    """Keep FunASR's chatter off stdout and out of INFO logs while importing and loading.

    FunASR prints notices to stdout at import (which would corrupt ``--json``
    output), logs every loaded key at INFO on the root logger, and calls
    ``logging.basicConfig`` (which would reconfigure an unconfigured root).
    """
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.NullHandler())
    old_level = root.level
    root.setLevel(max(old_level, logging.WARNING))
    try:
        with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():
            # pydub (a FunASR dependency) warns about a missing system FFmpeg we never use.
            warnings.filterwarnings("ignore", message="Couldn't find ffmpeg")
            yield
    finally:
        root.setLevel(old_level)


def checkpoint_state(checkpoint: Path) -> dict:
    """The module weights in a checkpoint file, whatever form it comes in.

    Memory-mapped where torch can (zip format); torch's legacy (pre-1.6) format
    cannot be mapped and is read into memory once. Unwraps ``{"model": …}``,
    ``{"state_dict": …}`` and ``{"model_state_dict": …}`` (training checkpoints
    carry an optimizer beside it, which is never touched) and a ``module.``
    prefix on every key (saved from DataParallel / DDP).
    """
    import torch

    try:
        state = torch.load(checkpoint, map_location="cpu", mmap=True, weights_only=True)
    except RuntimeError as exc:
        if "mmap" not in str(exc) and "zip" not in str(exc):
            raise
        log.info("%s is in torch's legacy format (no mmap): reading it into memory", Path(checkpoint).name)
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    if isinstance(state, dict) and state and all(str(k).startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def checkpoint_coverage(module, checkpoint: Path) -> list[str]:
    """Names of the module's parameters and buffers that the checkpoint does not supply.

    FunASR loads leniently (missing or mismatched keys are skipped with a
    print), so we check ourselves, mapping keys as config.yaml's ``scope_map``
    does (``d2v_model.`` prefix).
    """
    state = checkpoint_state(checkpoint)
    missing = []
    for name, tensor in module.state_dict().items():
        src = state.get(name)
        if src is None:
            src = state.get(f"d2v_model.{name}", state.get(f"module.{name}"))
        if src is None or tuple(src.shape) != tuple(tensor.shape):
            missing.append(name)
    return missing


def marker_info(path: Path) -> dict:
    """The make-test-model marker of a directory (empty when a real model)."""
    marker = path / RANDOM_WEIGHTS_MARKER
    if not marker.is_file():
        return {}
    try:
        return json.loads(marker.read_text("utf-8"))
    except (OSError, ValueError):
        return {"random_weights": True}


def timed(fn, *args, **kwargs):
    """(result, seconds) of one call."""
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0
