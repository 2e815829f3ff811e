"""The server on an ONNX export (``E2V_MODEL=<export>``) with torch and FunASR imports blocked.

A guarded subprocess, not a fresh venv: the server's own dependencies (Gradio,
FastAPI, …) are many, so the test server runs in this venv with a
``sitecustomize`` whose import hook refuses torch, FunASR, torchaudio,
silero-vad and modelscope (``ModuleNotFoundError``, as in an environment that
lacks them) and logs every attempt. segmentation=vad runs there on silero's
ONNX graph, found through the wheel's metadata without importing
``silero_vad``. The real torch-free install is measured in
benchmarks/export_onnx.md (requirements-onnx-runtime.txt).
"""

from __future__ import annotations

import io
import textwrap

import httpx
import numpy as np

from emotion2vec_webui.audio.signals import noise, tone, write_audio
from tests.server_util import ServerProcess, server_env
from tests.spec_check import check_result

BLOCKER = textwrap.dedent(
    """
    import importlib.abc, os, sys

    BLOCKED = {"torch", "funasr", "torchaudio", "silero_vad", "modelscope"}

    class _Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                with open(os.environ["E2V_TEST_BLOCKED_LOG"], "a") as f:
                    f.write(name + "\\n")
                raise ModuleNotFoundError(f"No module named {name!r} (blocked: ONNX-only test)", name=name)
            return None

    sys.meta_path.insert(0, _Block())
    """
)


class PatientServer(ServerProcess):
    """Waits up to 5 min for /healthz: building the Gradio UI took 100 s on this 2-core machine under load."""

    def wait(self, path: str, timeout: float) -> None:
        super().wait(path, max(timeout, 300))


def test_server_on_an_export_without_torch(tiny_export_dir, tmp_path):
    guard = tmp_path / "guard"
    guard.mkdir()
    (guard / "sitecustomize.py").write_text(BLOCKER, "utf-8")
    attempts = tmp_path / "blocked.log"
    env = {**server_env(tiny_export_dir, tmp_path), "PYTHONPATH": str(guard), "E2V_TEST_BLOCKED_LOG": str(attempts)}
    wav = write_audio(tmp_path / "c.wav", (tone(3.0, 16000)[:, 0] + noise(3.0, 16000)[:, 0]) / 2, 16000, "wav")
    with PatientServer(env) as server:
        ready = httpx.get(server.url + "/readyz", timeout=10)
        assert ready.status_code == 200, ready.text
        with httpx.Client(base_url=server.url, timeout=60) as client:
            r = client.post("/api/v1/recognize", files={"file": ("c.wav", wav.read_bytes(), "audio/wav")})
            assert r.status_code == 200, r.text
            body = r.json()
            check_result(body, "utterance")
            assert body["model"]["dtype"] == "onnx-float32" and "ONNX export" in body["model"]["name"]
            assert set(body["files"]) >= {"result.json", "processed_audio.wav", "embedding.npy"}
            saved = client.get(body["files"]["result.json"]).json()
            assert saved == {k: v for k, v in body.items() if k not in ("run_id", "files")}
            embedding = np.load(io.BytesIO(client.get(body["files"]["embedding.npy"]).content))
            assert embedding.shape == (64,)
            frame = client.post(
                "/api/v1/recognize",
                files={"file": ("c.wav", wav.read_bytes(), "audio/wav")},
                data={"granularity": "frame"},
            )
            assert frame.status_code == 200, frame.text
            check_result(frame.json(), "frame")
            assert client.get("/").status_code == 200  # the Gradio UI is served too
            # start-up, the model, both recognitions and the UI never even tried to import torch or FunASR
            assert not attempts.exists(), attempts.read_text()
            vad = client.post(
                "/api/v1/recognize",
                files={"file": ("c.wav", wav.read_bytes(), "audio/wav")},
                data={"segmentation": "vad"},
            )
            assert vad.status_code == 200, vad.text  # silero's ONNX graph: no torch (issue 33)
            check_result(vad.json(), "utterance")
            assert all(seg["source"] == "vad" for seg in vad.json()["segments"])  # tone and noise: maybe none
            assert not attempts.exists(), attempts.read_text()  # nor an attempt at silero_vad's torch modules
            assert client.get("/readyz").status_code == 200
        assert server.alive()
