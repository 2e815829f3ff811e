"""silero-vad's own ONNX graph through ONNX Runtime: a speech probability per 32 ms frame, no PyTorch.

The silero-vad wheel ships its model as ONNX beside the TorchScript file
(``silero_vad/data/``). Its Python package cannot drive them without torch:
``silero_vad/__init__.py`` imports ``model.py`` and ``utils_vad.py``, which
import torch at module level (and ``model.py`` calls
``torch.set_num_threads(1)`` for the whole process). So this module finds the
graph file through the installed distribution's metadata
(:func:`importlib.metadata.distribution`), which reads the wheel's ``RECORD``
and never imports ``silero_vad`` — ``importlib.resources.files("silero_vad.data")``
would import the parent package, torch included. On an ONNX-only install
silero-vad is installed with ``--no-deps`` (README, requirements-onnx-runtime.txt):
only its data files are used.

Two graphs, the same network (silero's ``get_speech_timestamps`` gives both
the same probabilities as its TorchScript model, to 7e-5 here):

* ``silero_vad_16k_sequence.onnx`` (shipped since silero-vad 6.2.3, its
  ``SileroVADSequence``): the LSTM runs over up to :data:`BLOCK_FRAMES` frames
  in one call, so a minute of audio is 4 calls, not 1,875.
* ``silero_vad.onnx`` (every 5.x/6.x wheel, its ``OnnxWrapper``): one call per
  frame carrying the LSTM state; used when the sequence graph is absent.

Each frame is 512 samples preceded by the previous frame's last 64 (zeros
before the first), the last frame zero-padded — what both silero wrappers
feed. The session runs on one thread: the operations are tiny, and silero
sets one thread too. Calls keep their own LSTM state, so concurrent calls
need no lock (an ONNX Runtime session is thread-safe).
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
from pathlib import Path

import numpy as np

from emotion2vec_webui.audio.format import SAMPLE_RATE
from emotion2vec_webui.errors import E2VError

log = logging.getLogger(__name__)

FRAME = 512  # samples per probability at 16 kHz (32 ms)
CONTEXT = 64  # samples of the previous frame given with each frame
BLOCK_FRAMES = 512  # frames per call of the sequence graph (~16 s; silero's default)
SEQUENCE_GRAPH = "silero_vad_16k_sequence.onnx"
STREAMING_GRAPH = "silero_vad.onnx"
MISSING = (
    "Speech detection (segmentation=vad, conversations) needs silero-vad's ONNX graph, which this install lacks: "
    "pip install --no-deps 'silero-vad>=6' (no PyTorch needed). / "
    "语音检测（segmentation=vad、对话分析）需要 silero-vad 的 ONNX 模型，此安装没有："
    "pip install --no-deps 'silero-vad>=6'（无需 PyTorch）。"
)
NO_ONNXRUNTIME = (
    "Speech detection (segmentation=vad, conversations) needs onnxruntime: pip install onnxruntime. / "
    "语音检测（segmentation=vad、对话分析）需要 onnxruntime：pip install onnxruntime。"
)


def graph_file() -> Path | None:
    """silero-vad's ONNX graph in the installed wheel (the sequence graph when shipped), without importing it."""
    try:
        dist = importlib.metadata.distribution("silero-vad")
    except importlib.metadata.PackageNotFoundError:
        return None
    for name in (SEQUENCE_GRAPH, STREAMING_GRAPH):
        path = Path(dist.locate_file(f"silero_vad/data/{name}"))
        if path.is_file():
            return path
    return None


@functools.lru_cache(maxsize=2)
def _session(path: str):
    """The ONNX Runtime session on the graph at ``path``, loaded once."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise E2VError("bad_request", NO_ONNXRUNTIME) from exc
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # no warnings about unused initialisers on every load
    log.info("speech detection: %s on ONNX Runtime", Path(path).name)
    return ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])


def _frames(waveform: np.ndarray, first: int, count: int) -> np.ndarray:
    """Frames ``first`` … ``first + count - 1``, each with its :data:`CONTEXT` samples before: ``[count, 576]``."""
    lo = first * FRAME - CONTEXT
    padded = np.zeros(count * FRAME + CONTEXT, np.float32)
    src = waveform[max(lo, 0) : (first + count) * FRAME]
    padded[max(-lo, 0) : max(-lo, 0) + len(src)] = src
    view = np.lib.stride_tricks.sliding_window_view(padded, FRAME + CONTEXT)[::FRAME]
    return np.ascontiguousarray(view)


def speech_probabilities(waveform: np.ndarray, graph: Path | None = None) -> np.ndarray:
    """silero's speech probability of each 32 ms frame of a 16 kHz mono waveform.

    Args:
        waveform: 16 kHz mono float32.
        graph: a silero ONNX graph file (None: :func:`graph_file`'s choice).

    Returns:
        float32 ``[ceil(len(waveform) / 512)]``: frame ``i`` covers samples ``512 i`` … ``512 (i + 1)``.

    Raises:
        E2VError: ``bad_request`` when silero-vad or onnxruntime is not installed.
    """
    graph = graph or graph_file()
    if graph is None:
        raise E2VError("bad_request", MISSING)
    session = _session(str(graph))
    sequence = "h" in {i.name for i in session.get_inputs()}  # the sequence graph carries h and c, not state
    wave = np.ascontiguousarray(waveform, dtype=np.float32).reshape(-1)
    total = -(-len(wave) // FRAME)
    out = np.zeros(total, np.float32)
    if sequence:
        h = np.zeros((1, 1, 128), np.float32)
        c = np.zeros((1, 1, 128), np.float32)
        for first in range(0, total, BLOCK_FRAMES):
            count = min(BLOCK_FRAMES, total - first)
            probs, h, c = session.run(None, {"input": _frames(wave, first, count), "h": h, "c": c})
            out[first : first + count] = probs.reshape(-1)
        return out
    state = np.zeros((2, 1, 128), np.float32)
    rate = np.array(SAMPLE_RATE, np.int64)
    for first in range(0, total, BLOCK_FRAMES):
        count = min(BLOCK_FRAMES, total - first)
        for i, frame in enumerate(_frames(wave, first, count)):
            prob, state = session.run(None, {"input": frame[None], "state": state, "sr": rate})
            out[first + i] = prob.reshape(-1)[0]
    return out
