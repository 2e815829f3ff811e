"""Model resolution, device selection, the test-model builder."""

from __future__ import annotations

import json
import logging
import shutil
import time

import pytest

from emotion2vec_webui.errors import ModelUnavailableError
from emotion2vec_webui.model.resolve import MODEL_IDS, resolve_device, resolve_model
from emotion2vec_webui.model.standins import config_for_size, reference_config


def test_local_directory_resolves(tiny_model_dir):
    r = resolve_model(str(tiny_model_dir))
    assert r.hub == "local" and r.path == tiny_model_dir and r.random_weights


def test_directory_missing_files_is_unavailable(tmp_path, tiny_model_dir):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "model.pt").unlink()
    with pytest.raises(ModelUnavailableError) as info:
        resolve_model(str(broken))
    assert "model.pt" in info.value.message


def test_unknown_name_is_unavailable_with_fixes():
    with pytest.raises(ModelUnavailableError) as info:
        resolve_model("no_such_model")
    msg = info.value.message
    assert "emotion2vec_plus_large" in msg and "make-test-model" in msg


@pytest.mark.parametrize("hub", ["ms", "hf"])
def test_unreachable_hub_fails_fast_and_names_the_fixes(tmp_path, monkeypatch, hub):
    # An empty cache and a hub endpoint that refuses connections: no network needed.
    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path / "ms"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setenv("MODELSCOPE_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    t0 = time.monotonic()
    with pytest.raises(ModelUnavailableError) as info:
        resolve_model("emotion2vec_plus_large", hub)
    assert time.monotonic() - t0 < 10
    msg = info.value.message
    assert MODEL_IDS["emotion2vec_plus_large"][hub] in msg
    for fix in ("local directory", "E2V_HUB", "MODELSCOPE_CACHE", "HF_HOME"):
        assert fix in msg


def test_device_resolution(caplog):
    assert resolve_device("cpu") == "cpu"
    import torch

    if not torch.cuda.is_available():
        assert resolve_device("auto") == "cpu"
        with caplog.at_level(logging.WARNING):
            assert resolve_device("cuda:1") == "cpu"
        assert "not available" in caplog.text
    with pytest.raises(ValueError):
        resolve_device("tpu")


def test_large_config_matches_the_published_one():
    assert config_for_size("large") == reference_config()
    base = config_for_size("base")["model_conf"]
    assert base["embed_dim"] == 768 and base["num_heads"] == 12


def test_make_test_model_writes_funasr_layout(tiny_model_dir):
    for name in ("config.yaml", "model.pt", "tokens.txt", "configuration.json", "e2v_random_weights.json"):
        assert (tiny_model_dir / name).is_file()
    meta = json.loads((tiny_model_dir / "e2v_random_weights.json").read_text())
    assert meta["random_weights"] is True and meta["size"] == "tiny"
    assert len((tiny_model_dir / "tokens.txt").read_text("utf-8").split()) == 9
