"""``emotion2vec-webui export``: the folder, its graph, ``infer.py`` in a torch-free venv, and the export as a model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from emotion2vec_webui.labels import EMOTIONS, EMOTIONS_ZH

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

ROOT = Path(__file__).resolve().parents[2]
# what infer.py needs, and what those need (onnxruntime: numpy; soundfile: cffi, pycparser, typing_extensions)
TORCH_FREE_PACKAGES = (
    "numpy",
    "numpy.libs",
    "onnxruntime",
    "soundfile.py",
    "_soundfile.py",
    "_soundfile_data",
    "soxr",
    "cffi",
    "pycparser",
    "typing_extensions.py",
)


@pytest.fixture(scope="module")
def export_dir(tiny_export_dir) -> Path:
    return tiny_export_dir


@pytest.fixture(scope="module")
def export_engine(export_dir):
    from emotion2vec_webui.engine.engine import EmotionEngine

    return EmotionEngine.load(str(export_dir), device="cpu", precision="auto")


@pytest.fixture(scope="module")
def speech16k(tmp_path_factory) -> Path:
    """A 16 kHz PCM-16 speech clip (espeak-ng, else a tone): both readers see the very same samples."""
    import soxr

    from emotion2vec_webui.audio.signals import espeak_available, speech, tone, write_audio

    if espeak_available():
        data, rate = speech("Hello there. This is a test of speech emotion recognition.")
        data = soxr.resample(data, rate, 16000)
    else:
        data = tone(3.0, 16000)
    return write_audio(tmp_path_factory.mktemp("clip") / "clip.wav", data, 16000, "wav")


def test_folder_holds_graphs_labels_config_readme_runner(export_dir, tiny_model_dir):
    from emotion2vec_webui.model.export import file_sha256
    from emotion2vec_webui.model.exported import is_export

    names = {p.name for p in export_dir.iterdir()}
    assert {"model.onnx", "model.int8.onnx", "head.npz", "labels.json", "config.json", "README.md", "infer.py"} <= names
    assert is_export(export_dir) and not is_export(tiny_model_dir)
    labels = json.loads((export_dir / "labels.json").read_text("utf-8"))["labels"]
    assert [lab["en"] for lab in labels] == list(EMOTIONS)
    assert [lab["zh"] for lab in labels] == [EMOTIONS_ZH[k] for k in EMOTIONS]
    config = json.loads((export_dir / "config.json").read_text("utf-8"))
    assert config["sample_rate"] == 16000 and config["frame_rate"] == 50 and config["opset"] == 17
    assert config["source_model"]["checkpoint_sha256"] == file_sha256(tiny_model_dir / "model.pt")
    assert config["tool"]["version"] and "layer_norm" in config["waveform_normalization"]
    readme = (export_dir / "README.md").read_text("utf-8")
    assert "InferenceSession" in readme and "labels.json" in readme


def test_graph_outputs_and_equal_length_batches(export_dir):
    from emotion2vec_webui.model.exported import load_export

    model = load_export(export_dir, int8=False, threads=1)
    wavs = np.random.default_rng(3).normal(0, 0.1, (3, 16000 * 3)).astype(np.float32)
    out = model.run(wavs)
    frames = (wavs.shape[1] - 400) // 320 + 1
    assert out["scores"].shape == (3, 9) and np.allclose(out["scores"].sum(axis=1), 1, atol=1e-5)
    assert out["frame_logits"].shape == (3, frames, 9)
    assert out["frame_embeddings"].shape[:2] == (3, frames)
    assert np.allclose(out["embedding"], out["frame_embeddings"].mean(axis=1), atol=1e-5)
    for i in range(3):  # a batch row equals that clip alone
        alone = model.run(wavs[i : i + 1])
        assert np.abs(alone["scores"][0] - out["scores"][i]).max() <= 1e-5


def site_packages(python: Path) -> Path:
    """The site-packages folder of the interpreter ``python`` (a venv's, to link packages into)."""
    ran = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         check=True, capture_output=True, text=True)  # fmt: skip
    return Path(ran.stdout.strip())


def _torch_free_venv(root: Path) -> Path:
    """A real venv without site packages; only infer.py's packages, linked from this environment's site-packages."""
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = site_packages(python)
    ours = Path(sysconfig.get_paths()["purelib"])
    for name in TORCH_FREE_PACKAGES:
        os.symlink(ours / name, site / name)
    for backend in ours.glob("_cffi_backend*.so"):
        os.symlink(backend, site / backend.name)
    return python


def test_infer_py_in_a_torch_free_venv_matches_recognize(export_dir, tiny_model_dir, speech16k, tmp_path):
    python = _torch_free_venv(tmp_path)
    probe = subprocess.run(
        [str(python), "-c", "import onnxruntime, numpy, soundfile, soxr; import torch"], capture_output=True, text=True
    )
    assert "No module named 'torch'" in probe.stderr, probe.stderr  # the runner's packages import; torch does not
    ran = subprocess.run(
        [str(python), "-I", str(export_dir / "infer.py"), str(speech16k)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert ran.returncode == 0, ran.stderr
    got = json.loads(ran.stdout.splitlines()[0])
    env = {**os.environ, "E2V_OUTPUT_DIR": str(tmp_path / "outputs"), "E2V_DEVICE": "cpu", "E2V_PRECISION": "fp32"}
    ref = subprocess.run(
        [sys.executable, "-m", "emotion2vec_webui", "recognize", str(speech16k), "--json", "--model", str(tiny_model_dir)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert ref.returncode == 0, ref.stderr
    want = json.loads(ref.stdout.splitlines()[0])
    assert max(abs(got["scores"][k] - want["scores"][k]) for k in EMOTIONS) <= 1e-4
    assert got["emotion"] == want["emotion"] and got["emotion_zh"] == want["emotion_zh"]
    for key in ("granularity", "confidence"):
        assert key in got
    assert set(got["audio"]) <= set(want["audio"]) and set(got["model"]) <= set(want["model"])


@pytest.mark.parametrize("seconds", [3, 10, 30, 45])
def test_export_engine_equals_torch_engine(engine, export_engine, seconds):
    """fp32 export vs the torch engine: scores within 1e-4, embeddings within 1e-3 (relative); 45 s is windowed."""
    wav = np.random.default_rng(seconds).normal(0, 0.1, 16000 * seconds).astype(np.float32)
    for granularity in ("utterance", "frame"):
        a = engine.recognize(wav, granularity)
        b = export_engine.recognize(wav, granularity)
        assert max(abs(a.scores[k] - b.scores[k]) for k in EMOTIONS) <= 1e-4
        assert a.embedding.shape == b.embedding.shape and a.num_frames == b.num_frames
        assert np.abs(a.embedding - b.embedding).max() <= 1e-3 * np.abs(a.embedding).max()
        if granularity == "frame":
            assert np.abs(a.frame_logits - b.frame_logits).max() <= 1e-3 * np.abs(a.frame_logits).max()


@pytest.mark.parametrize("max_batch", [1, 4])
def test_export_engine_batches_equal_torch(engine, export_engine, max_batch):
    rng = np.random.default_rng(7)
    wavs = [rng.normal(0, 0.1, n).astype(np.float32) for n in (48000, 48000, 52000, 160000, 480000)]
    a = engine.recognize_batch(wavs, max_batch=max_batch)
    b = export_engine.recognize_batch(wavs, max_batch=max_batch)
    assert max(abs(x.scores[k] - y.scores[k]) for x, y in zip(a, b, strict=True) for k in EMOTIONS) <= 1e-4


def test_int8_graph_stays_within_the_bound(export_dir, export_engine):
    from emotion2vec_webui.engine.engine import EmotionEngine

    int8 = EmotionEngine.load(str(export_dir), device="cpu", precision="int8", warmup=False)
    assert int8.info.dtype == "onnx-int8" and export_engine.info.dtype == "onnx-float32"
    assert export_engine.info.precision_note.startswith("auto")
    rng = np.random.default_rng(11)
    for seconds in (2, 5):
        wav = rng.normal(0, 0.1, 16000 * seconds).astype(np.float32)
        a, b = export_engine.recognize(wav), int8.recognize(wav)
        assert max(abs(a.scores[k] - b.scores[k]) for k in EMOTIONS) <= 0.01


def test_export_engine_imports_no_torch(export_dir):
    """Loading and running an export in a fresh process never imports torch or FunASR."""
    code = (
        "import sys, numpy as np\n"
        "from emotion2vec_webui.engine.engine import EmotionEngine\n"
        f"e = EmotionEngine.load({str(export_dir)!r}, device='cpu')\n"
        "r = e.recognize(np.random.default_rng(0).normal(0, .1, 40000).astype(np.float32), 'frame')\n"
        "r = e.recognize(np.random.default_rng(0).normal(0, .1, 16000 * 40).astype(np.float32))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'funasr', 'torchaudio')))\n"
    )
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip().splitlines()[-1] == "[]"


def test_cli_export_command(tiny_model_dir, tmp_path, capsys):
    from emotion2vec_webui.cli.main import main

    assert main(["export", str(tmp_path / "out"), "--model", str(tiny_model_dir)]) == 0
    assert (tmp_path / "out" / "model.onnx").is_file() and not (tmp_path / "out" / "model.int8.onnx").exists()
    assert "infer.py" in capsys.readouterr().out
    assert main(["export", str(tmp_path / "out"), "--model", str(tiny_model_dir)]) == 2  # not empty: refused


def _write_head(folder: Path, checkpoint: str, dim: int = 64) -> None:
    """A trained head in engine/heads.py's format (two dense layers), written by hand."""
    rng = np.random.default_rng(5)
    folder.mkdir(parents=True)
    np.savez(
        folder / "weights.npz",
        mean=rng.normal(0, 0.1, dim),
        scale=rng.uniform(0.5, 2, dim),
        W0=rng.normal(0, 0.3, (dim, 16)),
        b0=rng.normal(0, 0.1, 16),
        W1=rng.normal(0, 0.3, (16, 3)),
        b1=rng.normal(0, 0.1, 3),
    )
    labels = {"labels": ["calm", "tense", "upbeat"], "labels_zh": {"calm": "平静", "tense": "紧张"}}
    (folder / "labels.json").write_text(json.dumps(labels, ensure_ascii=False), "utf-8")
    spec = {"model": "tiny", "checkpoint_sha256": checkpoint, "pooling": "mean", "embedding_dim": dim}
    (folder / "spec.json").write_text(json.dumps(spec), "utf-8")


def test_export_with_a_trained_head(tiny_model_dir, tmp_path, speech16k):
    heads = pytest.importorskip("emotion2vec_webui.runs.stores.head_store")
    from emotion2vec_webui.cli.main import main
    from emotion2vec_webui.model.export import file_sha256
    from emotion2vec_webui.model.exported import load_export

    _write_head(tmp_path / "heads" / "mood", file_sha256(tiny_model_dir / "model.pt"))
    _write_head(tmp_path / "heads" / "other", "0" * 64)
    out = tmp_path / "with-head"
    argv = ["export", str(out), "--model", str(tiny_model_dir), "--heads-dir", str(tmp_path / "heads")]
    assert main([*argv, "--head", "other"]) != 0 and not out.exists()  # another backbone: refused
    assert main([*argv, "--head", "mood"]) == 0
    model = load_export(out, int8=False, threads=1)
    wav = np.random.default_rng(2).normal(0, 0.1, (1, 40000)).astype(np.float32)
    got = model.run(wav)
    head = heads.load_head(tmp_path / "heads", "mood")
    assert np.abs(got["head_scores"][0] - head.probs(got["embedding"][0])).max() <= 1e-5
    ran = subprocess.run([sys.executable, str(out / "infer.py"), str(speech16k)], capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    block = json.loads(ran.stdout)["head"]
    assert block["labels"] == ["calm", "tense", "upbeat"] and block["labels_zh"] == ["平静", "紧张", "upbeat"]
    assert block["label"] in block["labels"] and abs(sum(block["scores"].values()) - 1) <= 1e-4
