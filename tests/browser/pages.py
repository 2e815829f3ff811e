"""What browser tests do to a page alike: open it on a tab once the model is ready, pick a name from a picker whose
choices reload, keep a screenshot (the Train-tab tests: a head, a calibration; their patient ``expect`` is the
``patient_expect`` fixture in conftest.py), start a call's analysis by channels (the Conversation tests)."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

from playwright.sync_api import expect

TIMEOUT_MS = 120_000  # a loaded 2-core machine
SCREENS = Path("/tmp/e2v_screens")  # for people to look at, as in test_ui_browser.py


def shot(page, tmp_path: Path, name: str) -> None:
    """A full-page screenshot in the test's folder, copied to ``SCREENS``."""
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    SCREENS.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, SCREENS / path.name)


def open_tab(page, url: str, tab: str) -> None:
    """Open the UI at ``url`` (patient timeouts, a wide viewport), wait for the model, click the tab named ``tab``."""
    page.set_default_timeout(TIMEOUT_MS)
    page.set_viewport_size({"width": 1600, "height": 1000})
    page.goto(url)
    expect(page.locator("#model_status [data-state=ready]")).to_be_visible()
    page.get_by_role("tab", name=re.compile(tab)).click()


def pick(page, picker: str, name: str) -> None:
    """Choose the option matching ``name`` in the dropdown ``picker``, retrying for a minute while its choices load."""
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


def analyse_by_channels(page, url: str, audio: Path, timeout_ms: int, width: int = 1600, ready: bool = False,
                        transcribe: bool = False) -> None:  # fmt: skip
    """Open the UI at ``url`` on the Conversation tab, upload ``audio``, ask for one speaker per channel, start.

    Args:
        timeout_ms: how long ``expect`` and the page wait from now on.
        width: the viewport's width (its height is 1000).
        ready: wait for the model first.
        transcribe: ask for the transcript too.
    """
    expect.set_options(timeout=timeout_ms)
    page.set_default_timeout(timeout_ms)
    page.set_viewport_size({"width": width, "height": 1000})
    page.goto(url + "/")
    if ready:
        page.locator("#model_status [data-state='ready']").wait_for()
    page.get_by_role("tab", name=re.compile("Conversation")).click()
    page.locator("#conversation_audio input[type=file]").set_input_files(str(audio))
    page.locator("#conversation_speakers").get_by_text(re.compile("one speaker per channel")).click()
    if transcribe:
        page.locator("#conversation_transcribe input[type=checkbox]").check()
    page.locator("#conversation_button").click()
