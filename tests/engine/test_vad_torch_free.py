"""VAD and conversations by channel on the ONNX-only install (issue 33): a real venv without torch.

The venv is the one tests/model/test_export.py makes for ``infer.py``
(``--without-pip``, packages linked from this environment's site-packages),
plus what the CLI's ``recognize`` imports and silero-vad as the ONNX-only
install has it (``pip install --no-deps``: the package and its metadata, no
torch). The command runs on an export folder, so nothing can import torch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sysconfig
from pathlib import Path

import pytest

from tests.model.test_export import _torch_free_venv, site_packages

ROOT = Path(__file__).resolve().parents[2]
# beyond infer.py's packages: PyAV (decoding), the CLI's imports (httpx for audio_url; the subtitle writers),
# and silero-vad's wheel for its ONNX graph (the package, found through its metadata, never imported)
CLI_PACKAGES = ("av", "av.libs", "httpx", "httpcore", "h11", "idna", "certifi", "srt.py", "webvtt")


def _dist_info(site: Path, project: str) -> str:
    found = sorted(site.glob(f"{project}-*.dist-info"))
    assert found, f"{project} is not installed here"
    return found[-1].name


@pytest.fixture(scope="module")
def onnx_only_python(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("onnx-only")
    python = _torch_free_venv(root)
    site = site_packages(python)
    ours = Path(sysconfig.get_paths()["purelib"])
    for name in (*CLI_PACKAGES, "silero_vad", _dist_info(ours, "silero_vad")):
        if (ours / name).exists() and not (site / name).exists():
            os.symlink(ours / name, site / name)
    os.symlink(ROOT / "emotion2vec_webui", site / "emotion2vec_webui")
    probe = subprocess.run([str(python), "-c", "import torch"], capture_output=True, text=True)
    assert "No module named 'torch'" in probe.stderr, probe.stderr
    return python


def _recognize(python: Path, export: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "E2V_OUTPUT_DIR": str(tmp_path / "outputs"),
        "E2V_LOG_DIR": str(tmp_path / "logs"),
        "E2V_DEVICE": "cpu",
    }
    return subprocess.run(
        [str(python), "-m", "emotion2vec_webui", "recognize", "--model", str(export), "--json", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )


def test_vad_and_a_conversation_by_channels_without_torch(onnx_only_python, tiny_export_dir, stereo_dialogue, tmp_path):
    """A stereo call: speech segments on the mix and one speaker per channel, each turn where its voice speaks."""
    path, spans = stereo_dialogue
    ran = _recognize(
        onnx_only_python, tiny_export_dir, tmp_path, str(path), "--segments", "vad", "--speakers", "channels"
    )
    assert ran.returncode == 0, ran.stderr
    result = json.loads(ran.stdout.splitlines()[-1])
    assert result["model"]["dtype"] == "onnx-float32"
    assert result["segments"] and {s["source"] for s in result["segments"]} == {"vad"}
    assert [s["id"] for s in result["speakers"]] == ["left", "right"]
    names = ("left", "right")
    for turn in result["turns"]:
        own = [(s, e) for ch, s, e in spans if names[ch] == turn["speaker"]]
        assert any(s - 0.3 <= turn["start_s"] and turn["end_s"] <= e + 0.3 for s, e in own), (turn, own)
    for ch, s, e in spans:  # every line of the dialogue is heard, on its own channel
        assert any(t["speaker"] == names[ch] and t["start_s"] < e and t["end_s"] > s for t in result["turns"])
    assert (Path(result["run_dir"]) / "transcript.srt").is_file()


def test_diarization_without_torch_names_what_was_asked(onnx_only_python, tiny_export_dir, stereo_dialogue, tmp_path):
    ran = _recognize(onnx_only_python, tiny_export_dir, tmp_path, str(stereo_dialogue[0]), "--speakers", "auto")
    assert ran.returncode == 2
    assert "Automatic speaker separation (speakers=auto" in ran.stderr and "needs PyTorch" in ran.stderr
    assert "自动区分说话人" in ran.stderr and "speakers=channels" in ran.stderr
    assert "segmentation=frames" not in ran.stderr and "Traceback" not in ran.stderr


def test_each_torch_part_is_named(monkeypatch):
    """Without torch: transcription and diarization are refused by name; channels alone are not refused."""
    from emotion2vec_webui.engine.conversation import ConversationOptions
    from emotion2vec_webui.errors import E2VError
    from emotion2vec_webui.runs import conversation_run
    monkeypatch.setattr(conversation_run, "_installed", lambda module: module != "torch")
    conversation_run.check_torch_parts(ConversationOptions("channels"))
    with pytest.raises(E2VError) as err:
        conversation_run.check_torch_parts(ConversationOptions("channels", transcribe=True))
    assert err.value.code == "bad_request" and str(err.value).startswith("Transcription (transcribe")
    assert "转写（transcribe" in str(err.value)
    with pytest.raises(E2VError) as err:
        conversation_run.check_torch_parts(ConversationOptions("auto", transcribe=True))
    assert str(err.value).startswith("Automatic speaker separation (speakers=auto")
