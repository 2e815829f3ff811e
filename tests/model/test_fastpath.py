"""fastpath.py: the time-major conv front-end equals FunASR's; the int8 layers keep their error bounds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emotion2vec_webui.model.fastpath import ConvFrontEnd, Int8Linear, PosConv, conv_front_end, pos_conv, quantize_int8


@pytest.fixture(scope="module")
def funasr_module(tiny_model_dir):
    """The tiny model loaded by FunASR's own AutoModel: FunASR's own front-end, untouched."""
    from emotion2vec_webui.model.resolve import load_automodel, resolve_model

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


def test_front_end_in_pieces_equals_whole_clip(funasr_module):
    """Every output frame sees only its own 400 samples: any piece size gives the same frames."""
    fast = conv_front_end(funasr_module.modality_encoders["AUDIO"].local_encoder)
    assert (fast.field, fast.stride) == (400, 320)
    x = torch.randn(2, 16000 * 2 + 123, generator=torch.Generator().manual_seed(3))
    results = []
    with torch.inference_mode():
        for frames in (1, 7, 64, 10**6):
            fast.chunk_frames = frames
            results.append(fast(x))
    assert results[0].shape == (2, fast.conv[-1].out_features, 100)
    for got in results[:-1]:
        assert torch.allclose(got, results[-1], atol=1e-5)


@pytest.mark.parametrize("rows", [3, 4, 5, 6, 9, 40, 41])
def test_paired_kernel_3_layer_equals_its_windows_product(rows):
    """Output pairs sharing a product (odd and even frame counts, batches) = the plain windows product."""
    from emotion2vec_webui.model.fastpath import ConvLayer

    gen = torch.Generator().manual_seed(rows)
    layer = ConvLayer(torch.randn(24, 16, 3, generator=gen), stride=2)
    assert layer.paired
    h = torch.randn(2, rows, 16, generator=gen)
    with torch.inference_mode():
        win = layer.windows(h)
        want = torch.nn.functional.linear(win.reshape(-1, 48), layer.weight).view(2, -1, 24)
        got = layer(h)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = layer(h)
    assert got.shape == want.shape == (2, (rows - 3) // 2 + 1, 24)
    assert torch.allclose(got, want, atol=1e-5)
    assert torch.allclose(layer(h[1:]), got[1:], atol=1e-5)  # an item alone = the same item in a batch (BLAS may block differently)
    assert torch.allclose(low.float(), want, rtol=0.03, atol=0.1)  # bf16 takes the plain product (and still runs)


def test_unknown_front_end_layout_is_left_alone():
    from funasr.models.emotion2vec.fairseq_modules import ConvFeatureExtractionModel

    group_norm = ConvFeatureExtractionModel([(8, 10, 5), (8, 3, 2)], mode="default")
    assert conv_front_end(group_norm) is None
    assert conv_front_end(torch.nn.Conv1d(1, 8, 3)) is None


def test_engine_runs_the_time_major_positional_encoder(engine, funasr_module):
    assert isinstance(engine.module.modality_encoders["AUDIO"].relative_positional_encoder, PosConv)
    assert not isinstance(funasr_module.modality_encoders["AUDIO"].relative_positional_encoder, PosConv)


def _funasr_pos_encoder(dim: int, kernel: int, groups: int, depth: int) -> torch.nn.Sequential:
    """FunASR's positional encoder layout (audio.py), built from its own modules."""
    from funasr.models.emotion2vec.fairseq_modules import LayerNorm, SamePad, TransposeLast

    blocks = [
        torch.nn.Sequential(
            torch.nn.Conv1d(dim, dim, kernel_size=kernel, padding=kernel // 2, groups=groups),
            SamePad(kernel),
            TransposeLast(),
            LayerNorm(dim, elementwise_affine=False),
            TransposeLast(),
            torch.nn.GELU(),
        )
        for _ in range(depth)
    ]
    return torch.nn.Sequential(TransposeLast(), *blocks, TransposeLast()).eval()


@pytest.mark.parametrize("frames", [1, 2, 19, 150])
def test_positional_encoder_equals_funasr(funasr_module, frames):
    """The tiny model's own encoder, and an even kernel (SamePad drops a frame); batches = items alone."""
    torch.manual_seed(frames)
    encoders = [funasr_module.modality_encoders["AUDIO"].relative_positional_encoder, _funasr_pos_encoder(32, 4, 4, 2)]
    for original in encoders:
        fast = pos_conv(original)
        assert fast is not None
        dim = fast.convs[0].in_channels
        x = torch.randn(3, frames, dim)
        with torch.inference_mode():
            want, got, alone = original(x), fast(x), fast(x[2:])[0]
            with torch.autocast("cpu", dtype=torch.bfloat16):
                low = fast(x)
        assert got.shape == want.shape == (3, frames, dim)
        assert torch.allclose(got, want, atol=1e-5)
        assert torch.allclose(alone, got[2], atol=1e-6)
        assert low.dtype == torch.bfloat16  # autocast runs FunASR's module (reduced precision)


def test_unknown_positional_encoder_layout_is_left_alone():
    from funasr.models.emotion2vec.fairseq_modules import TransposeLast

    assert pos_conv(torch.nn.Conv1d(8, 8, 3, padding=1)) is None
    strided = _funasr_pos_encoder(16, 3, 4, 1)
    strided[1][0].stride = (2,)
    assert pos_conv(strided) is None
    assert pos_conv(torch.nn.Sequential(TransposeLast(), TransposeLast())) is None
    assert pos_conv(_funasr_pos_encoder(16, 3, 4, 2)) is not None


def _linear_and_input(rows=120, seed=0):
    gen = torch.Generator().manual_seed(seed)
    linear = torch.nn.Linear(256, 384)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(384, 256, generator=gen) * 0.05)
        linear.bias.copy_(torch.randn(384, generator=gen))
    x = torch.nn.functional.gelu(torch.randn(2, rows, 256, generator=gen)) + 0.3  # post-GELU, non-zero mean
    return linear, x


def test_int8_linear_error_is_small_centring_and_fine_rows_smaller():
    linear, x = _linear_and_input()
    centre = x.reshape(-1, 256).mean(dim=0)
    with torch.inference_mode():
        want = linear(x)
        plain = (Int8Linear(linear)(x) - want).abs().max().item()
        centred = (Int8Linear(linear, centre)(x) - want).abs().max().item()
        fine = (Int8Linear(linear, centre, fine_rows=True)(x) - want).abs().max().item()
        dynamic = torch.ao.nn.quantized.dynamic.Linear.from_float(_with_qconfig(linear))(x)
    scale = want.abs().max().item()
    assert plain < 0.02 * scale
    assert centred < plain  # the inputs' shared offset no longer meets the weights' rounding
    assert fine < centred
    assert centred < (dynamic - want).abs().max().item()  # more exact than torch's dynamic int8 on the same layer


def _with_qconfig(linear):
    linear.qconfig = torch.ao.quantization.default_dynamic_qconfig
    return linear


def test_int8_linear_centre_row_is_exact():
    """A row equal to the centre never meets the int8 weights: its output is ``W @ c + b`` in fp32."""
    linear, x = _linear_and_input()
    centre = x[0].mean(dim=0)
    with torch.inference_mode():
        layer = Int8Linear(linear, centre)
        got, want = layer(centre.expand(5, -1).contiguous()), linear(centre.expand(5, -1))
    assert torch.allclose(got, want, atol=1e-5)
    assert not torch.allclose(Int8Linear(linear)(centre[None]), linear(centre[None]), atol=1e-4)  # plain int8 is not


def test_int8_linear_shapes_and_batch_independence():
    linear, x = _linear_and_input(rows=33)
    layer = Int8Linear(linear, x.reshape(-1, 256).mean(dim=0), fine_rows=True)
    with torch.inference_mode():
        batched = layer(x)
        assert batched.shape == (2, 33, 384)
        assert torch.equal(layer(x[1]), batched[1])  # an item alone = the same item in a batch
        assert torch.equal(layer(x[0, 5]), batched[0, 5])  # a single vector: rows are independent
        assert layer(x[0, 0]).shape == (384,)


def test_calibration_signal_is_fixed_and_speech_like():
    from emotion2vec_webui.model.fastpath import calibration_signal

    a, b = calibration_signal(), calibration_signal()
    assert a.dtype == np.float32 and a.shape == (48000,)
    assert np.array_equal(a, b)
    spectrum = np.abs(np.fft.rfft(a))
    assert 80 < np.argmax(spectrum) * 16000 / a.size < 400  # energy at a voice pitch, not at DC or noise


def test_quantize_int8_centres_each_layer_on_its_calibration_input(funasr_module):
    import copy

    module = copy.deepcopy(funasr_module)
    blocks = [m for m in module.modules() if hasattr(m, "mlp") and hasattr(m, "attn")]
    x = torch.randn(1, 16000, generator=torch.Generator().manual_seed(1))
    seen = []
    hook = blocks[0].mlp.fc2.register_forward_pre_hook(
        lambda _m, args: seen.append(args[0].reshape(-1, args[0].shape[-1]))
    )
    assert quantize_int8(module, lambda: module.extract_features(x, padding_mask=None)) == 4 * len(blocks)
    hook.remove()
    fc2 = blocks[0].mlp.fc2
    assert isinstance(fc2, Int8Linear)
    assert torch.allclose(fc2.centre, torch.cat(seen).mean(dim=0), atol=1e-5)
    assert fc2.centre.abs().max() > 0.01  # post-GELU inputs have an offset worth removing
    for block in blocks:
        assert isinstance(block.attn.qkv, Int8Linear) and block.attn.qkv.fine_rows
        assert isinstance(block.mlp.fc1, Int8Linear) and not block.mlp.fc1.fine_rows
        assert isinstance(block.attn.proj, Int8Linear) and not block.attn.proj.fine_rows
    assert isinstance(module.proj, torch.nn.Linear)  # the classifier head stays fp32
    assert isinstance(module.modality_encoders["AUDIO"].decoder.proj, torch.nn.Linear)  # training only
    plain = copy.deepcopy(funasr_module)
    quantize_int8(plain)
    assert torch.count_nonzero(plain.blocks[0].mlp.fc2.centre) == 0  # no calibration: no centre


@pytest.mark.parametrize("fine_rows", [False, True])
def test_int8_linear_prepacked_and_int_mm_paths_agree(fine_rows):
    """oneDNN's packed weights (the fast path where it runs) and _int_mm (the fallback) are the same arithmetic."""
    from emotion2vec_webui.model.fastpath import onednn_int8

    if not onednn_int8():
        pytest.skip("oneDNN int8 matmul not available on this machine")
    linear, x = _linear_and_input(rows=41)
    centre = x.reshape(-1, 256).mean(dim=0)
    packed = Int8Linear(linear, centre, fine_rows=fine_rows, prepacked=True)
    plain = Int8Linear(linear, centre, fine_rows=fine_rows, prepacked=False)
    assert packed.qweight is None and plain.packed is None  # one copy of the weights each
    with torch.inference_mode():
        assert torch.allclose(packed(x), plain(x), atol=1e-5)
        assert torch.allclose(packed(x[0, :1]), plain(x[0, :1]), atol=1e-5)  # a single row


def test_int8_engine_is_calibrated_at_load(tiny_model_dir):
    """EmotionEngine.load(precision="int8") runs the calibration pass: its int8 layers have centres."""
    from emotion2vec_webui.engine.engine import EmotionEngine

    engine = EmotionEngine.load(str(tiny_model_dir), device="cpu", precision="int8", warmup=False)
    layers = [m for m in engine.module.modules() if isinstance(m, Int8Linear)]
    assert layers and all(torch.count_nonzero(layer.centre) > 0 for layer in layers)
    result = engine.recognize(np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32))
    assert abs(sum(result.scores.values()) - 1) < 1e-4


@pytest.mark.parametrize("fine_rows", [False, True])
def test_int8_codes_multiplied_as_fp32_equal_int_mm(fine_rows):
    """Where _int_mm is slow (AVX2 without VNNI) the int8 codes are multiplied as fp32: the same numbers."""
    linear, x = _linear_and_input(rows=41)
    centre = x.reshape(-1, 256).mean(dim=0)
    as_float = Int8Linear(linear, centre, fine_rows=fine_rows, prepacked=False, float_codes=True)
    as_int = Int8Linear(linear, centre, fine_rows=fine_rows, prepacked=False, float_codes=False)
    assert as_float.qweight.dtype == torch.int8  # the weights stay int8 in memory
    assert "codes as fp32" in repr(as_float) and "_int_mm" in repr(as_int)
    with torch.inference_mode():
        assert torch.allclose(as_float(x), as_int(x), atol=1e-5)
        assert torch.allclose(as_float(x[0, :1]), as_int(x[0, :1]), atol=1e-5)  # a single row
