"""Compute precision: the one place that turns ``auto|fp32|bf16|fp16|int8|onnx|onnx-int8`` into the mode used.

``auto`` on CPU looks at the CPU's flags once (``/proc/cpuinfo``): bf16 where
it has AMX, else fp32 (:func:`auto_cpu_precision`); on CUDA bf16 or fp16.
"""

from __future__ import annotations

import functools
import logging

from emotion2vec_webui.options import PRECISION

log = logging.getLogger(__name__)

PRECISIONS = PRECISION.values  # options.py, the one definition; onnx*: onnx_backend.py
_DTYPE_NAMES = {
    "fp32": "float32",
    "bf16": "bfloat16",
    "fp16": "float16",
    "int8": "int8",
    "onnx": "onnx-float32",
    "onnx-int8": "onnx-int8",
}


@functools.cache
def cpu_flags(path: str = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU's feature flags (the first ``flags`` line of ``/proc/cpuinfo``; empty where there is none), read once."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


def auto_cpu_precision(flags: frozenset[str]) -> tuple[str, str]:
    """``auto`` on CPU: the fastest mode whose fidelity is measured within the 0.01 bound on such a CPU, and why.

    AMX (``amx_bf16``): bf16 runs on the AMX tiles, about twice fp32's speed on
    the large model (issue 22: 5.39 s against 10.46 s for the clip set) with a
    max score difference of 0.0083 on 20 speech clips (benchmarks/export_onnx.md).
    Without AMX it depends on the CPU: on an AVX512-BF16 Xeon bf16 ran slower than
    fp32, on an AMD EPYC with native AVX512-BF16 faster for short clips (3 s: 0.26
    against 0.55 s) and no faster at 30 s (benchmarks/engine_vs_funasr.md), so fp32
    stays (bf16 and int8, faster still but a larger change of every user's default,
    stay choices).
    """
    if "amx_bf16" in flags:
        return "bf16", "auto: this CPU has AMX (amx_bf16), bf16 is fastest within the 0.01 score bound"
    return "fp32", "auto: no AMX on this CPU (amx_bf16 absent), fp32"


def choose_precision(precision: str, device: str, flags: frozenset[str] | None = None) -> tuple[str, str]:
    """:func:`resolve_precision` and a note saying how ``auto`` chose (empty when the mode was asked for)."""
    if (precision or "auto").lower() == "auto" and not device.startswith("cuda"):
        return auto_cpu_precision(cpu_flags() if flags is None else flags)
    return resolve_precision(precision, device, flags), ""


def resolve_precision(precision: str, device: str, flags: frozenset[str] | None = None) -> str:
    """The one place that turns ``options.PRECISION`` (``auto|fp32|bf16|fp16|int8|onnx|onnx-int8``) into the mode used on ``device``.

    ``flags``: the CPU's feature flags for ``auto`` on CPU (default: this CPU's, :func:`cpu_flags`).
    """
    precision = (precision or "auto").lower()
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    on_cuda = device.startswith("cuda")
    if precision == "auto":
        if on_cuda:
            import torch

            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return auto_cpu_precision(cpu_flags() if flags is None else flags)[0]
    if precision == "fp16" and not on_cuda:
        log.warning("fp16 is not supported on CPU: using bf16 autocast instead")
        return "bf16"
    if precision.startswith("onnx"):
        from emotion2vec_webui.model.onnx_backend import available

        fallback = "int8" if precision == "onnx-int8" else "fp32"
        if on_cuda:
            log.warning("%s runs on CPU only: using %s on %s", precision, resolve_precision("auto", device), device)
            return resolve_precision("auto", device)
        if not available():
            log.warning(
                "%s needs onnxruntime and onnx (pip install onnxruntime onnx): using %s", precision, fallback
            )
            return fallback
        return precision
    if precision == "int8" and on_cuda:
        log.warning("int8 dynamic quantisation runs on CPU only: using fp16 on %s", device)
        return "fp16"
    return precision
