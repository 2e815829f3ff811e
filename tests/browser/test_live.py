"""The Live tab in a real browser: Chromium's fake microphone streams a wav file into the real server.

Chromium is launched by this test (the shared launch args plus the fake-media
flags), with the ``microphone`` permission granted to the page.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from playwright.sync_api import expect

from emotion2vec_webui.audio.signals import espeak_available, speech, tone, write_audio
from emotion2vec_webui.runs.storage import RUN_ID_RE
from tests.server_util import ServerProcess, server_env

pytestmark = pytest.mark.browser

SCREENS = Path("/tmp/e2v_screens")


def _ticks(page) -> int:
    return int(page.locator("#live_status .e2v-live-status").get_attribute("data-ticks") or 0)


def _shot(page, tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    SCREENS.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, SCREENS / path.name)


def _seconds(page) -> float:
    return float(page.locator("#live_status .e2v-live-status").get_attribute("data-seconds") or 0)


def _start_recording(page) -> None:
    """Press Record until audio reaches the server (a press while the recorder is still setting up is lost)."""
    # The recorder lists the (fake) devices once the permission is in, then opens the stream.
    expect(page.locator("#live_audio select option").nth(1)).to_be_attached(timeout=15_000)
    page.wait_for_timeout(1500)
    record = page.get_by_role("button", name="Record", exact=True)
    stop = page.get_by_role("button", name="Stop", exact=True)
    for _ in range(3):
        record.click()
        expect(stop).to_be_visible(timeout=10_000)
        deadline = time.monotonic() + 20
        while _seconds(page) == 0 and time.monotonic() < deadline:
            page.wait_for_timeout(250)
        if _seconds(page) > 0:
            return
        stop.click()
        expect(record).to_be_visible(timeout=30_000)
        page.wait_for_timeout(1500)
    raise AssertionError("no microphone audio reached the server")


@pytest.fixture
def mic_wav(tmp_path) -> Path:
    """What the fake microphone plays (in a loop): speech, or a tone without espeak-ng."""
    import soxr

    if espeak_available():
        data, rate = speech("Good morning. I am really happy to see you today. Where have you been?")
        data = soxr.resample(data, rate, 48000).astype(np.float32)
    else:
        data = tone(4.0, 48000)[:, 0]
    return write_audio(tmp_path / "mic.wav", data, 48000, "wav")


def test_live_timeline_grows_and_stop_writes_a_run(
    browser_type, browser_type_launch_args, tiny_model_dir, mic_wav, tmp_path
):
    root = tmp_path / "server"
    env = server_env(tiny_model_dir, root)
    args = [
        *browser_type_launch_args.get("args", []),
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={mic_wav}",
    ]
    root.mkdir()
    with ServerProcess(env, log_path=root / "server.log") as srv:
        browser = browser_type.launch(**{**browser_type_launch_args, "args": args})
        try:
            context = browser.new_context(permissions=["microphone"], viewport={"width": 1366, "height": 900})
            page = context.new_page()
            page.goto(srv.url)
            page.get_by_role("tab", name="Live").click()
            _start_recording(page)
            # The rolling window is classified once per second of received audio.
            deadline = time.monotonic() + 60
            while _ticks(page) < 2 and time.monotonic() < deadline:
                page.wait_for_timeout(250)
            first = _ticks(page)
            if first < 2:
                _shot(page, tmp_path, "live_failed")
            assert first >= 2, f"no live results after 60 s: {page.locator('#live_status').inner_text()}"
            expect(page.locator("#live_timeline .e2v-tl[data-ready='1']")).to_be_visible(timeout=10_000)
            deadline = time.monotonic() + 30
            while _ticks(page) < first + 2 and time.monotonic() < deadline:
                page.wait_for_timeout(250)
            assert _ticks(page) >= first + 2, "the live timeline stopped growing"
            _shot(page, tmp_path, "live_recording")

            page.get_by_role("button", name="Stop", exact=True).click()
            expect(page.locator("#live_run_folder")).to_contain_text("outputs_", timeout=60_000)
            expect(page.locator("#live_result .e2v-card")).to_be_visible()
            _shot(page, tmp_path, "live_stopped")
            run_id = page.locator("#live_run_folder code").inner_text().strip()
        finally:
            browser.close()
    assert RUN_ID_RE.match(run_id)
    folder = root / "outputs" / run_id
    result = json.loads((folder / "result.json").read_text("utf-8"))
    assert result["granularity"] == "frame" and result["audio"]["source_name"] == "microphone_live.wav"
    assert result["audio"]["duration_s"] >= 3.0
    assert abs(len(result["frames"]["scores"]) - result["audio"]["duration_s"] * 50) <= 2
    assert (folder / "processed_audio.wav").exists() and (folder / "embedding.npy").exists()
