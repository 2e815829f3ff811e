"""Precision modes: each runs on CPU, stays close to fp32, and is recorded as the dtype used."""

from __future__ import annotations

import io
import logging

import numpy as np
import pytest
import soundfile as sf

from emotion2vec_webui.audio.signals import noise, tone
from emotion2vec_webui.engine.engine import EmotionEngine, resolve_precision

DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "bfloat16", "int8": "int8", "auto": "float32"}


def test_resolution_table(caplog):
    assert resolve_precision("auto", "cpu", frozenset()) == "fp32"  # no AMX (tests/engine/test_auto_precision.py)
    assert resolve_precision("fp32", "cpu") == "fp32"
    assert resolve_precision("int8", "cpu") == "int8"
    assert resolve_precision("bf16", "cpu") == "bf16"
    with caplog.at_level(logging.WARNING):
        assert resolve_precision("fp16", "cpu") == "bf16"
    assert "fp16" in caplog.text and "bf16" in caplog.text
    assert resolve_precision("int8", "cuda:0") == "fp16"
    with pytest.raises(ValueError):
        resolve_precision("fp8", "cpu")


@pytest.fixture(scope="module")
def clip():
    return (tone(2.0, 16000, freq=180)[:, 0] + noise(2.0, 16000, seed=9)[:, 0]).astype(np.float32)


@pytest.mark.parametrize("mode", ["bf16", "fp16", "int8"])
def test_mode_runs_and_stays_close_to_fp32(engine, tiny_model_dir, clip, mode):
    import torch

    fast = EmotionEngine.load(str(tiny_model_dir), device="cpu", precision=mode, warmup=False)
    assert fast.info.dtype == DTYPES[mode]
    if mode != "int8":  # weights of matmul layers are held in bf16, the head in fp32
        assert fast.module.blocks[0].attn.qkv.weight.dtype == torch.bfloat16
        assert fast.module.proj.weight.dtype == torch.float32
    ref = engine.recognize(clip, "frame", extract_embedding=True)
    got = fast.recognize(clip, "frame", extract_embedding=True)
    assert abs(sum(got.scores.values()) - 1) < 1e-4
    assert got.num_frames == ref.num_frames
    assert got.embedding.dtype == np.float32 and got.embedding.shape == ref.embedding.shape
    a, b = got.embedding.mean(axis=0), ref.embedding.mean(axis=0)
    assert float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)) > 0.999
    assert max(abs(got.scores[k] - ref.scores[k]) for k in ref.scores) < 0.05
    # The fp32 engine is untouched by another engine's precision (no shared module).
    assert engine.module.blocks[0].attn.qkv.weight.dtype == torch.float32


def test_result_json_records_the_dtype(tiny_model_dir, settings):
    from emotion2vec_webui.audio.decode import decode_audio
    from emotion2vec_webui.runs.recognize import Recognition

    fast = EmotionEngine.load(str(tiny_model_dir), device="cpu", precision="int8", warmup=False)
    wav = noise(1.0, 16000, seed=1)[:, 0]
    buf = io.BytesIO()
    sf.write(buf, wav, 16000, format="WAV")
    outcome = Recognition(settings, write=False).finish(decode_audio(buf.getvalue(), source_name="n.wav"), fast)
    assert outcome.result["model"]["dtype"] == "int8"


def test_onnx_modes_resolve_or_fall_back(monkeypatch, caplog):
    from emotion2vec_webui.model import onnx_backend

    monkeypatch.setattr(onnx_backend, "available", lambda: False)
    with caplog.at_level(logging.WARNING):
        assert resolve_precision("onnx", "cpu") == "fp32"
        assert resolve_precision("onnx-int8", "cpu") == "int8"
    assert "onnxruntime" in caplog.text
    monkeypatch.setattr(onnx_backend, "available", lambda: True)
    assert resolve_precision("onnx", "cpu") == "onnx"
    assert resolve_precision("onnx-int8", "cuda:0") in ("bf16", "fp16")


@pytest.mark.parametrize("mode", ["onnx", "onnx-int8"])
def test_onnx_mode_matches_fp32(engine, tiny_model_dir, clip, mode, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    monkeypatch.setenv("E2V_ONNX_CACHE", str(tmp_path / "onnx-cache"))
    fast = EmotionEngine.load(str(tiny_model_dir), device="cpu", precision=mode, warmup=False)
    assert fast.info.dtype == {"onnx": "onnx-float32", "onnx-int8": "onnx-int8"}[mode]  # result.json model.dtype
    assert list((tmp_path / "onnx-cache").glob("*/features*.onnx"))  # exported once, cached
    # Another length than the export's example: the time axis is dynamic.
    longer = np.concatenate([clip, clip[:8000]])
    for wav in (clip, longer):
        ref = engine.frame_features(wav).numpy()
        got = fast.frame_features(wav).numpy()
        assert got.shape == ref.shape
        tol = 1e-4 if mode == "onnx" else 0.1 * float(np.abs(ref).max())
        assert float(np.abs(got - ref).max()) < tol
    ref, got = engine.recognize(clip), fast.recognize(clip)
    assert max(abs(got.scores[k] - ref.scores[k]) for k in ref.scores) < (1e-4 if mode == "onnx" else 0.05)


def test_fused_attention_equals_funasr_attention(engine):
    import torch
    from funasr.models.emotion2vec.modules import AltAttention

    layers = [m for m in engine.module.modules() if isinstance(m, AltAttention)]
    assert layers and all("forward" in vars(m) for m in layers)  # switched per instance by lean loading
    layer = layers[0]
    dim, heads = layer.qkv.in_features, layer.num_heads
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 37, dim, generator=gen)
    bias = torch.randn(1, heads, 37, 37, generator=gen)
    padding = torch.zeros(2, 37, dtype=torch.bool)
    padding[1, 30:] = True
    with torch.inference_mode():
        for pad, alibi in ((None, bias), (padding, bias), (padding, None)):
            want = AltAttention.forward(layer, x, pad, alibi)
            got = layer(x, pad, alibi)
            assert torch.allclose(got, want, atol=1e-5), (pad is not None, alibi is not None)
