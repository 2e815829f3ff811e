"""The Conversation view in a real browser: upload a stereo call, channels + transcript, two lanes, click → seek.

Random weights: the test checks structure (two lanes, turns, their order) and the player, never a word or emotion.
Screenshots go to /tmp/e2v_screens/ for people to look at.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser.pages import SCREENS, analyse_by_channels, shot

pytestmark = pytest.mark.browser

WAIT_MS = 240_000  # a loaded 2-core machine: server start, model loads and the analysis take long


@pytest.fixture(scope="module")
def server(ui_server):
    """The UI server with the conversation stand-ins (tests/conftest.py), shared with the other UI tests."""
    return ui_server


def test_conversation_view_lanes_turns_and_seek(server, page, stereo_dialogue, tmp_path):
    path, spans = stereo_dialogue
    analyse_by_channels(page, server.url, path, WAIT_MS, transcribe=True)
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
    shot(page, tmp_path, "conversation_view")
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
    shot(page, tmp_path, "conversation_after_click")
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
    shot(page, tmp_path, "conversation_rename_refused")
    # renaming is saved into the run: the lanes and the run's transcript.srt show the names
    page.locator("#conversation_names textarea").fill("left=Agent, right=客户")
    page.locator("#conversation_save_names").click()
    expect(page.locator('#conversation_lanes .e2v-conv-lane[data-speaker="left"] .e2v-conv-lane-name')).to_have_text("Agent")
    srt_url = page.locator("#conversation_view a", has_text="transcript.srt").get_attribute("href")
    srt_text = page.request.get(f"{server.url}/{srt_url}").text()
    assert "[Agent ·" in srt_text and "[客户 ·" in srt_text and "[left ·" not in srt_text
    expect(page.locator("#conversation_names_status")).to_contain_text("left=Agent")
    expect(page.locator("#conversation_names_status [data-error-code]")).to_have_count(0)
    shot(page, tmp_path, "conversation_renamed")


@pytest.fixture(scope="module")
def long_call(tmp_path_factory):
    """A ~90 s stereo call (the dialogue's lines four times over): long enough for each speaker's 20 s baseline,
    an escalation after it and a turning point on the arc (docs/conversations.md, the summary block)."""
    from emotion2vec_webui.audio.dialogue import LINES, dialogue
    from emotion2vec_webui.audio.signals import espeak_available, write_audio

    if not espeak_available():
        pytest.skip("espeak-ng is not installed")
    stereo, rate, _ = dialogue(LINES * 4)
    return write_audio(tmp_path_factory.mktemp("long-call") / "long_call.wav", stereo, rate)


def _scores(top: str) -> dict[str, float]:
    from emotion2vec_webui.labels import EMOTIONS

    return {k: 0.92 if k == top else 0.01 for k in EMOTIONS}


def test_tracks_arc_markers_filter_and_a_marker_seeks(server, page, long_call, tmp_path):
    """Tracks inside turns and the arc from a real run; markers from a constructed escalation; a click seeks.

    Random weights give no dependable escalation, so after the analysis the test rewrites the turns' nine scores
    in the run's result.json (a hand-built sequence: ``right`` neutral for its first 20 s of speech, angry after)
    and saves names, which recomputes the summary from the turns (runs/speaker_names.py) and redraws the view.
    The escalation must then sit at the start of ``right``'s first turn after its 20 s baseline.
    """
    import json

    from emotion2vec_webui.engine.call_summary import BASELINE_S, summary_for_result

    analyse_by_channels(page, server.url, long_call, WAIT_MS, width=1280)
    expect(page.locator("#conversation_view .e2v-conv")).to_be_visible()
    # a frame track inside every turn block: nine stacked bands each
    blocks = page.locator("#conversation_lanes .e2v-conv-block")
    n = blocks.count()
    assert n >= 8
    expect(page.locator("#conversation_lanes .e2v-conv-block.e2v-conv-has-track svg.e2v-conv-frames")).to_have_count(n)
    assert page.locator("#conversation_lanes .e2v-conv-block").first.locator("svg path").count() == 9
    # the arc under the lanes, on the same width as the lanes
    arc = page.locator("#conversation_arc svg")
    expect(arc).to_be_visible()
    lane_box = page.locator('#conversation_lanes .e2v-conv-lane[data-speaker="left"] .e2v-conv-track').bounding_box()
    arc_box = page.locator("#conversation_arc .e2v-conv-track").bounding_box()
    assert abs(lane_box["x"] - arc_box["x"]) < 1 and abs(lane_box["width"] - arc_box["width"]) < 1
    expect(page.locator("#conversation_summary_table tbody tr")).to_have_count(2)
    shot(page, tmp_path, "conversation_tracks_arc")

    # the constructed escalation
    folder = Path(server.env["E2V_OUTPUT_DIR"]) / page.locator("#conversation_run_info code").first.inner_text()
    result = json.loads((folder / "result.json").read_text("utf-8"))
    spoken, want = 0.0, None
    for turn in result["turns"]:
        angry = turn["speaker"] == "right" and spoken >= BASELINE_S
        if angry and want is None:
            want = turn["start_s"]
        turn["scores"] = _scores("angry" if angry else "neutral")
        turn["emotion"] = "angry" if angry else "neutral"
        spoken += (turn["end_s"] - turn["start_s"]) if turn["speaker"] == "right" else 0.0
    assert want is not None, "the call is too short for a baseline and an escalation"
    (folder / "result.json").write_text(json.dumps(result), "utf-8")
    expected = summary_for_result(result)
    assert [(e["type"], e["speaker"], e["time_s"]) for e in expected["events"]] == [("escalation", "right", round(want, 4))]
    page.locator("#conversation_names textarea").fill("left=Agent, right=Customer")
    page.locator("#conversation_save_names").click()
    expect(page.locator("#conversation_names_status")).to_contain_text("right=Customer")

    markers = page.locator("#conversation_arc .e2v-conv-marker")
    expect(markers).to_have_count(len(expected["events"]) + len(expected["turning_points"]))
    assert len(expected["turning_points"]) >= 1  # neutral → a half-angry call: the arc's level drops
    expect(page.locator("#conversation_moments .e2v-conv-moment")).to_have_count(markers.count())
    expect(page.locator("#conversation_comparison")).to_contain_text("Customer")
    shot(page, tmp_path, "conversation_markers")
    # every visible text, tooltip and aria-label of the view speaks both languages (test_bilingual's rule),
    # the user's data aside: speaker names and ids, the file and run folder names; and the loaded clip's "Play",
    # which ui/gradio_strings.py keeps as Gradio's own on purpose (tests and tools find the player by it)
    from tests.browser.test_bilingual import CONTEXT_CHARS, VISIBLE_TEXT_JS, english_only

    # Gradio's own queue line ('排队中：… / In queue: 1 of 1', bilingual through ui/gradio_strings.py) shows while
    # an event of the rename is still queued: the view is scanned once those events are done
    expect(page.get_by_text(re.compile(r"In queue"))).to_have_count(0, timeout=30_000)
    user_data = {"Agent", "Customer", "left", "right", long_call.name, folder.name, "Play"}
    assert english_only(page.evaluate(VISIBLE_TEXT_JS, CONTEXT_CHARS), user_data) == []
    SCREENS.mkdir(parents=True, exist_ok=True)  # the view alone, as docs/images/conversation.png shows it
    page.locator("#conversation_view").screenshot(path=str(SCREENS / "conversation_docs.png"))
    # the report: written with the run, named after the rename, self-contained
    report = page.locator("#conversation_report")
    expect(report).to_be_visible()
    assert "report.html" in report.inner_text() and "报告" in report.inner_text()
    page_text = page.request.get(f"{server.url}/{report.get_attribute('href')}").text()
    assert page_text.lstrip().lower().startswith("<!doctype html") and "Customer" in page_text
    assert "<script" not in page_text.lower()

    # clicking the escalation marker seeks the player to its time
    marker = page.locator('#conversation_arc .e2v-conv-marker[data-kind="escalation"]')
    expect(marker).to_have_count(1)
    assert abs(float(marker.get_attribute("data-start")) - want) < 1e-3
    assert "escalation" in marker.get_attribute("aria-label") and "情绪升级" in marker.get_attribute("aria-label")
    page.wait_for_function("() => document.querySelector('#conversation_player').readyState >= 1")
    page.locator("#conversation_player").evaluate("(a) => { a.pause(); a.currentTime = 0; }")
    marker.click()
    page.wait_for_function(
        "(w) => Math.abs(document.querySelector('#conversation_player').currentTime - w) < 0.6", arg=want
    )
    got = page.locator("#conversation_player").evaluate("(a) => a.currentTime")
    assert want - 0.01 <= got <= want + 0.6, (got, want)
    index = marker.get_attribute("data-index")
    expect(page.locator(f'#conversation_turns .e2v-conv-item[data-index="{index}"]')).to_have_class(re.compile("active"))
    # a turning point seeks too
    point = page.locator("#conversation_arc .e2v-conv-marker.e2v-conv-turning").first
    page.locator("#conversation_player").evaluate("(a) => a.pause()")
    point.click()
    page.wait_for_function(
        "(w) => Math.abs(document.querySelector('#conversation_player').currentTime - w) < 0.6",
        arg=float(point.get_attribute("data-start")),
    )
    page.locator("#conversation_player").evaluate("(a) => a.pause()")

    # the filter shows one speaker's lanes, turns, rows and moments; the call's arc stays
    page.locator("#conversation_filter select").select_option("right")
    expect(page.locator('#conversation_lanes .e2v-conv-lane[data-speaker="left"]')).to_be_hidden()
    expect(page.locator('#conversation_turns .e2v-conv-item[data-speaker="left"]').first).to_be_hidden()
    expect(page.locator('#conversation_turns .e2v-conv-item[data-speaker="right"]').first).to_be_visible()
    expect(page.locator('#conversation_summary_table tr[data-speaker="left"]')).to_be_hidden()
    expect(page.locator("#conversation_arc")).to_be_visible()
    shot(page, tmp_path, "conversation_filtered")
    page.locator("#conversation_filter select").select_option("")
    expect(page.locator('#conversation_lanes .e2v-conv-lane[data-speaker="left"]')).to_be_visible()
