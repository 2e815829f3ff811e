"""The browser client of docs/streaming.md, as printed there, in Chromium with a fake microphone.

The page is the doc's HTML block, served from the server's own origin (a
loopback origin is a secure context: getUserMedia and AudioWorklet work). The
fake microphone plays a known signal; the take must come back as a run folder
whose audio is that signal, in order, at the audio context's rate.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from playwright.sync_api import expect

from emotion2vec_webui.audio.signals import write_audio

pytestmark = pytest.mark.browser

RATE = 48000
DOC = Path(__file__).resolve().parents[2] / "docs" / "streaming.md"


@pytest.fixture(scope="module")
def server(shared_server):
    """The default configuration (tests/conftest.py's shared_server): no token."""
    return shared_server()


def _doc_html() -> str:
    blocks = DOC.read_text("utf-8").split("```")[1::2]
    return next(b.split("\n", 1)[1] for b in blocks if b.startswith("html"))


def test_the_documented_browser_client_streams_the_microphone_into_a_run(
    server, browser_type, browser_type_launch_args, tmp_path
):
    rng = np.random.default_rng(11)
    t = np.arange(int(0.1 * RATE)) / RATE
    bursts = [np.sin(2 * np.pi * f * t) * np.hanning(len(t)) for f in rng.uniform(200, 2000, 60)]
    source = (0.4 * np.concatenate(bursts)).astype(np.float32)  # 6 s that never repeat within themselves
    mic = write_audio(tmp_path / "mic.wav", source, RATE, "wav")
    args = [*browser_type_launch_args.get("args", []), "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream", f"--use-file-for-fake-audio-capture={mic}"]  # fmt: skip
    browser = browser_type.launch(**{**browser_type_launch_args, "args": args})
    try:
        context = browser.new_context(permissions=["microphone"])
        page = context.new_page()
        page.goto(server.url + "/healthz")  # the server's origin
        page.set_content(_doc_html())
        page.click("#go")
        out = page.locator("#out")
        expect(out).to_contain_text(" s ", timeout=60_000)  # an interval line
        page.wait_for_timeout(3000)
        page.click("#end")
        expect(out).to_contain_text('"type":"done"', timeout=120_000)
        lines = out.inner_text().splitlines()
    finally:
        browser.close()
    done = json.loads(next(line for line in lines if '"type":"done"' in line))
    assert done["run_id"].startswith("outputs_") and done["intervals"] >= 1, lines
    folder = server.outputs / done["run_id"]
    result = json.loads((folder / "result.json").read_text("utf-8"))
    assert result["stream"]["encoding"] == "f32le" and result["audio"]["original_sample_rate"] in (44100, 48000)
    assert result["audio"]["duration_s"] >= 3.0
    # the saved take is the microphone's signal, in order: one stretch found in the (looped) source
    import soxr

    saved, rate = sf.read(folder / "processed_audio.wav", dtype="float32")
    ref = np.tile(soxr.resample(source, RATE, 16000), 3).astype(np.float64)
    seg = saved[16000 : 16000 + 24000].astype(np.float64)
    seg = (seg - seg.mean()) / (seg.std() + 1e-9)
    n = len(ref) + len(seg)
    corr = np.fft.irfft(np.fft.rfft(ref, n) * np.conj(np.fft.rfft(seg, n)), n)[: len(ref) - len(seg) + 1]
    energy = np.sqrt(np.convolve(ref**2, np.ones(len(seg)), "valid")) + 1e-9
    assert float(np.max(corr / energy / np.sqrt(len(seg)))) > 0.9
