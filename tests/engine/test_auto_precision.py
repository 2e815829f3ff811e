"""``auto`` precision on CPU: chosen from the CPU's flags (injected here), once, and shown where the model is."""

from __future__ import annotations

import logging

from emotion2vec_webui.engine.engine import EmotionEngine
from emotion2vec_webui.engine.precision import (
    auto_cpu_precision,
    choose_precision,
    cpu_flags,
    resolve_precision,
)

SAPPHIRE_RAPIDS = frozenset("fpu sse2 avx2 avx512f avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8".split())
ICE_LAKE = frozenset("fpu sse2 avx2 avx512f avx512_vnni".split())
COOPER_LAKE_VM = frozenset("fpu sse2 avx2 avx512f avx512_vnni avx512_bf16".split())  # bf16 instructions, no AMX
ZEN_ARM_OTHER = frozenset("fpu sse2 avx2".split())


def test_amx_picks_bf16_everything_else_keeps_fp32():
    assert resolve_precision("auto", "cpu", SAPPHIRE_RAPIDS) == "bf16"
    for flags in (ICE_LAKE, COOPER_LAKE_VM, ZEN_ARM_OTHER, frozenset()):
        assert resolve_precision("auto", "cpu", flags) == "fp32"
    mode, why = auto_cpu_precision(SAPPHIRE_RAPIDS)
    assert mode == "bf16" and "amx_bf16" in why
    assert "no AMX" in auto_cpu_precision(ICE_LAKE)[1]


def test_explicit_modes_ignore_the_flags():
    for mode in ("fp32", "int8", "bf16"):
        assert resolve_precision(mode, "cpu", SAPPHIRE_RAPIDS) == mode
        assert choose_precision(mode, "cpu", SAPPHIRE_RAPIDS) == (mode, "")
    assert choose_precision("auto", "cpu", SAPPHIRE_RAPIDS)[0] == "bf16"


def test_flags_are_read_from_cpuinfo_once(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx512f amx_bf16 amx_tile\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    assert cpu_flags(str(info)) == frozenset({"fpu", "avx512f", "amx_bf16", "amx_tile"})
    info.write_text("flags\t\t: fpu\n")
    assert "amx_bf16" in cpu_flags(str(info))  # cached: read once per process
    assert cpu_flags(str(tmp_path / "missing")) == frozenset()


def test_the_choice_is_logged_and_kept_in_the_model_info(tiny_model_dir, monkeypatch, caplog):
    import emotion2vec_webui.engine.precision as engine_module

    monkeypatch.setattr(engine_module, "cpu_flags", lambda path="/proc/cpuinfo": SAPPHIRE_RAPIDS)
    with caplog.at_level(logging.INFO, logger="emotion2vec_webui.engine.engine"):
        e = EmotionEngine.load(str(tiny_model_dir), device="cpu", precision="auto", warmup=False)
    assert e.info.dtype == "bfloat16" and "amx_bf16" in e.info.precision_note
    assert "amx_bf16" in caplog.text
    from types import SimpleNamespace

    from emotion2vec_webui.ui.system_tab import model_rows

    status = SimpleNamespace(state="ready", info=e.info, message="model ready")
    rows = dict(model_rows(SimpleNamespace(status=status, settings=None)))
    assert any("amx_bf16" in value for value in rows.values())  # the System tab shows the choice
    monkeypatch.setattr(engine_module, "cpu_flags", lambda path="/proc/cpuinfo": ICE_LAKE)
    e = EmotionEngine.load(str(tiny_model_dir), device="cpu", precision="auto", warmup=False)
    assert e.info.dtype == "float32" and "no AMX" in e.info.precision_note
    e = EmotionEngine.load(str(tiny_model_dir), device="cpu", precision="fp32", warmup=False)
    assert e.info.precision_note == ""
