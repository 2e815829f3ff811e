"""Lean loading (meta-device build, memory-mapped checkpoint) against FunASR's own loading."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from emotion2vec_webui.audio.signals import noise, tone
from emotion2vec_webui.labels import english_key
from emotion2vec_webui.model.resolve import checkpoint_coverage, load_automodel, resolve_model


@pytest.fixture(scope="module")
def both(tiny_model_dir):
    """(lean AutoModel, FunASR-loaded AutoModel) of the tiny model."""
    from emotion2vec_webui.model.loading import load_automodel_lean

    resolved = resolve_model(str(tiny_model_dir))
    return load_automodel_lean(resolved, "cpu"), load_automodel(resolved, "cpu")


def test_every_tensor_equals_funasrs_loading(both, tiny_model_dir):
    lean, plain = both
    lean_state, plain_state = lean.model.state_dict(), plain.model.state_dict()
    assert list(lean_state) == list(plain_state)
    for name, tensor in lean_state.items():
        assert not tensor.is_meta, name
        assert tensor.dtype == plain_state[name].dtype, name
        assert bool((tensor == plain_state[name]).all()), name
    assert checkpoint_coverage(lean.model, tiny_model_dir / "model.pt") == []
    assert not lean.model.training


@pytest.mark.parametrize("granularity", ["utterance", "frame"])
def test_generate_results_equal(both, granularity):
    lean, plain = both
    wav = (tone(1.5, 16000)[:, 0] + noise(1.5, 16000, seed=2)[:, 0]).astype(np.float32)
    a = lean.generate(wav, granularity=granularity, extract_embedding=True, disable_pbar=True)[0]
    b = plain.generate(wav, granularity=granularity, extract_embedding=True, disable_pbar=True)[0]
    assert [english_key(x) for x in a["labels"]] == [english_key(x) for x in b["labels"]]
    np.testing.assert_allclose(a["scores"], b["scores"], atol=1e-5)
    np.testing.assert_allclose(a["feats"], b["feats"], atol=1e-5)


def test_engine_equals_funasr_loaded_generate(engine, both):
    _, plain = both
    wav = noise(2.0, 16000, seed=5)[:, 0]
    ours = engine.recognize(wav, "utterance", extract_embedding=True)
    ref = plain.generate(wav, granularity="utterance", extract_embedding=True, disable_pbar=True)[0]
    ref_scores = dict(zip([english_key(x) for x in ref["labels"]], ref["scores"], strict=True))
    for key, value in ours.scores.items():
        assert abs(value - ref_scores[key]) <= 1e-5
    np.testing.assert_allclose(ours.embedding, ref["feats"], atol=1e-5)


def test_funasr_is_left_as_it_was(both):
    from funasr.auto import auto_model
    from funasr.models.emotion2vec.model import Emotion2vec
    from funasr.register import tables
    from funasr.train_utils.load_pretrained_model import load_pretrained_model

    assert tables.model_classes["Emotion2vec"] is Emotion2vec
    assert auto_model.load_pretrained_model is load_pretrained_model


def test_incomplete_checkpoint_falls_back_to_funasr(tmp_path, tiny_model_dir, caplog):
    import torch

    from emotion2vec_webui.model.loading import LeanLoadError, assign_checkpoint, load_automodel_lean

    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    state = torch.load(broken / "model.pt", weights_only=True)
    dropped = next(k for k in state["model"] if k.startswith("d2v_model.blocks."))
    del state["model"][dropped]
    torch.save(state, broken / "model.pt")

    with torch.device("meta"):
        from funasr.models.emotion2vec.model import Emotion2vec

        module = Emotion2vec(model_conf=_conf(broken), vocab_size=9)
    with pytest.raises(LeanLoadError, match="not in"):
        assign_checkpoint(module, broken / "model.pt", scope_map=["d2v_model.", "none"])

    with caplog.at_level("WARNING"):
        automodel = load_automodel_lean(resolve_model(str(broken)), "cpu")
    assert "lean loading not possible" in caplog.text
    assert not any(t.is_meta for t in automodel.model.state_dict().values())
    assert checkpoint_coverage(automodel.model, broken / "model.pt") == [dropped.removeprefix("d2v_model.")]


def _conf(directory):
    import yaml

    return yaml.safe_load((directory / "config.yaml").read_text("utf-8"))["model_conf"]


@pytest.fixture(scope="module")
def reference_scores(tiny_model_dir):
    """Scores of the plain published form ({"model": state}) on two clips."""
    from emotion2vec_webui.engine.engine import EmotionEngine

    engine = EmotionEngine.load(str(tiny_model_dir), device="cpu", precision="fp32")
    return [engine.recognize(clip, "utterance").scores for clip in _form_clips()]


def _form_clips():
    return [tone(1.5, freq=180.0)[:, 0], noise(1.2, seed=4)[:, 0]]


@pytest.mark.parametrize("form", ["state_dict", "plain", "module-prefix", "training", "legacy"])
def test_every_checkpoint_form_loads_to_the_same_scores(tmp_path, form, reference_scores, caplog):
    """The forms real checkpoints come in load lean (no FunASR fallback) and score like the published form."""
    from emotion2vec_webui.engine.engine import EmotionEngine
    from emotion2vec_webui.model.standins import make_test_model

    directory = make_test_model(tmp_path / form, "tiny", seed=0, checkpoint_form=form)
    if form == "training":  # an optimizer's two moments: the file is ~3x its weights
        weights = sum(v.numel() * 4 for v in _checkpoint_weights(directory / "model.pt"))
        assert (directory / "model.pt").stat().st_size > 2.5 * weights
    with caplog.at_level("WARNING"):
        engine = EmotionEngine.load(str(directory), device="cpu", precision="fp32")
    assert "lean loading not possible" not in caplog.text
    for clip, want in zip(_form_clips(), reference_scores, strict=True):
        got = engine.recognize(clip, "utterance").scores
        assert max(abs(got[k] - want[k]) for k in want) <= 1e-6


def _checkpoint_weights(path):
    import torch

    return list(torch.load(path, weights_only=True)["model"].values())


def test_any_lean_failure_falls_back_to_funasr(tmp_path, tiny_model_dir, monkeypatch, caplog):
    """Not only LeanLoadError: any lean-path failure is logged and FunASR's own loading gets its turn."""
    from emotion2vec_webui.model import loading

    def refuse(*_args, **_kwargs):
        raise ValueError("an object weights_only will not unpickle")

    monkeypatch.setattr(loading, "_state_dict_of", refuse)
    with caplog.at_level("WARNING"):
        automodel = loading.load_automodel_lean(resolve_model(str(tiny_model_dir)), "cpu")
    assert "lean loading not possible (ValueError" in caplog.text
    assert not any(t.is_meta for t in automodel.model.state_dict().values())
