"""The interactive timeline (ui/timeline.py) and the offline /docs page in a real Chromium, against the real server.

The session's shared server in the default configuration (tiny random-weight model); the History test
starts a new server process on its outputs folder and reopens the run written before. Screenshots go to
/tmp/e2v_screens/.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import httpx
import numpy as np
import pytest
from playwright.sync_api import expect

from emotion2vec_webui.audio.signals import write_audio
from tests.server_util import ServerProcess, server_env

pytestmark = pytest.mark.browser

SCREENS = Path("/tmp/e2v_screens")
LAPTOP = {"width": 1366, "height": 900}
TIMEOUT_MS = 90_000  # a loaded 2-core machine


@pytest.fixture(scope="module")
def server(shared_server):
    """The server in the default configuration (tests/conftest.py's shared_server), shared with other modules."""
    return shared_server()


@pytest.fixture(scope="module")
def clip60(tmp_path_factory) -> Path:
    """60 s with loudness swells and a quiet stretch every 10 s (so the envelope has a shape)."""
    t = np.arange(60 * 16000) / 16000
    x = 0.3 * np.sin(2 * np.pi * 220 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * t / 7.0)) ** 2
    x += 0.02 * np.random.default_rng(1).standard_normal(len(t))
    x[(t % 10) > 8] *= 0.05
    return write_audio(tmp_path_factory.mktemp("clip") / "clip60.wav", x.astype(np.float32), 16000, "wav")


@pytest.fixture
def page(page):
    page.set_default_timeout(TIMEOUT_MS)
    page.set_viewport_size(LAPTOP)
    expect.set_options(timeout=TIMEOUT_MS)
    yield page
    expect.set_options(timeout=5_000)


def _shot(target, name: str) -> None:
    SCREENS.mkdir(parents=True, exist_ok=True)
    target.screenshot(path=str(SCREENS / f"{name}.png"))


def _check_timeline(page, slot: str, duration: float, name: str) -> None:
    """The issue's checks on one timeline: click-to-seek, hover, play, zoom, toggles, PNG."""
    tl = page.locator(f"#{slot} .e2v-tl[data-ready='1']")
    expect(tl).to_be_visible()
    tl.scroll_into_view_if_needed()
    audio = page.locator(f"#{slot} audio.e2v-tl-audio")
    expect(audio).to_have_count(1)
    # One player: the ▶ button with its clock; the <audio> element plays without a bar of its own.
    expect(audio).to_be_hidden()
    assert audio.evaluate("a => a.controls") is False
    expect(page.locator(f"#{slot} audio[controls], #{slot} .e2v-tl-play")).to_have_count(1)
    smooth = page.locator(f"#{slot} .e2v-tl-btn[data-mode=smooth]").bounding_box()
    raw = page.locator(f"#{slot} .e2v-tl-btn[data-mode=raw]").bounding_box()
    assert raw["x"] - (smooth["x"] + smooth["width"]) >= 3, (smooth, raw)  # "Smoothed" and "Raw" apart
    over = page.locator(f"#{slot} .e2v-tl-scores .u-over")
    box = over.bounding_box()
    y = box["y"] + box["height"] / 2

    def at(seconds: float) -> float:  # the x of a time while the whole recording is shown
        return box["x"] + box["width"] * seconds / duration

    page.mouse.click(box["x"] + box["width"] * 0.75, y)  # 75 % of the width
    current = audio.evaluate("a => a.currentTime")
    assert abs(current - 0.75 * duration) < 1.0, current
    assert abs(float(tl.get_attribute("data-playhead")) - current) < 0.05

    page.mouse.move(at(18), y)
    page.mouse.move(at(18.3), y)
    tip = page.locator(f"#{slot} .e2v-tl-tip")
    expect(tip).to_be_visible()
    rows = tip.locator(".e2v-tl-tip-row")
    expect(rows).to_have_count(9)
    values = [float(v.rstrip("%")) for v in rows.locator(".e2v-tl-tip-val").all_inner_texts()]
    assert abs(sum(values) - 100) < 1.0 and values == sorted(values, reverse=True)
    assert re.search(r"0:18\.\d\d", tip.locator(".e2v-tl-tip-time").inner_text())
    names = " ".join(rows.locator(".e2v-tl-tip-name").all_inner_texts())
    assert "生气 angry" in names and "中立 neutral" in names  # bilingual labels
    _shot(page.locator(f"#{slot}"), f"{name}_hover")

    before = float(tl.get_attribute("data-playhead"))
    page.locator(f"#{slot} .e2v-tl-play").click()
    page.wait_for_timeout(1000)
    assert not audio.evaluate("a => a.paused")
    page.keyboard.press("Space")  # the play button handed focus to the timeline: Space pauses
    expect(audio).to_have_js_property("paused", True)
    moved = float(tl.get_attribute("data-playhead")) - before
    assert 0.3 < moved < 5, moved

    page.mouse.move(at(10), y)  # drag from 10 s to 20 s on the scores: zoom
    page.mouse.down()
    page.mouse.move(at(15), y, steps=4)
    page.mouse.move(at(20), y, steps=4)
    page.mouse.up()
    expect(tl).not_to_have_attribute("data-view-max", f"{duration:.3f}")
    lo, hi = float(tl.get_attribute("data-view-min")), float(tl.get_attribute("data-view-max"))
    scale = page.evaluate(f"() => {{ const u = window.e2vTimelines.get('{slot}').u; return [u.scales.x.min, u.scales.x.max]; }}")
    assert abs(lo - 10) < 0.25 and abs(hi - 20) < 0.25, (lo, hi)
    assert scale == pytest.approx([lo, hi], abs=1e-3)
    _shot(page.locator(f"#{slot}"), f"{name}_zoomed")

    page.locator(f"#{slot} .e2v-tl-btn[data-mode=raw]").click()
    expect(tl).to_have_attribute("data-mode", "raw")
    page.locator(f"#{slot} .e2v-tl-chip").nth(3).click()  # happy alone
    expect(tl).to_have_attribute("data-only", "happy")
    assert float(tl.get_attribute("data-view-min")) == pytest.approx(lo, abs=1e-3)  # the zoom survives a toggle
    with page.expect_download() as download:
        page.locator(f"#{slot} .e2v-tl-png").click()
    png = Path(download.value.path()).read_bytes()
    assert download.value.suggested_filename.endswith(".png") and png[:8] == b"\x89PNG\r\n\x1a\n"
    # The PNG shows what the page shows: happy alone, and its legend names happy alone (it listed all nine).
    expect(tl).to_have_attribute("data-png-legend", "happy")
    assert _legend_colours(png) == {"happy"}
    page.locator(f"#{slot} .e2v-tl-reset").click()
    expect(tl).to_have_attribute("data-view-max", f"{duration:.3f}")

    # A double click shows the whole recording again and leaves the playhead where it was.
    page.mouse.click(at(15), y)
    assert abs(float(tl.get_attribute("data-playhead")) - 15) < 0.5
    page.mouse.move(at(30), y)
    page.mouse.down()
    page.mouse.move(at(35), y, steps=4)
    page.mouse.move(at(40), y, steps=4)
    page.mouse.up()
    expect(tl).not_to_have_attribute("data-view-max", f"{duration:.3f}")
    box = over.bounding_box()  # the zoomed chart: its middle is 35 s
    page.mouse.dblclick(box["x"] + box["width"] / 2, y)
    expect(tl).to_have_attribute("data-view-max", f"{duration:.3f}")
    assert abs(float(tl.get_attribute("data-playhead")) - 15) < 0.5, tl.get_attribute("data-playhead")
    assert abs(audio.evaluate("a => a.currentTime") - 15) < 0.5


def _legend_colours(png: bytes) -> set[str]:
    """The emotions whose colour swatch is in the PNG's legend (its bottom strip, below the charts)."""
    from PIL import Image

    from emotion2vec_webui.ui.text import EMOTION_COLORS

    image = Image.open(io.BytesIO(png)).convert("RGB")
    strip = np.asarray(image)[-44:]  # the legend and the bottom margin
    found = set()
    for key, colour in EMOTION_COLORS.items():
        rgb = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)])
        if (np.abs(strip.astype(int) - rgb).sum(axis=2) < 6).sum() >= 60:  # a 12 x 12 swatch, not a stray pixel
            found.add(key)
    return found


def test_recognized_clip_timeline_seeks_plays_hovers_zooms(server, page, clip60):
    page.goto(server.url)
    expect(page.locator("#model_status [data-state=ready]")).to_be_visible()
    page.locator("#audio_in input[type=file]").set_input_files(str(clip60))
    expect(page.locator("#audio_in button[aria-label=Play]")).to_be_visible()
    # Segments says what it does at each granularity: at utterance, not "Frames" (one result for the clip).
    segmentation = page.locator("#segmentation")
    expect(segmentation).to_contain_text("whole clip")
    expect(segmentation).not_to_contain_text("Frames")
    page.locator("#granularity input[value=frame]").check()
    expect(segmentation).to_contain_text("frame emotions")
    expect(segmentation).not_to_contain_text("whole clip")
    page.click("#run_button")
    _check_timeline(page, "timeline", 60.0, "timeline_recognize")
    page.locator("#timeline").scroll_into_view_if_needed()
    _shot(page, "timeline_recognize_page")

    # frames.csv: one row per frame, nine scores summing to 1; as many frames as the timeline drew
    href = page.locator("#downloads a[download='frames.csv']").get_attribute("href")
    rows = list(csv.reader(io.StringIO(httpx.get(href, timeout=30).text)))
    assert len(rows[0]) == 10 and rows[0][0] == "time_s"
    body = np.array(rows[1:], dtype=np.float64)
    assert len(body) == int(page.locator("#timeline .e2v-tl").get_attribute("data-frames")) == 2999
    np.testing.assert_allclose(body[:, 1:].sum(axis=1), 1, atol=1e-4)


def test_history_run_reopened_after_a_restart(server, page, tiny_model_dir, tmp_path):
    """A new server process on the outputs folder the first test wrote to reopens the run with its timeline."""
    assert list(server.outputs.glob("outputs_*")), "the first test writes the run"
    env = server_env(tiny_model_dir, tmp_path, output_dir=server.outputs)
    with ServerProcess(env, log_path=tmp_path / "server.log") as restarted:
        page.goto(restarted.url)
        page.get_by_role("tab", name=re.compile("History")).click()
        table = page.locator("#history_table")
        expect(table).to_contain_text("clip60.wav")
        table.get_by_role("gridcell").filter(has_text="clip60.wav").first.click()
        _check_timeline(page, "history_timeline", 60.0, "timeline_history")


def test_similarity_and_result_headings_keep_their_case(server, page, tmp_path):
    """Section headings are not upper-cased: file names and units read as written ("tone_a.wav", "2.50 s")."""
    from emotion2vec_webui.audio.signals import tone

    a = write_audio(tmp_path / "tone_a.wav", tone(2.5, 16000, freq=220.0), 16000, "wav")
    b = write_audio(tmp_path / "Tone_B.wav", tone(2.0, 16000, freq=440.0), 16000, "wav")
    page.goto(server.url)
    expect(page.locator("#model_status [data-state=ready]")).to_be_visible()
    page.get_by_role("tab", name=re.compile("Similarity")).click()
    page.locator("#similarity_a input[type=file]").set_input_files(str(a))
    page.locator("#similarity_b input[type=file]").set_input_files(str(b))
    expect(page.locator("#similarity_a button[aria-label=Play]")).to_be_visible()
    expect(page.locator("#similarity_b button[aria-label=Play]")).to_be_visible()
    page.click("#similarity_button")
    headings = page.locator("#similarity_result .e2v-sim-clip .e2v-section")
    expect(headings).to_have_count(2)
    texts = headings.all_inner_texts()  # innerText is what the page shows, text-transform applied
    assert "tone_a.wav" in texts[0] and "2.50 s" in texts[0], texts
    assert "Tone_B.wav" in texts[1] and "2.00 s" in texts[1], texts
    transforms = page.evaluate(
        "() => [...document.querySelectorAll('.e2v-section')].map(e => getComputedStyle(e).textTransform)"
    )
    assert transforms and set(transforms) == {"none"}, transforms
    page.locator("#similarity_result").scroll_into_view_if_needed()
    _shot(page, "similarity_headings")


def test_docs_page_works_offline(server, page):
    html = httpx.get(server.url + "/docs", timeout=30).text
    urls = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html) + re.findall(r"url:\s*'([^']+)'", html)
    assert len(urls) >= 4
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), url  # served by the app: no CDN
        assert httpx.get(server.url + url, timeout=30).status_code == 200, url
    outside = []

    def only_loopback(route):
        if route.request.url.startswith(server.url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_loopback)  # as on a machine without internet
    page.goto(server.url + "/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("emotion2vec-webui")
    expect(page.locator(".swagger-ui .opblock").first).to_be_visible()
    assert page.locator(".swagger-ui .opblock").count() >= 5
    assert outside == []
    _shot(page, "docs_offline")
