"""The Conversation view in a real browser: upload a stereo call, channels + transcript, two lanes, click → seek.

Random weights: the test checks structure (two lanes, turns, their order) and the player, never a word or emotion.
Screenshots go to /tmp/e2v_screens/ for people to look at.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

SCREENS = Path("/tmp/e2v_screens")
WAIT_MS = 240_000  # a loaded 2-core machine: server start, model loads and the analysis take long


@pytest.fixture(scope="module")
def server(ui_server):
    """The UI server with the conversation stand-ins (tests/conftest.py), shared with the other UI tests."""
    return ui_server


def _shot(page, tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    SCREENS.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, SCREENS / path.name)


def test_conversation_view_lanes_turns_and_seek(server, page, stereo_dialogue, tmp_path):
    expect.set_options(timeout=WAIT_MS)
    page.set_default_timeout(WAIT_MS)
    path, spans = stereo_dialogue
    page.set_viewport_size({"width": 1600, "height": 1000})
    page.goto(server.url + "/")
    page.get_by_role("tab", name=re.compile("Conversation")).click()
    page.locator("#conversation_audio input[type=file]").set_input_files(str(path))
    page.locator("#conversation_speakers").get_by_text(re.compile("one speaker per channel")).click()
    page.locator("#conversation_transcribe input[type=checkbox]").check()
    page.locator("#conversation_button").click()
    view = page.locator("#conversation_view .e2v-conv")
    expect(view).to_be_visible()
    lanes = page.locator("#conversation_lanes .e2v-conv-lane")
    expect(lanes).to_have_count(2)
    assert [lanes.nth(i).get_attribute("data-speaker") for i in range(2)] == ["left", "right"]
    items = page.locator("#conversation_turns .e2v-conv-item")
    n = items.count()
    assert n >= len(spans)
    starts = [float(items.nth(i).get_attribute("data-start")) for i in range(n)]
    assert starts == sorted(starts)
    assert {items.nth(i).get_attribute("data-speaker") for i in range(n)} == {"left", "right"}
    for lane in ("left", "right"):  # each lane holds blocks of its own speaker only
        blocks = page.locator(f'#conversation_lanes .e2v-conv-lane[data-speaker="{lane}"] .e2v-conv-block')
        assert blocks.count() >= 1
        assert {blocks.nth(i).get_attribute("data-speaker") for i in range(blocks.count())} == {lane}
    player = page.locator("#conversation_player")
    page.wait_for_function("() => document.querySelector('#conversation_player').readyState >= 1")
    _shot(page, tmp_path, "conversation_view")
    target = items.nth(n - 1)  # the last turn: far from 0, so a jump is unmistakable
    want = float(target.get_attribute("data-start"))
    target.click()
    page.wait_for_function(
        "(w) => Math.abs(document.querySelector('#conversation_player').currentTime - w) < 0.6", arg=want
    )
    got = player.evaluate("(a) => a.currentTime")
    assert want - 0.01 <= got <= want + 0.6, (got, want)  # it plays on from there
    expect(target).to_have_class(re.compile("active"))
    # a lane block seeks too
    block = page.locator('#conversation_lanes .e2v-conv-lane[data-speaker="right"] .e2v-conv-block').first
    want = float(block.get_attribute("data-start"))
    player.evaluate("(a) => a.pause()")
    block.click()
    page.wait_for_function(
        "(w) => Math.abs(document.querySelector('#conversation_player').currentTime - w) < 0.6", arg=want
    )
    duration = float(view.get_attribute("data-duration"))
    page.wait_for_function(  # the playhead on the lanes follows the player
        "(x) => Math.abs(parseFloat(document.querySelector('.e2v-conv-playhead').style.left) - x) < 3",
        arg=100 * want / duration,
    )
    _shot(page, tmp_path, "conversation_after_click")
    # the run folder, result.json and the ids to rename are shown after the analysis
    info = page.locator("#conversation_run_info")
    expect(info).to_contain_text("result.json", timeout=10_000)
    expect(info.locator("code").filter(has_text=re.compile(r"^left$"))).to_have_count(1, timeout=10_000)
    # a refused rename (an id this run does not have) is shown beside the box; lanes and transcript stay
    page.locator("#conversation_names textarea").fill("left=Alice, S9=Bob")
    page.locator("#conversation_save_names").click()
    expect(page.locator('#conversation_names_status [data-error-code="bad_request"]')).to_contain_text("S9")
    expect(page.locator("#conversation_lanes .e2v-conv-lane")).to_have_count(2, timeout=10_000)
    assert page.locator("#conversation_turns .e2v-conv-item").count() == n
    expect(page.locator('#conversation_lanes .e2v-conv-lane[data-speaker="left"] .e2v-conv-lane-name')).to_have_text("left", timeout=10_000)
    _shot(page, tmp_path, "conversation_rename_refused")
    # renaming is saved into the run: the lanes and the run's transcript.srt show the names
    page.locator("#conversation_names textarea").fill("left=Agent, right=客户")
    page.locator("#conversation_save_names").click()
    expect(page.locator('#conversation_lanes .e2v-conv-lane[data-speaker="left"] .e2v-conv-lane-name')).to_have_text("Agent")
    srt_url = page.locator("#conversation_view a", has_text="transcript.srt").get_attribute("href")
    srt_text = page.request.get(f"{server.url}/{srt_url}").text()
    assert "[Agent ·" in srt_text and "[客户 ·" in srt_text and "[left ·" not in srt_text
    expect(page.locator("#conversation_names_status")).to_contain_text("left=Agent")
    expect(page.locator("#conversation_names_status [data-error-code]")).to_have_count(0)
    _shot(page, tmp_path, "conversation_renamed")
