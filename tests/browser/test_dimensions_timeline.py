"""A regression head's curves on the interactive timeline, in a real Chromium: the page is the component alone
(timeline.js, its CSS and uPlot inlined, a payload from ui/timeline.py), no server. Screenshot in /tmp/e2v_screens/."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect

from emotion2vec_webui.ui.timeline import STATIC_DIR, timeline_html
from tests.ui.test_timeline_dimensions import result_with_dimensions

pytestmark = pytest.mark.browser

SCREENS = Path("/tmp/e2v_screens")


def standalone_page(body: str) -> str:
    css = "".join((STATIC_DIR / f).read_text("utf-8") for f in ("vendor/uplot/uPlot.min.css", "timeline.css"))
    js = "".join((STATIC_DIR / f).read_text("utf-8") for f in ("vendor/uplot/uPlot.iife.min.js", "timeline.js"))
    return f"<!doctype html><html><head><meta charset='utf-8'><style>{css}</style></head><body style='width:1100px'>" \
           f"{body}<script>{js}</script></body></html>"  # fmt: skip


def test_regression_curves_drawn_under_the_scores(page):
    page.set_viewport_size({"width": 1200, "height": 800})
    result = result_with_dimensions(1500)  # 30 s
    page.set_content(standalone_page(timeline_html(result, run_id="dims_run")))
    tl = page.locator(".e2v-tl[data-ready='1']")
    expect(tl).to_be_visible(timeout=30_000)
    panel = page.locator(".e2v-tl-dims")
    expect(panel.locator("canvas")).to_have_count(1)
    chips = page.locator(".e2v-tl-dim-chip")
    expect(chips).to_have_count(2)
    assert chips.nth(0).get_attribute("data-target") == "arousal" and "唤醒度" in chips.nth(0).inner_text()
    assert "回归头 / Regression head dims" in page.locator(".e2v-tl-dim-legend").inner_text()
    scores, dims = page.locator(".e2v-tl-scores .u-over"), panel.locator(".u-over")
    sb, db = scores.bounding_box(), dims.bounding_box()
    assert db["y"] > sb["y"] + sb["height"] - 1 and abs(db["x"] - sb["x"]) < 1 and abs(db["width"] - sb["width"]) < 1

    # The lines are drawn in their colours (#111827 arousal, #2563eb valence) on the panel's canvas.
    colours = page.evaluate("""() => {
        const c = document.querySelector('.e2v-tl-dims canvas');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        const seen = new Set();
        for (let i = 0; i < d.length; i += 4) if (d[i + 3] > 200) seen.add([d[i], d[i + 1], d[i + 2]].join(','));
        return [...seen];
    }""")
    assert "17,24,39" in colours and "37,99,235" in colours

    # Hovering the panel at 10 s: the tooltip gives both targets' smoothed values at that frame.
    x = db["x"] + db["width"] * 10 / 30
    page.mouse.move(x, db["y"] + db["height"] / 2)
    tip = page.locator(".e2v-tl-tip")
    expect(tip).to_be_visible()
    i = int(tl.get_attribute("data-hover-index"))
    expected = result["dimensions"]["frames"]["values"][i]
    rows = page.locator(".e2v-tl-tip-dim")
    expect(rows).to_have_count(2)
    for row, value in zip(rows.all(), expected, strict=True):
        assert float(row.locator(".e2v-tl-tip-val").inner_text()) == pytest.approx(value, abs=0.01)

    # A click on the panel moves the playhead there, as on the scores.
    page.mouse.click(x, db["y"] + db["height"] / 2)
    assert float(tl.get_attribute("data-playhead")) == pytest.approx(10, abs=0.2)
    SCREENS.mkdir(parents=True, exist_ok=True)
    tl.screenshot(path=str(SCREENS / "timeline_dimensions.png"))
