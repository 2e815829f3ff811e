"""``export --head NAME`` with a regression (dimensional) head: ``infer.py`` and ``E2V_MODEL=<export>`` give the
torch engine's values and per-frame curves to 1e-4; what ``infer.py`` imports is in the torch-free requirements."""

from __future__ import annotations

import ast
import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.head_data import make_set, write_targets_csv

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def trained(tiny_model_dir, tmp_path_factory) -> tuple[Path, Path]:
    """A ridge regression head ``dims`` (arousal, valence) trained by ``train-head`` on synthetic numeric targets;
    returns (heads folder, a training clip at 16 kHz)."""
    from emotion2vec_webui.cli.main import main

    root = make_set(tmp_path_factory.mktemp("export_dims") / "data", per_class=3, seed=6)
    targets = write_targets_csv(root, speakers=3, seed=1)
    heads = root.parent / "heads"
    argv = ["train-head", str(targets), "--name", "dims", "--heads-dir", str(heads), "--classifier", "ridge",
            "--holdout", "0", "--model", str(tiny_model_dir), "--device", "cpu"]  # fmt: skip
    assert main(argv) == 0
    assert json.loads((heads / "dims" / "spec.json").read_text())["kind"] == "regression"
    return heads, clip16k(next(root.rglob("speech_*.wav")), root.parent / "clip.wav")


def clip16k(source: Path, out: Path) -> Path:
    """``source`` as 16 kHz PCM-16: the app's decoder and infer.py's soundfile then read the very same samples."""
    import soundfile as sf
    import soxr

    from emotion2vec_webui.audio.signals import write_audio

    data, rate = sf.read(source, dtype="float32")
    return write_audio(out, soxr.resample(data, rate, 16000) if rate != 16000 else data, 16000, "wav")


def recognise(engine, settings, clip: Path, **options) -> dict:
    from emotion2vec_webui.runs.recognize import Recognition, RecognizeOptions

    flow = Recognition(settings, RecognizeOptions(extract_embedding=False, **options), write=False)
    return flow.run(str(clip), lambda fn: fn(engine), source_name=clip.name).result


def gap(a, b) -> float:
    return float(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)).max())


def test_a_regression_head_travels_in_the_export(engine, settings, trained, tiny_model_dir, tmp_path):
    from emotion2vec_webui.cli.main import main
    from emotion2vec_webui.engine.engine import EmotionEngine
    from emotion2vec_webui.model.exported import load_export
    from emotion2vec_webui.runs.stores.head_store import load_head

    heads, clip = trained
    settings = dataclasses.replace(settings, heads_dir=heads)
    torch_utt = recognise(engine, settings, clip, head="dims")["dimensions"]
    torch_frames = recognise(engine, settings, clip, head="dims", granularity="frame")["dimensions"]

    out = tmp_path / "export"
    assert main(["export", str(out), "--model", str(tiny_model_dir), "--heads-dir", str(heads), "--head", "dims"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["custom_head"]["kind"] == "regression" and config["custom_head"]["output"] == "head_values"
    assert "head_values" in config["outputs"] and "head_scores" not in config["outputs"]
    labels = json.loads((out / "labels.json").read_text())["head"]
    assert labels["kind"] == "regression" and labels["labels"] == ["arousal", "valence"]

    # the graph's head_values: the head on the embedding, no softmax
    model = load_export(out, int8=False, threads=1)
    got = model.run(np.random.default_rng(2).normal(0, 0.1, (1, 24000)).astype(np.float32))
    head = load_head(heads, "dims")
    assert gap(got["head_values"][0], head.logits(got["embedding"][0])) <= 1e-4

    # infer.py: the values per utterance, named, and the per-frame curves (unsmoothed: the torch raw_values)
    ran = subprocess.run([sys.executable, str(out / "infer.py"), str(clip), "--frames"], capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    script = json.loads(ran.stdout)["dimensions"]
    assert script["name"] == "dims" and script["kind"] == "regression"
    assert script["targets"] == torch_utt["targets"] and script["targets_zh"] == torch_utt["targets_zh"]
    assert list(script["values"]) == ["arousal", "valence"] and "head" not in json.loads(ran.stdout)
    assert gap(list(script["values"].values()), list(torch_utt["values"].values())) <= 1e-4
    assert gap(script["frames"]["raw_values"], torch_frames["frames"]["raw_values"]) <= 1e-4

    # E2V_MODEL=<export>: the export's own head (no heads folder), result.json's dimensions block as torch's
    exported = EmotionEngine.load(str(out), device="cpu", precision="auto")
    onnx_settings = dataclasses.replace(settings, heads_dir=tmp_path / "no-heads")
    onnx_utt = recognise(exported, onnx_settings, clip, head="dims")
    onnx_frames = recognise(exported, onnx_settings, clip, head="dims", granularity="frame")["dimensions"]
    assert onnx_utt["head"] is None and onnx_utt["dimensions"]["targets"] == torch_utt["targets"]
    assert gap(list(onnx_utt["dimensions"]["values"].values()), list(torch_utt["values"].values())) <= 1e-4
    assert set(onnx_frames["frames"]) == set(torch_frames["frames"])
    for key in ("values", "raw_values"):
        assert gap(onnx_frames["frames"][key], torch_frames["frames"][key]) <= 1e-4
    # the curve moves over the clip (a head that answers the audio, not a constant)
    assert gap(torch_frames["frames"]["raw_values"][0], torch_frames["frames"]["raw_values"][-1]) > 0


def _requirement_names(path: Path) -> set[str]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return {re.split(r"[<>=!~\[ ;]", line, maxsplit=1)[0].lower() for line in lines if line}


def test_the_torch_free_requirements_hold_what_infer_py_imports():
    # infer.py (heads and calibrations included) runs on requirements-onnx-runtime.txt's packages alone; its import
    # names are its distributions' names (onnxruntime, numpy, soundfile, soxr)
    source = (ROOT / "emotion2vec_webui" / "model" / "data" / "export_infer.py").read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            imported.add(node.module.split(".")[0])
    third_party = {name for name in imported if name not in sys.stdlib_module_names}
    assert third_party == {"onnxruntime", "numpy", "soundfile", "soxr"}
    assert third_party <= _requirement_names(ROOT / "requirements-onnx-runtime.txt")
