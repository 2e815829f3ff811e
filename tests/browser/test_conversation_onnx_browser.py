"""The Conversation tab on an ONNX-only server (no torch, no FunASR): a stereo call analysed by channels (issue 33).

The session's ``onnx_only_server`` (tests/onnx_server.py) blocks torch, FunASR and silero-vad's torch modules and
logs every attempt; speech is found on silero's ONNX graph. Random weights: the test checks structure (two lanes,
turns of both speakers in time order, bilingual tooltips), never a word or an emotion. Screenshots go to
/tmp/e2v_screens/ for people to look at.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.pages import analyse_by_channels, shot
from tests.browser.test_bilingual import english_only

pytestmark = pytest.mark.browser

WAIT_MS = 300_000  # a loaded 2-core machine: the server's start and the analysis take long

ATTRIBUTES_JS = """
(root) => [...document.querySelectorAll(root + " [title], " + root + " [aria-label]")].flatMap((el) =>
  ["title", "aria-label"].map((a) => (el.getAttribute(a) || "").trim()).filter(Boolean)
    .map((v) => ({ text: v, context: v, attribute: "title" })))
"""


def test_conversation_by_channels_on_an_onnx_only_server(onnx_only_server, page, stereo_dialogue, tmp_path):
    path, spans = stereo_dialogue
    analyse_by_channels(page, onnx_only_server.url, path, WAIT_MS, ready=True)
    view = page.locator("#conversation_view .e2v-conv")
    expect(view.or_(page.locator("#conversation_view .e2v-error"))).to_be_visible()
    errors = page.locator("#conversation_view .e2v-error")
    assert errors.count() == 0, errors.first.inner_text()
    lanes = page.locator("#conversation_lanes .e2v-conv-lane")
    expect(lanes).to_have_count(2)
    assert [lanes.nth(i).get_attribute("data-speaker") for i in range(2)] == ["left", "right"]
    items = page.locator("#conversation_turns .e2v-conv-item")
    n = items.count()
    assert n >= len(spans), (n, spans)  # each line of the call is at least one turn
    starts = [float(items.nth(i).get_attribute("data-start")) for i in range(n)]
    assert starts == sorted(starts)
    assert {items.nth(i).get_attribute("data-speaker") for i in range(n)} == {"left", "right"}
    shot(page, tmp_path, "conversation_onnx_only")
    # every tooltip and aria-label of the view speaks both languages (tests/browser/test_bilingual.py's rule)
    attributes = page.evaluate(ATTRIBUTES_JS, "#conversation_view")
    assert len(attributes) >= n, attributes  # the lane blocks at least
    assert english_only(attributes) == [], attributes
    # nothing on the way tried to import torch, FunASR or silero-vad's torch modules
    attempts = onnx_only_server.attempts
    assert not attempts.exists(), attempts.read_text()
