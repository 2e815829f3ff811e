"""The conversation models: ASR (SenseVoiceSmall, Paraformer-zh) and the speaker model (CAM++).

Resolved like the emotion model (:func:`resolve.resolve_model`'s rules: a
local directory, a known name, or a ModelScope / Hugging Face id; the hub's
cache first, a download only when the hub answers; a clear
``model_unavailable`` otherwise) and loaded through ``funasr.AutoModel`` from
the local directory. Each is loaded lazily, on the first conversation that
needs it, and kept (one per directory and device).

The random-weight stand-ins (:mod:`standins_asr`, ``make-test-model --kind``)
load through exactly this path.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emotion2vec_webui.errors import ModelUnavailableError
from emotion2vec_webui.model import resolve
from emotion2vec_webui.model.standins import RANDOM_WEIGHTS_MARKER

log = logging.getLogger(__name__)

# name → hub → repository id. Sizes as published (model.pt): see README "Conversation models".
ASR_MODEL_IDS: dict[str, dict[str, str]] = {
    "sensevoice_small": {"ms": "iic/SenseVoiceSmall", "hf": "FunAudioLLM/SenseVoiceSmall"},
    "paraformer_zh": {
        "ms": "iic/speech_seaco_paraformer_large_asr_nat-zh-cn-16k-common-vocab8404-pytorch",
        "hf": "funasr/paraformer-zh",
    },
}
SPEAKER_MODEL_IDS: dict[str, dict[str, str]] = {
    "campplus": {"ms": "iic/speech_campplus_sv_zh-cn_16k-common", "hf": "funasr/campplus"},
}
ALIASES = {"sensevoice": "sensevoice_small", "paraformer-zh": "paraformer_zh", "paraformer": "paraformer_zh",
           "cam++": "campplus"}  # fmt: skip
REQUIRED = ("config.yaml", "model.pt")

# SenseVoice's emotion tags → emotion2vec's keys (labels.EMOTIONS).
SENSEVOICE_EMOTIONS = {"HAPPY": "happy", "SAD": "sad", "ANGRY": "angry", "NEUTRAL": "neutral", "FEARFUL": "fearful",
                       "DISGUSTED": "disgusted", "SURPRISED": "surprised", "EMO_UNKNOWN": "unknown"}  # fmt: skip
_TAG = re.compile(r"<\|([^|<>]*)\|>")


@dataclass(frozen=True)
class Transcript:
    text: str  # the words, without SenseVoice's tags
    language: str | None  # SenseVoice's language tag (zh, en, yue, ja, ko), when it gave one
    asr_emotion: str | None  # SenseVoice's own coarse emotion (an emotion2vec key), when it gave one


def resolve_conversation_model(name: str, hub: str, table: dict[str, dict[str, str]]) -> resolve.ResolvedModel:
    """A local directory for an ASR or speaker model name, hub id or directory.

    Raises:
        ModelUnavailableError: what was tried and how to fix it.
    """
    local = Path(name).expanduser()
    key = ALIASES.get(name, name)
    if local.is_dir():
        path = local.resolve()
    else:
        if key in table:
            repo = table[key].get(hub) or table[key]["ms"]
        elif "/" in name and not name.startswith((".", "/", "~")):
            repo = name
        else:
            raise ModelUnavailableError(
                f"{name!r} is neither a known model ({', '.join(table)}), a hub id, nor a directory. "
                f"/ {name!r} 不是已知模型、模型库 id 或目录。"
            )
        tried: list[str] = []
        path = resolve._from_cache(repo, hub, tried)
        if path is None and not resolve._is_offline(hub):
            reason = resolve._reachable(resolve._hub_endpoint(hub))
            path = None if reason else resolve._download(repo, hub, tried)
            if reason:
                tried.append(f"{resolve.HUB_NAMES[hub]} download: {reason}")
        elif path is None:
            tried.append(f"{resolve.HUB_NAMES[hub]} download skipped: offline mode is on")
        if path is None:
            raise ModelUnavailableError(
                f"Model {name!r} ({resolve.HUB_NAMES[hub]} id {repo}) is not available. Tried: {'; '.join(tried)}. "
                "How to fix: pre-fill the hub cache on a connected machine (README, 'Conversation models'), "
                "point --asr-model / E2V_ASR_MODEL or E2V_SPEAKER_MODEL at a local directory, or build stand-ins "
                "with `emotion2vec-webui make-test-model DIR --kind sensevoice|paraformer-zh|campplus`. "
                f"/ 模型 {name!r} 不可用：请预先填充模型缓存，或指定本地目录。"
            )
    missing = [f for f in REQUIRED if not (path / f).is_file()]
    if missing:
        raise ModelUnavailableError(
            f"Model directory {path} (from {name!r}) lacks {', '.join(missing)}. / 模型目录 {path} 缺少 {', '.join(missing)}。"
        )
    hub_name = "local" if local.is_dir() else hub
    return resolve.ResolvedModel(name, hub_name, None if local.is_dir() else repo, path, (path / RANDOM_WEIGHTS_MARKER).is_file())


_load_lock = threading.Lock()


@functools.lru_cache(maxsize=4)
def _load(path: str, device: str):
    resolved = resolve.ResolvedModel(path, "local", None, Path(path), (Path(path) / RANDOM_WEIGHTS_MARKER).is_file())
    return resolve.load_automodel(resolved, device)


def load_conversation_model(resolved: resolve.ResolvedModel, device: str):
    """The ``funasr.AutoModel`` for ``resolved`` on ``device``, loaded once per process (lazily)."""
    with _load_lock, resolve.quiet_funasr():
        return _load(str(resolved.path), device)


class _ConversationModel:
    """A conversation model resolved when made (``MODEL_IDS``: the names it knows) and loaded on first use."""

    MODEL_IDS: dict[str, dict[str, str]] = {}

    def __init__(self, name: str, hub: str, device: str) -> None:
        self.name = name
        self.resolved = resolve_conversation_model(name, hub, self.MODEL_IDS)
        self.device = device
        self._automodel = None
        self._lock = threading.Lock()

    @property
    def random_weights(self) -> bool:
        return self.resolved.random_weights

    def _loaded(self):
        """FunASR's ``AutoModel``, loaded on the first call (the caller holds ``self._lock``)."""
        if self._automodel is None:
            self._automodel = load_conversation_model(self.resolved, self.device)
        return self._automodel


class SpeakerModel(_ConversationModel):
    """CAM++ speaker embeddings for fixed-length chunks (FunASR's ``CAMPPlus`` through ``AutoModel``)."""

    MODEL_IDS = SPEAKER_MODEL_IDS

    def embed(self, chunks: list[np.ndarray], batch: int = 64) -> np.ndarray:
        """``[N, 192]`` float32 embeddings of N 16 kHz chunks (FunASR's fbank + CMN front-end)."""
        import torch
        from funasr.models.campplus.utils import extract_feature

        with self._lock:
            module = self._loaded().model
            out = []
            with torch.inference_mode():
                for i in range(0, len(chunks), batch):
                    audio = [torch.from_numpy(np.ascontiguousarray(c, np.float32)) for c in chunks[i : i + batch]]
                    feats, _, _ = extract_feature(audio)
                    out.append(module.forward(feats.to(self.device, torch.float32)).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 192), np.float32)


class AsrModel(_ConversationModel):
    """Speech to text for one turn at a time (SenseVoiceSmall by default, Paraformer-zh as an alternative)."""

    MODEL_IDS = ASR_MODEL_IDS

    def transcribe(self, waveforms: list[np.ndarray]) -> list[Transcript]:
        """One :class:`Transcript` per 16 kHz waveform (a turn's audio)."""
        with self._lock:
            automodel = self._loaded()
            out = []
            with resolve.quiet_funasr():
                for w in waveforms:
                    res = automodel.generate(input=np.ascontiguousarray(w, np.float32), language="auto",
                                                   use_itn=True, disable_pbar=True)  # fmt: skip
                    out.append(parse_transcript(res[0].get("text", "") if res else ""))
        return out


def parse_transcript(raw: str) -> Transcript:
    """Split SenseVoice's ``<|en|><|NEUTRAL|><|Speech|><|woitn|>text`` into text, language and emotion."""
    language = emotion = None
    for tag in _TAG.findall(raw):
        if tag in ("zh", "en", "yue", "ja", "ko") and language is None:
            language = tag
        elif tag in SENSEVOICE_EMOTIONS and emotion is None:
            emotion = SENSEVOICE_EMOTIONS[tag]
    text = re.sub(r"\s+", " ", _TAG.sub(" ", raw)).strip()
    return Transcript(text=text, language=language, asr_emotion=emotion)


@functools.lru_cache(maxsize=4)
def speaker_model(name: str, hub: str, device: str) -> SpeakerModel:
    """The process's speaker model for (name, hub, device); resolved now, loaded on first use."""
    return SpeakerModel(name, hub, device)


@functools.lru_cache(maxsize=4)
def asr_model(name: str, hub: str, device: str) -> AsrModel:
    """The process's ASR model for (name, hub, device); resolved now, loaded on first use."""
    return AsrModel(name, hub, device)
