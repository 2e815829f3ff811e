"""The Live tab's plain-Python parts: the page's report checked and drawn, the stream's last message shown."""

from __future__ import annotations

import json
import shutil
import subprocess
from types import SimpleNamespace

import numpy as np
import pytest

from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.labels import EMOTIONS
from emotion2vec_webui.runs.live.take_view import LiveProgress
from emotion2vec_webui.ui import live_tab


def _report(seconds: float, ends: list[float], skipped: int = 0, labels=None) -> dict:
    labels = labels or list(EMOTIONS)
    ticks = []
    for i, end in enumerate(ends):
        scores = dict.fromkeys(EMOTIONS, 0.0) | {EMOTIONS[i % 9]: 1.0}
        ticks.append([end, *[scores[k] for k in labels]])
    return {"seconds": seconds, "labels": labels, "ticks": ticks, "skipped": skipped, "error": ""}


def test_the_report_is_read_in_the_pages_label_order_and_its_lag_and_timeline_follow():
    labels = list(reversed(EMOTIONS))  # the order the server's scores came in, whatever it is
    progress = LiveProgress.from_report(_report(6.4, [1.0, 2.0, 5.0], skipped=2, labels=labels), 600.0)
    assert [EMOTIONS[int(np.argmax(t))] for t in progress.ticks] == [EMOTIONS[0], EMOTIONS[1], EMOTIONS[2]]
    assert progress.lag_s == pytest.approx(1.4)
    timeline = progress.timeline_result()
    scores = np.array(timeline["frames"]["scores"])
    assert scores.shape == (5, 9)  # one frame a second up to the last interval's end
    # the seconds the analysis skipped (3 and 4) take the scores of the next interval analysed, whose window covered them
    assert [EMOTIONS[int(np.argmax(r))] for r in scores] == [EMOTIONS[0], EMOTIONS[1], EMOTIONS[2], EMOTIONS[2],
                                                            EMOTIONS[2]]  # fmt: skip
    html = live_tab.status_html(progress)
    assert 'data-ticks="3"' in html and 'data-seconds="6.40"' in html and "window(s) analysed" in html
    assert "2 window(s) skipped" in html and "跳过 2 个窗口" in html


@pytest.mark.parametrize(
    "bad",
    [
        {"seconds": float("inf")},
        {"seconds": -1},
        {"seconds": 1e9},
        {"labels": ["happy"] * 9},
        {"ticks": [[1.0, 0.5]]},
        {"ticks": [[1.0, *[2.0] * 9]]},  # a score over 1
        {"ticks": [[2.0, *[0.1] * 9], [1.0, *[0.1] * 9]]},  # out of order
        {"ticks": [[1.0, *[0.1] * 9]] * 100_000},  # more intervals than the take's limit allows
        {"ticks": [[True, *[0.1] * 9]]},
        {"error": ["not", "text"]},
    ],
)
def test_a_malformed_report_is_refused_and_drawn_as_nothing(bad):
    with pytest.raises(E2VError) as err:
        LiveProgress.from_report({"seconds": 1.0} | bad, 600.0)
    assert err.value.code == "bad_request" and " / " in err.value.message
    fig, html, drawn = live_tab.on_view(json.dumps({"seconds": 1.0} | bad), 0)
    assert fig is None and drawn == 0 and 'data-ticks="0"' in html


def test_the_view_draws_only_when_a_new_interval_came():
    report = json.dumps(_report(2.5, [1.0, 2.0]))
    fig, html, drawn = live_tab.on_view(report, 0)
    assert fig and 'class="e2v-timeline"' in fig and drawn == 2
    fig, html, drawn = live_tab.on_view(report, drawn)
    assert fig is None and drawn == 2 and 'data-ticks="2"' in html
    assert live_tab.on_view("", 0)[0] is None and live_tab.on_view("x" * (3 << 20), 0)[0] is None


def test_a_lag_beyond_the_warning_is_shown_in_both_languages():
    html = live_tab.status_html(LiveProgress.from_report(_report(9.0, [1.0, 2.0]), 600.0))
    assert 'class="e2v-live-lag"' in html and "behind" in html and "分析落后" in html and 'data-lag="7.00"' in html


def test_stop_shows_the_streams_error_or_a_plain_card_for_anything_else(tmp_path):
    service = SimpleNamespace(settings=SimpleNamespace(output_dir=tmp_path))
    view = live_tab.on_stop(service, json.dumps({"type": "error", "code": "audio_too_short",
                                                 "message": "The take is only 0.10 s long. / 录音只有 0.10 秒。"}))  # fmt: skip
    assert view.error_code == "audio_too_short" and "0.10" in view.card_html
    view = live_tab.on_stop(service, json.dumps({"type": "error", "code": "<script>", "message": "x"}))
    assert view.error_code == "internal_error" and "<script>" not in view.card_html
    assert live_tab.on_stop(service, "").error_code == "audio_empty"
    # a run name from the page is checked like any other: nothing outside the outputs folder
    view = live_tab.on_stop(service, json.dumps({"type": "done", "run_id": "../../etc"}))
    assert view.error_code == "not_found" and view.result is None


def test_the_tickets_come_from_the_services_book():
    from emotion2vec_webui.runs.live.stream_tickets import StreamTickets

    service = SimpleNamespace(stream_tickets=StreamTickets())
    ticket = live_tab.mint_ticket(service)
    assert service.stream_tickets.redeem(ticket) and not service.stream_tickets.redeem(ticket)


def test_the_status_line_marks_an_interval_below_the_threshold_uncertain():
    report = json.dumps(_report(2.5, [1.0, 2.0]))  # the latest interval's top score is 1.0
    for threshold, marked in ((None, False), (0.5, False), (1.0, False), ("x", False), (2.0, False)):
        assert ("不确定" in live_tab.on_view(report, 0, 600.0, threshold)[1]) == marked, threshold
    unsure = _report(2.5, [1.0, 2.0])
    unsure["ticks"][-1][1:] = [0.4] + [0.6 / 8] * 8
    html = live_tab.on_view(json.dumps(unsure), 0, 600.0, 0.5)[1]
    assert 'class="e2v-uncertain"' in html and "uncertain / 不确定 (" in html and "angry 40.0%" in html
    assert "不确定" not in live_tab.on_view(json.dumps(unsure), 0, 600.0, 0.4)[1]


def test_the_tabs_calibration_and_threshold_go_into_the_start_message(settings, tmp_path):
    """The pickers feed the page's start (wired in Gradio); live.js puts them in the message the server checks."""
    import gradio as gr

    from emotion2vec_webui.runs.live.stream_options import StreamOptions

    service = SimpleNamespace(settings=settings)
    with gr.Blocks() as demo:
        live_tab.build_live_tab(service)
    config = demo.get_config_file()
    ids = {c["props"].get("elem_id"): c["id"] for c in config["components"]}
    (start,) = [d for d in config["dependencies"] if d.get("js") == live_tab.START_JS]
    assert start["inputs"][1:] == [ids["live_calibration_pick"], ids["live_min_confidence"]]
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: live.js's start message is checked by the browser tests only")
    script = tmp_path / "start.js"
    script.write_text(
        "globalThis.window = {}; globalThis.document = { querySelector: () => null }; globalThis.navigator = {};\n"
        f"eval(require('fs').readFileSync({json.dumps(str(live_tab.SCRIPT))}, 'utf8'));\n"
        "const m = window.e2vLive.startMessage;\n"
        "console.log(JSON.stringify([m(48000, { calibration: ' sharp ', min_confidence: 0.4 }),"
        " m(48000, { calibration: '', min_confidence: null }), m(44100)]));\n",
        "utf-8",
    )
    out = subprocess.run([node, str(script)], capture_output=True, text=True, timeout=60, check=True).stdout
    chosen, empty, plain = (StreamOptions.from_message(m) for m in json.loads(out))
    assert (chosen.calibration, chosen.min_confidence, chosen.sample_rate) == ("sharp", 0.4, 48000)
    assert empty.calibration is None and empty.min_confidence is None
    assert plain == StreamOptions(
        sample_rate=44100, encoding="f32le", source_name="microphone_live.wav", embedding=True
    )
