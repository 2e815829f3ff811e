"""The conversation models: stand-ins built from the published configs load through the real path; names resolve."""

from __future__ import annotations

import numpy as np
import pytest

from emotion2vec_webui.errors import ModelUnavailableError
from emotion2vec_webui.model.conversation_models import (
    ASR_MODEL_IDS,
    AsrModel,
    SpeakerModel,
    parse_transcript,
    resolve_conversation_model,
)


def test_parse_sensevoice_output():
    t = parse_transcript("<|en|><|ANGRY|><|Speech|><|withitn|>Where is my order?")
    assert (t.text, t.language, t.asr_emotion) == ("Where is my order?", "en", "angry")
    t = parse_transcript("你好")
    assert (t.text, t.language, t.asr_emotion) == ("你好", None, None)


def test_stand_ins_load_through_automodel(conversation_models):
    rng = np.random.default_rng(0)
    waves = [rng.standard_normal(16000 * n).astype(np.float32) * 0.1 for n in (1, 2)]
    asr = AsrModel(str(conversation_models["sensevoice"]), "ms", "cpu")
    assert asr.random_weights
    out = asr.transcribe(waves)
    assert len(out) == 2 and all(isinstance(t.text, str) and "<|" not in t.text for t in out)
    spk = SpeakerModel(str(conversation_models["campplus"]), "ms", "cpu")
    emb = spk.embed([w[:24000] for w in waves])
    assert emb.shape == (2, 192) and np.isfinite(emb).all()


def test_unknown_names_and_bad_dirs_are_model_unavailable(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELSCOPE_OFFLINE", "1")
    with pytest.raises(ModelUnavailableError):
        resolve_conversation_model("not-a-model", "ms", ASR_MODEL_IDS)
    with pytest.raises(ModelUnavailableError) as err:
        resolve_conversation_model(str(tmp_path), "ms", ASR_MODEL_IDS)  # a folder without config.yaml / model.pt
    assert "config.yaml" in str(err.value)
