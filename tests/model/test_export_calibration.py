"""``export --head NAME --calibration NAME``: infer.py and ``E2V_MODEL=<export>`` give the torch engine's numbers."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest

from emotion2vec_webui.labels import EMOTIONS
from tests.head_data import write_head

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A 16 kHz PCM-16 clip: the app's decoder and infer.py's soundfile read the very same samples."""
    from emotion2vec_webui.audio.signals import noise, tone, write_audio

    x = tone(1.6, 16000, freq=310.0)[:, 0] + noise(1.6, 16000, amp=0.05, seed=4)[:, 0]
    return write_audio(tmp_path_factory.mktemp("export_cal") / "clip.wav", x, 16000, "wav")


@pytest.fixture(scope="module")
def heads(tiny_model_dir, tmp_path_factory):
    """Head ``mood`` (sharpened: over-confident), its calibration ``mood-cal``, and a nine-class one ``nine-cal``."""
    from emotion2vec_webui.engine.calibration import NINE, Calibration, head_fingerprint
    from emotion2vec_webui.model.export import file_sha256
    from emotion2vec_webui.runs.stores.calibration_store import write_calibration
    from emotion2vec_webui.runs.stores.head_store import load_head

    folder = tmp_path_factory.mktemp("export_cal_heads") / "heads"
    checkpoint = file_sha256(tiny_model_dir / "model.pt")
    rng = np.random.default_rng(9)
    write_head(folder / "mood", checkpoint, W1=rng.normal(0, 0.3, (16, 3)) * 8)
    head = load_head(folder, "mood")
    mood = Calibration("mood-cal", "mood", tuple(head.labels), 3.7, np.array([0.4, -0.2, 0.0]), checkpoint,
                       head_fingerprint(head))  # fmt: skip
    nine = Calibration("nine-cal", NINE, tuple(EMOTIONS), 2.3, rng.normal(0, 0.3, 9), checkpoint)
    for c in (mood, nine):
        write_calibration(folder, c, b"\x89PNG", "test")
    return folder


def recognise(engine, settings, clip, **options) -> dict:
    from emotion2vec_webui.runs.recognize import Recognition, RecognizeOptions

    flow = Recognition(settings, RecognizeOptions(extract_embedding=False, **options), write=False)
    return flow.run(str(clip), lambda fn: fn(engine), source_name=clip.name).result


def infer(folder, clip) -> dict:
    ran = subprocess.run([sys.executable, str(folder / "infer.py"), str(clip)], capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    return json.loads(ran.stdout)


def close(a: dict, b: dict) -> float:
    return max(abs(a[k] - b[k]) for k in a)


@pytest.mark.parametrize(
    ("options", "argv"),
    [
        ({"head": "mood", "calibration": "mood-cal"}, ["--head", "mood", "--calibration", "mood-cal"]),
        ({"calibration": "nine-cal"}, ["--calibration", "nine-cal"]),
    ],
    ids=["head", "nine"],
)
def test_export_with_calibration_gives_the_torch_engines_numbers(engine, settings, heads, clip, tiny_model_dir, tmp_path,
                                                                  options, argv):  # fmt: skip
    from emotion2vec_webui.cli.main import main
    from emotion2vec_webui.engine.engine import EmotionEngine

    settings = dataclasses.replace(settings, heads_dir=heads)
    torch_plain = recognise(engine, settings, clip, head=options.get("head"))
    torch_cal = recognise(engine, settings, clip, **options)
    out = tmp_path / "export"
    assert main(["export", str(out), "--model", str(tiny_model_dir), "--heads-dir", str(heads), *argv]) == 0
    assert json.loads((out / "calibration.json").read_text())["name"] == options["calibration"]

    exported = EmotionEngine.load(str(out), device="cpu", precision="auto")
    onnx_cal = recognise(exported, dataclasses.replace(settings, heads_dir=tmp_path / "no-heads"), clip, **options)
    script = infer(out, clip)
    for got in (onnx_cal, script):
        assert got["calibration"]["name"] == options["calibration"]
        assert close(got["scores"], torch_cal["scores"]) <= 1e-4
        if "head" in options:
            assert close(got["head"]["scores"], torch_cal["head"]["scores"]) <= 1e-4
            assert got["head"]["label"] == torch_cal["head"]["label"]
    # and the calibration did something: the calibrated numbers are not the plain ones
    moved = close(torch_cal["head"]["scores"], torch_plain["head"]["scores"]) if "head" in options else close(
        torch_cal["scores"], torch_plain["scores"])  # fmt: skip
    assert moved > 1e-3


def test_a_heads_calibration_is_refused_without_its_head(heads, tiny_model_dir, tmp_path, capsys):
    from emotion2vec_webui.cli.main import main

    out = tmp_path / "export"
    assert main(["export", str(out), "--model", str(tiny_model_dir), "--heads-dir", str(heads),
                 "--calibration", "mood-cal"]) == 2  # fmt: skip
    assert "mood" in capsys.readouterr().err and not out.exists()
