"""The interactive timeline in a real browser: payload bytes, click→seek and hover latency, 60 s next to 10 min.

For each duration, a clip is recognised at frame granularity through the web UI
of a real server (headless Chromium), then measured in the page:

* payload: the bytes of the timeline's ``data-timeline`` attribute (what the
  page receives for the chart, besides the audio file it streams);
* click → ``currentTime``: from the ``mouseup`` event's timestamp (when the
  browser took the input) to a listener on ``window`` in the bubbling phase,
  which runs after the timeline's own handlers, where ``audio.currentTime``
  already holds the new time (checked: the seek error column) — and to the
  ``seeking`` event the media element fires;
* hover → tooltip: from a ``mousemove`` event's timestamp to the mutation of
  the tooltip's text (a MutationObserver);
* zoom redraw: milliseconds for one ``setScale`` of both charts.

Usage::

    python benchmarks/timeline_browser.py [--model DIR] [--durations 60,600] [--repeats 25]
        [--output benchmarks/timeline_browser.md]

Without ``--model`` the tiny random-weight model is built in a temporary
folder (timing of the page does not depend on the model; its frame scores
are as noisy as can be, the worst case for the payload's compression).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHROMIUM = os.environ.get("E2V_CHROMIUM", "/usr/bin/chromium")

PROBE_JS = """
(slot) => {
  const ctl = window.e2vTimelines.get(slot);
  const audio = ctl.audio, over = ctl.u.over, tip = ctl.tip;
  const rec = (window.__e2vBench = {seek: [], seeking: [], hover: []});
  let lastUp = null, lastMove = null;
  // bubbling on window: runs after the timeline's and uPlot's own mouseup handlers (a microtask queued
  // earlier would run between listeners, before the seek)
  window.addEventListener('mouseup', (e) => {
    lastUp = e.timeStamp;
    rec.seek.push([performance.now() - e.timeStamp, audio.currentTime]);
  });
  audio.addEventListener('seeking', () => lastUp != null && rec.seeking.push(performance.now() - lastUp));
  window.addEventListener('mousemove', (e) => { lastMove = e.timeStamp; }, true);
  new MutationObserver(() => {
    if (lastMove != null) { rec.hover.push(performance.now() - lastMove); lastMove = null; }
  }).observe(tip, {subtree: true, characterData: true, childList: true});
  return true;
}
"""

ZOOM_JS = """
async (slot) => {
  // uPlot redraws in a microtask after setScale: awaiting one lets that draw finish first
  const ctl = window.e2vTimelines.get(slot), D = ctl.p.duration, out = [];
  for (let i = 0; i < 10; i++) {
    const a = (i * 0.37 * D) % (D * 0.8);
    let t0 = performance.now();
    ctl.setView(a, a + D * 0.1);
    await null;
    out.push(performance.now() - t0);
    t0 = performance.now();
    ctl.setView(0, D);
    await null;
    out.push(performance.now() - t0);
  }
  return out;
}
"""


def make_clip(path: Path, seconds: float) -> Path:
    from emotion2vec_webui.audio.signals import write_audio

    t = np.arange(int(seconds * 16000)) / 16000
    x = 0.3 * np.sin(2 * np.pi * 220 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * t / 7.0)) ** 2
    x += 0.02 * np.random.default_rng(1).standard_normal(len(t))
    x[(t % 10) > 8] *= 0.05
    return write_audio(path, x.astype(np.float32), 16000, "wav")


def stats(values: list[float]) -> str:
    v = sorted(values)
    if not v:
        return "—"
    p95 = v[min(len(v) - 1, int(round(0.95 * (len(v) - 1))))]
    return f"{v[0]:.1f} / {statistics.median(v):.1f} / {p95:.1f} / {v[-1]:.1f}"


def measure(page, url: str, clip: Path, seconds: float, repeats: int) -> dict:
    from playwright.sync_api import expect

    page.goto(url)
    expect(page.locator("#model_status [data-state=ready]")).to_be_visible(timeout=300_000)
    page.locator("#audio_in input[type=file]").set_input_files(str(clip))
    expect(page.locator("#audio_in button[aria-label=Play]")).to_be_visible(timeout=300_000)
    page.locator("#granularity input[value=frame]").check()
    started = time.perf_counter()
    page.click("#run_button")
    tl = page.locator("#timeline .e2v-tl[data-ready='1']")
    expect(tl).to_be_visible(timeout=1_200_000)
    shown_s = time.perf_counter() - started
    payload = page.evaluate("() => document.querySelector('#timeline .e2v-timeline').getAttribute('data-timeline')")
    page_bytes = len(payload.encode("utf-8"))
    frames = int(tl.get_attribute("data-frames"))
    page.wait_for_timeout(1500)  # Gradio scrolls to the output (smoothly) when the run finishes
    tl.scroll_into_view_if_needed()
    page.evaluate(PROBE_JS, "timeline")
    over = page.locator("#timeline .e2v-tl-scores .u-over")
    rng = np.random.default_rng(0)
    errors = []
    for _ in range(repeats):
        frac = float(rng.uniform(0.02, 0.98))
        box = over.bounding_box()  # where it is now
        page.mouse.click(box["x"] + box["width"] * frac, box["y"] + box["height"] / 2)
        page.wait_for_timeout(60)
        errors.append(abs(page.evaluate("() => window.__e2vBench.seek.at(-1)[1]") - frac * seconds))
    box = over.bounding_box()
    for _ in range(repeats):
        frac = float(rng.uniform(0.02, 0.98))
        page.mouse.move(box["x"] + box["width"] * frac, box["y"] + box["height"] * 0.4)
        page.wait_for_timeout(60)
    rec = page.evaluate("() => window.__e2vBench")
    shots = Path("/tmp/e2v_screens")
    shots.mkdir(parents=True, exist_ok=True)
    tl.screenshot(path=str(shots / f"timeline_{int(seconds)}s.png"))  # for a person to look at
    zoom = page.evaluate(ZOOM_JS, "timeline")
    return {
        "seconds": seconds,
        "frames": frames,
        "payload_bytes": page_bytes,
        "shown_s": shown_s,
        "seek_ms": [r[0] for r in rec["seek"]],
        "seeking_ms": rec["seeking"],
        "hover_ms": rec["hover"],
        "zoom_ms": zoom,
        "seek_error_s": max(errors),
        "seek_errors": errors,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model directory (default: a tiny random-weight model)")
    parser.add_argument("--durations", default="60,600", help="clip lengths in seconds")
    parser.add_argument("--repeats", type=int, default=25)
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "timeline_browser.md"))
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    from tests.server_util import ServerProcess, server_env

    work = Path(tempfile.mkdtemp(prefix="e2v-timeline-bench-"))
    model = args.model
    if not model:
        from emotion2vec_webui.model.resolve import quiet_funasr
        from emotion2vec_webui.model.standins import make_test_model

        with quiet_funasr():
            model = str(make_test_model(work / "tiny", "tiny", seed=0))
    durations = [float(d) for d in args.durations.split(",")]
    rows = []
    with ServerProcess(server_env(model, work), log_path=work / "server.log") as srv, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"])
        for seconds in durations:
            page = browser.new_page(viewport={"width": 1366, "height": 900})
            page.set_default_timeout(600_000)
            clip = make_clip(work / f"clip_{int(seconds)}s.wav", seconds)
            rows.append(measure(page, srv.url, clip, seconds, args.repeats))
            page.close()
            r = rows[-1]
            print(
                f"{seconds:g} s: {r['frames']} frames, payload {r['payload_bytes'] / 1e6:.3f} MB, "
                f"click→currentTime ms (min/p50/p95/max) {stats(r['seek_ms'])}, "
                f"→seeking {stats(r['seeking_ms'])}, hover→tooltip {stats(r['hover_ms'])}, "
                f"zoom redraw {stats(r['zoom_ms'])}, max seek error {r['seek_error_s']:.3f} s",
                flush=True,
            )
        browser.close()
    lines = [
        "# Timeline in the browser: payload and latency",
        "",
        f"`python benchmarks/timeline_browser.py --durations {args.durations} --repeats {args.repeats}` on "
        f"{platform.node()} ({os.cpu_count()} CPUs, {platform.platform()}), headless Chromium "
        f"({CHROMIUM}), {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; tiny random-weight model "
        "(its frame scores are as noisy as can be: the worst case for the payload's compression).",
        "",
        "Latencies in ms as min / p50 / p95 / max over the repeats. Targets (issue 18): payload < 2 MB and "
        "hover/seek < 100 ms for 10 minutes.",
        "",
        "| clip | frames | timeline payload | click → currentTime | click → `seeking` | hover → tooltip "
        "| zoom redraw | max seek error |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['seconds']:g} s | {r['frames']} | {r['payload_bytes'] / 1e6:.3f} MB | {stats(r['seek_ms'])} | "
            f"{stats(r['seeking_ms'])} | {stats(r['hover_ms'])} | {stats(r['zoom_ms'])} | "
            f"{r['seek_error_s']:.3f} s |"
        )
    if len(rows) > 1:
        a, b = rows[0], rows[-1]
        lines += [
            "",
            f"Ratios {b['seconds']:g} s / {a['seconds']:g} s: payload "
            f"{b['payload_bytes'] / a['payload_bytes']:.1f}x for {b['frames'] / a['frames']:.1f}x the frames; "
            f"click→currentTime p50 {statistics.median(b['seek_ms']) / max(1e-9, statistics.median(a['seek_ms'])):.2f}x; "
            f"hover p50 {statistics.median(b['hover_ms']) / max(1e-9, statistics.median(a['hover_ms'])):.2f}x.",
        ]
    lines += [
        "",
        "How it is measured: `mouseup`'s `event.timeStamp` (the browser's input time) to a listener on "
        "`window` in the bubbling phase, which runs after the timeline's own handler has set "
        "`audio.currentTime` (the value read there is the new time: the seek error column, the largest "
        "distance between the clicked time and `currentTime`); `seeking` is the media element's "
        "event; hover is `mousemove`'s timestamp to the tooltip's DOM mutation. Mouse input comes from "
        "Playwright (CDP), so each figure includes the browser's own input dispatch.",
        "",
        "The seek error is the plot's pixel at full view (about 584 px wide here: 0.1 s per pixel for 60 s, "
        "1 s for 10 min); zoom in to seek finer.",
        "",
    ]
    from emotion2vec_webui.files import write_atomic

    write_atomic(args.output, "\n".join(lines))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
