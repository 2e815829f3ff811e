"""The engine against FunASR's own AutoModel.generate(), on the tiny random-weight model."""

from __future__ import annotations

import numpy as np
import pytest

from emotion2vec_webui.audio.signals import noise, tone
from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.labels import EMOTIONS, english_key
from emotion2vec_webui.model.resolve import checkpoint_coverage


def _clips():
    rng = np.random.default_rng(3)
    yield tone(2.0, 16000)[:, 0]
    yield noise(1.3, 16000, seed=4)[:, 0]
    yield (tone(3.1, 16000, freq=140)[:, 0] + 0.05 * rng.standard_normal(int(3.1 * 16000))).astype(np.float32)


@pytest.mark.parametrize("index", [0, 1, 2])
def test_scores_equal_automodel_generate(engine, index):
    wav = list(_clips())[index]
    ours = engine.recognize(wav, "utterance", extract_embedding=True)
    ref = engine.automodel.generate(wav, granularity="utterance", extract_embedding=True)[0]
    ref_scores = dict(zip([english_key(lab) for lab in ref["labels"]], ref["scores"], strict=True))
    for k in EMOTIONS:
        assert abs(ours.scores[k] - ref_scores[k]) <= 1e-5
    np.testing.assert_allclose(ours.embedding, ref["feats"], atol=1e-5)
    top = max(ref_scores, key=ref_scores.get)
    assert ours.emotion == top


def test_frame_granularity_matches_generate_frames(engine):
    wav = tone(2.0, 16000)[:, 0]
    ours = engine.recognize(wav, "frame", extract_embedding=True)
    ref = engine.automodel.generate(wav, granularity="frame", extract_embedding=True)[0]
    assert ours.embedding.shape == ref["feats"].shape
    np.testing.assert_allclose(ours.embedding, ref["feats"], atol=1e-5)
    assert ours.frame_logits.shape == (ours.num_frames, 9)
    assert abs(ours.num_frames - 2.0 * 50) <= 2


def test_result_invariants(engine):
    r = engine.recognize(noise(1.0, 16000)[:, 0], "utterance", extract_embedding=False)
    assert list(r.scores) == list(EMOTIONS)
    assert abs(sum(r.scores.values()) - 1) < 1e-6
    assert r.confidence == max(r.scores.values())
    assert r.embedding is None and r.frame_logits is None


def test_engine_reports_random_weights_and_shape(engine, tiny_model_dir):
    info = engine.info
    assert info.random_weights is True
    assert info.hub == "local" and info.device == "cpu" and info.dtype == "float32"
    assert info.embedding_dim == 64
    assert 100_000 < info.num_parameters < 1_000_000


def test_every_parameter_comes_from_the_checkpoint(tiny_model_dir):
    """As loaded, before fastpath renames the front-end's tensors (EmotionEngine.load checks at that point)."""
    from emotion2vec_webui.model.loading import load_automodel_lean
    from emotion2vec_webui.model.resolve import resolve_model

    module = load_automodel_lean(resolve_model(str(tiny_model_dir)), "cpu").model
    assert checkpoint_coverage(module, tiny_model_dir / "model.pt") == []


def test_bad_granularity_is_refused(engine):
    with pytest.raises(E2VError) as info:
        engine.recognize(tone(1.0, 16000)[:, 0], "sentence")
    assert info.value.code == "bad_request"


def test_same_input_same_output(engine):
    wav = tone(1.0, 16000)[:, 0]
    a = engine.recognize(wav)
    b = engine.recognize(wav)
    assert a.scores == b.scores
