"""fastpath.py: the time-major conv front-end equals FunASR's; the int8 layers keep their error bounds."""

from __future__ import annotations

import pytest
import torch

from emotion2vec_webui.fastpath import ConvFrontEnd, Int8Linear, conv_front_end, quantize_int8


@pytest.fixture(scope="module")
def funasr_module(tiny_model_dir):
    """The tiny model loaded by FunASR's own AutoModel: FunASR's own front-end, untouched."""
    from emotion2vec_webui.model import load_automodel, resolve_model

    return load_automodel(resolve_model(str(tiny_model_dir)), "cpu").model


def test_engine_runs_the_time_major_front_end(engine, funasr_module):
    assert isinstance(engine.module.modality_encoders["AUDIO"].local_encoder, ConvFrontEnd)
    assert not isinstance(funasr_module.modality_encoders["AUDIO"].local_encoder, ConvFrontEnd)


@pytest.mark.parametrize("samples", [400, 16000, 16003, 48017])
def test_front_end_equals_funasr(funasr_module, samples):
    original = funasr_module.modality_encoders["AUDIO"].local_encoder
    fast = conv_front_end(original)
    assert fast is not None
    x = torch.randn(2, samples, generator=torch.Generator().manual_seed(samples))
    with torch.inference_mode():
        want, got, alone = original(x), fast(x), fast(x[1:])[0]
    assert got.shape == want.shape  # [B, C, T] like FunASR's
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-4)
    assert torch.allclose(alone, got[1], atol=1e-5)  # an item alone = the same item in a batch


def test_unknown_front_end_layout_is_left_alone():
    from funasr.models.emotion2vec.fairseq_modules import ConvFeatureExtractionModel

    group_norm = ConvFeatureExtractionModel([(8, 10, 5), (8, 3, 2)], mode="default")
    assert conv_front_end(group_norm) is None
    assert conv_front_end(torch.nn.Conv1d(1, 8, 3)) is None


def _linear_and_input(rows=120, seed=0):
    gen = torch.Generator().manual_seed(seed)
    linear = torch.nn.Linear(256, 384)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(384, 256, generator=gen) * 0.05)
        linear.bias.copy_(torch.randn(384, generator=gen))
    x = torch.nn.functional.gelu(torch.randn(2, rows, 256, generator=gen)) + 0.3  # post-GELU, non-zero mean
    return linear, x


def test_int8_linear_error_is_small_and_fine_rows_smaller():
    linear, x = _linear_and_input()
    with torch.inference_mode():
        want = linear(x)
        coarse = (Int8Linear(linear)(x) - want).abs().max().item()
        fine = (Int8Linear(linear, fine_rows=True)(x) - want).abs().max().item()
        dynamic = torch.ao.nn.quantized.dynamic.Linear.from_float(_with_qconfig(linear))(x)
    scale = want.abs().max().item()
    assert coarse < 0.02 * scale
    assert fine < coarse
    # the mean-centred product is more exact than plain dynamic int8 on the same layer
    assert coarse < (dynamic - want).abs().max().item()


def _with_qconfig(linear):
    linear.qconfig = torch.ao.quantization.default_dynamic_qconfig
    return linear


def test_int8_linear_mean_row_is_nearly_exact():
    """Rows equal to their mean go through the ~15-bit path only: the weights' int8 rounding is not seen."""
    linear, x = _linear_and_input()
    constant = x.mean(dim=1, keepdim=True).expand(-1, 7, -1).contiguous()
    with torch.inference_mode():
        err = (Int8Linear(linear)(constant) - linear(constant)).abs().max().item()
    assert err < 1e-3 * linear(constant).abs().max().item()


def test_int8_linear_shapes_and_batch_independence():
    linear, x = _linear_and_input(rows=33)
    layer = Int8Linear(linear)
    with torch.inference_mode():
        batched = layer(x)
        assert batched.shape == (2, 33, 384)
        assert torch.equal(layer(x[1]), batched[1])  # 2-D input = one item
        assert layer(x[0, 0]).shape == (384,)  # a single vector
        assert torch.allclose(layer(x[0, :1]), linear(x[0, :1]), atol=1e-3)  # one row: all of it is the mean


def test_quantize_int8_replaces_the_measured_layers_only(funasr_module):
    import copy

    module = copy.deepcopy(funasr_module)
    blocks = [m for m in module.modules() if hasattr(m, "mlp") and hasattr(m, "attn")]
    assert quantize_int8(module) == 3 * len(blocks)
    for block in blocks:
        assert isinstance(block.attn.qkv, Int8Linear) and block.attn.qkv.fine_rows
        assert isinstance(block.mlp.fc1, Int8Linear) and not block.mlp.fc1.fine_rows
        assert isinstance(block.mlp.fc2, Int8Linear)
        assert isinstance(block.attn.proj, torch.nn.Linear)  # kept fp32: see fastpath's docstring
    assert isinstance(module.proj, torch.nn.Linear)  # the classifier head
