"""Calibration in a real browser: fit one in the Train tab (report, reliability diagram, the list), then pick it on
Recognize with a threshold above any score and see the card say calibrated and uncertain."""

from __future__ import annotations

import re

import httpx
import numpy as np
import pytest
from playwright.sync_api import expect

from tests.browser.pages import open_tab, pick, shot

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("patient_expect")]


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


def test_calibrate_in_the_train_tab_then_abstain_on_recognize(server, page, tmp_path):
    open_tab(page, server.url, "Train")
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
