"""Head-only mode: a backbone without the nine-class head (like emotion2vec_base) loads, refuses recognition
without a trained head, and answers with one (engine/engine.py, runs/recognize.py, docs/heads.md)."""

from __future__ import annotations

import dataclasses

import pytest

from emotion2vec_webui.config import load_settings
from emotion2vec_webui.errors import E2VError
from tests.head_data import make_set
from tests.spec_check import check_result


def strip_nine_class_head(model_dir):
    """Rewrite model.pt without the ``proj.*`` tensors (the nine-class head), as emotion2vec_base ships."""
    import torch

    path = model_dir / "model.pt"
    payload = torch.load(path, map_location="cpu", weights_only=False)
    state = payload["model"] if isinstance(payload, dict) and "model" in payload else payload
    for key in [k for k in state if k.startswith("proj.")]:
        del state[key]
    torch.save(payload, path)


def test_head_only_backbone(tmp_path_factory):
    from emotion2vec_webui.engine.engine import EmotionEngine
    from emotion2vec_webui.jobs.head_features import Backbone
    from emotion2vec_webui.jobs.train_head import TrainOptions, train_head
    from emotion2vec_webui.model.standins import make_test_model
    from emotion2vec_webui.runs.recognize import Recognition, RecognizeOptions
    from emotion2vec_webui.runs.stores.head_store import engine_hash

    root = tmp_path_factory.mktemp("head_only")
    model_dir = make_test_model(root / "base_like", "tiny", seed=3)
    strip_nine_class_head(model_dir)
    engine = EmotionEngine.load(str(model_dir), device="cpu", precision="fp32", warmup=False)
    assert engine.head_only

    settings = dataclasses.replace(load_settings(), model=str(model_dir), device="cpu",
                                   output_dir=root / "outputs", heads_dir=root / "heads")  # fmt: skip
    data = make_set(root / "data", per_class=3, seed=4)
    clip = next((data / "tone").glob("*.wav"))
    with pytest.raises(E2VError) as err:
        Recognition(settings).run(str(clip), lambda fn: fn(engine))
    assert err.value.code == "bad_request" and "nine-class head" in err.value.message and "分类头" in err.value.message

    backbone = Backbone(engine.info.name, engine.info.path, engine_hash(engine))
    options = TrainOptions(holdout=0, baseline_map={"angry": "noise"})
    outcome = train_head(data, "base_head", backbone, lambda fn: fn(engine), settings, options)
    assert outcome.report["baseline"] is None and any("baseline skipped" in line for line in outcome.log_lines)

    result = Recognition(settings, RecognizeOptions(head="base_head")).run(str(clip), lambda fn: fn(engine)).result
    check_result(result)
    assert result["model"]["head_only"] is True and result["head"]["name"] == "base_head"
    assert max(result["scores"].values()) == pytest.approx(1 / 9, abs=1e-5)  # placeholders, and said so
    assert any("no nine-class head" in w for w in result["warnings"])
