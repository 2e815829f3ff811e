"""The server on an ONNX export (``E2V_MODEL=<export>``) with torch and FunASR imports blocked.

The session's ``onnx_only_server`` (tests/onnx_server.py: this venv with an import hook that refuses
torch, FunASR, torchaudio, silero-vad and modelscope and logs every attempt). segmentation=vad runs there on
silero's ONNX graph, found through the wheel's metadata without importing ``silero_vad``. The real torch-free
install is measured in benchmarks/export_onnx.md (requirements-onnx-runtime.txt).
"""

from __future__ import annotations

import io

import httpx
import numpy as np

from emotion2vec_webui.audio.signals import noise, tone, write_audio
from tests.spec_check import check_result


def test_server_on_an_export_without_torch(onnx_only_server, tmp_path):
    server, attempts = onnx_only_server, onnx_only_server.attempts
    wav = write_audio(tmp_path / "c.wav", (tone(3.0, 16000)[:, 0] + noise(3.0, 16000)[:, 0]) / 2, 16000, "wav")
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
