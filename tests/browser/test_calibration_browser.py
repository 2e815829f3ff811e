"""Calibration in a real browser: fit one in the Train tab (report, reliability diagram, the list), then pick it on
Recognize with a threshold above any score and see the card say calibrated and uncertain."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

TIMEOUT_MS = 120_000  # a loaded 2-core machine
SCREENS = Path("/tmp/e2v_screens")  # for people to look at, as in test_ui_browser.py


def shot(page, tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    SCREENS.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, SCREENS / path.name)


@pytest.fixture(autouse=True)
def patient_expect():
    expect.set_options(timeout=TIMEOUT_MS)
    yield
    expect.set_options(timeout=5_000)


@pytest.fixture(scope="module")
def server(ui_server):
    """The shared UI server; RAVDESS-named clips (4 actors x 3 emotions) in a sub-folder of its inputs."""
    from emotion2vec_webui.audio.signals import noise, tone, write_audio

    folder = ui_server.inputs / "calibrate_browser_set"
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(5)
    for actor in range(1, 5):
        for code in ("03", "04", "05"):
            x = tone(0.6, 16000, freq=float(rng.uniform(150, 600)))[:, 0] + noise(0.6, 16000, amp=0.05,
                                                                                  seed=actor)[:, 0]  # fmt: skip
            write_audio(folder / f"03-01-{code}-01-01-01-{actor:02d}.wav", x, 16000, "wav")
    ui_server.calibration_set = folder
    return ui_server


def pick(page, picker: str, name: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # the tab's select event reloads the picker's choices
        page.locator(f"{picker} input").click()
        option = page.get_by_role("option", name=re.compile(name))
        if option.count():
            option.first.click()
            return
        page.keyboard.press("Escape")
        time.sleep(0.5)
    raise AssertionError(f"{name} never appeared in {picker}")


def test_calibrate_in_the_train_tab_then_abstain_on_recognize(server, page, tmp_path):
    page.set_default_timeout(TIMEOUT_MS)
    page.set_viewport_size({"width": 1600, "height": 1000})
    page.goto(server.url)
    expect(page.locator("#model_status [data-state=ready]")).to_be_visible()

    page.get_by_role("tab", name=re.compile("Train")).click()
    page.locator("#calibrate_folder textarea, #calibrate_folder input").first.fill(str(server.calibration_set))
    page.locator("#calibrate_name textarea, #calibrate_name input").first.fill("ui_cal")
    page.click("#calibrate_button")
    result = page.locator("#calibrate_report #calibration_result")
    expect(result).to_be_visible()
    expect(result).to_contain_text("ECE")
    expect(result).to_contain_text("校准后 / after")
    expect(page.locator("#calibrate_diagram img")).to_be_visible()
    expect(page.locator("#calibrations_table")).to_contain_text("ui_cal")
    listed = httpx.get(server.url + "/api/v1/calibrations", timeout=30).json()["calibrations"]
    assert "ui_cal" in [c["name"] for c in listed]
    page.locator("#calibrate_report").scroll_into_view_if_needed()
    shot(page, tmp_path, "calibrate_section")

    page.get_by_role("tab", name=re.compile("Recognize")).first.click()
    clip = sorted(server.calibration_set.glob("*.wav"))[0]
    page.locator("#audio_in input[type=file]").set_input_files(str(clip))
    expect(page.locator("#audio_in button[aria-label=Play]")).to_be_visible()
    pick(page, "#calibration_pick", "ui_cal")
    page.locator("#min_confidence input").fill("1")
    page.click("#run_button")
    card = page.locator("#result_card")
    expect(card.locator(".e2v-calibrated")).to_contain_text("ui_cal")
    expect(card.locator(".e2v-uncertain")).to_contain_text("不确定 / uncertain")
    expect(card.locator(".e2v-uncertain-title")).to_contain_text("Uncertain")  # under the top emotion
    expect(card.locator(".e2v-row")).to_have_count(9)  # the scores stay, the top emotion with them
    shot(page, tmp_path, "recognize_uncertain")
