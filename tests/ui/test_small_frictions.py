"""Issue 33's smaller frictions that Python decides: what the controls say, bilingual labels, the System tab's figures."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from emotion2vec_webui.ui import gradio_strings

CJK = re.compile(r"[\u3400-\u9fff]")


def _gradio_frontend_js() -> str:
    import gradio

    assets = Path(gradio.__file__).resolve().parent / "templates" / "frontend" / "assets"
    return "".join(p.read_text("utf-8", errors="replace") for p in assets.glob("*.js"))


# -- Recognize ------------------------------------------------------------------------------------


def test_segments_choice_says_what_it_does_at_each_granularity():
    from emotion2vec_webui.ui.app import segmentation_choices

    utterance, frame = dict(segmentation_choices("utterance")), dict(segmentation_choices("frame"))
    assert set(utterance.values()) == set(frame.values()) == {"frames", "vad"}  # the values the flow takes
    whole = next(label for label, value in utterance.items() if value == "frames")
    runs = next(label for label, value in frame.items() if value == "frames")
    # At utterance granularity "frames" gives one result for the whole clip: it must not read "Frames".
    assert "Frames" not in whole and "whole clip" in whole and CJK.search(whole)
    assert "frame" in runs and CJK.search(runs)
    assert all(CJK.search(label) and re.search("[A-Za-z]{3}", label) for label in [*utterance, *frame])


def test_example_chips_are_bilingual():
    from emotion2vec_webui.ui.examples.make_examples import CLIPS, example_label

    for name in CLIPS:
        label = example_label(Path(name))
        assert CJK.search(label) and re.search(r"[A-Za-z]{4}", label), label
        assert label != Path(name).stem.replace("_", " ")  # "en excited" before


# -- Gradio's own aria-labels and tooltips ----------------------------------------------------------


def test_gradio_attribute_labels_are_bilingual_and_are_gradios_own():
    issue = ["Drop an audio file here to upload", "Upload file", "Record audio", "Select input device",
             "Table actions", "Copy table data", "Fullscreen", "Empty value"]  # fmt: skip
    by_key = {en for en, _ in gradio_strings.GRADIO_STRINGS.values()}
    table = gradio_strings.attribute_translations()
    for text in issue:
        assert text in by_key or text in table, text
    assert gradio_strings.GRADIO_STRINGS["audio.drop_to_upload"][0] == "Drop an audio file here to upload"
    for en, both in table.items():
        assert both == f"{gradio_strings.GRADIO_ATTRIBUTES[en]} / {en}" and CJK.search(both)
    # Each English text is one the installed Gradio writes (a Gradio upgrade that renames one fails here).
    js = _gradio_frontend_js()
    missing = [en for en in table if f'"{en}"' not in js and f"`{en}`" not in js]
    assert not missing, missing
    for pattern, _ in gradio_strings.GRADIO_ATTRIBUTE_PATTERNS:
        assert pattern.split(" (")[0].lstrip("^") in js, pattern
    # the status tracker's literals: "processing |" and "queue: ${position}/${size} |"
    assert "`processing |`" in js and "`queue: ${" in js
    for pattern, zh in gradio_strings.GRADIO_TEXT_PATTERNS:
        assert re.match(pattern.replace("$", r"\Z"), "processing |" if "processing" in pattern else "queue: 1/2 |")
        assert CJK.search(zh) and zh.count("$") == pattern.count("(")


def test_head_script_carries_every_translation():
    html = gradio_strings.head_html()
    assert html.startswith("<script>") and html.rstrip().endswith("</script>") and html.count("</script>") == 1
    for both in gradio_strings.attribute_translations().values():
        assert both in html
    assert '"aria-label"' in html and '"title"' in html


def test_the_page_head_loads_the_attribute_script(settings):
    from emotion2vec_webui.ui.app import mount_kwargs

    head = mount_kwargs(settings)["head"]
    assert "e2vAttrStrings" in head and "timeline.js" in head


def test_train_report_table_header_is_bilingual():
    from emotion2vec_webui.ui.train_tab import HEADS_HEADERS, report_html

    per_class = {"calm": {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 4}}
    report = {
        "name": "h", "n": 8, "labels": ["calm", "angry"], "classifier": "logreg", "folds": 2,
        "grouped_by_speaker": False, "features": {"extracted": 8, "cached": 0, "seconds": 1.0},
        "cv": {"accuracy": 0.5, "ua": 0.5, "f1_macro": 0.5, "f1_weighted": 0.5, "per_class": per_class},
    }  # fmt: skip
    html = report_html(SimpleNamespace(error=None, report=report))
    header = re.findall(r"<th>(.*?)</th>", html)
    assert len(header) == 5 and all(CJK.search(h) for h in header), header
    assert all(CJK.search(h) for h in HEADS_HEADERS), HEADS_HEADERS


# -- System -------------------------------------------------------------------------------------

_FIRST_READING = """
import threading, time
from emotion2vec_webui.runs.inference import status
class Service:  # what resources() reads of a service
    def __init__(self):
        self.observers, self.queue_depth = [], 0
        self.settings = type("S", (), {"max_queue": 4})()

spinning = True
def spin():
    while spinning:
        pass

threading.Thread(target=spin, daemon=True).start()
time.sleep(0.3)
snapshot = {}
# Gradio runs the System tab's refresh on a pool thread: the reading comes from a thread that never read before.
reader = threading.Thread(target=lambda: snapshot.update(status.resources(Service())))
reader.start()
reader.join()
spinning = False
print(snapshot["system_cpu_percent"], snapshot["cpu_percent"])
"""


def test_first_cpu_reading_is_not_zero_on_a_busy_process():
    """psutil's cpu_percent(None) is 0.0 on a thread's first call: the System tab showed 0 % under a load above 5."""
    out = subprocess.run([sys.executable, "-c", _FIRST_READING], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    machine, process = map(float, out.stdout.split())
    assert machine > 0 and process > 20, (machine, process)  # one thread spinning: about 100 % of a core


def test_cpu_meter_readings_cover_the_time_between_them():
    from emotion2vec_webui.runs.inference.status import CpuMeter

    meter = CpuMeter()
    meter.prime()
    spinning = threading.Event()
    spinning.set()
    thread = threading.Thread(target=lambda: [None for _ in iter(spinning.is_set, False)], daemon=True)
    thread.start()
    try:
        time.sleep(0.4)
        machine, process = meter.read()
        assert 0 < machine <= 100 and process > 20
        assert meter.read() == (machine, process)  # at once again: the same figures, never a 0 from no time
    finally:
        spinning.clear()
        thread.join()


class _Service:
    """What the System tab reads of a service: its queue, its settings, and what the worker runs since when."""

    def __init__(self, settings) -> None:
        self.settings, self.observers, self.queue_depth = settings, [], 0
        self.busy_since: float | None = None  # Service.busy_since: when the inference worker took its job
        self.started_at = time.time()


def test_system_tab_shows_the_job_that_runs_not_only_the_queue(settings):
    """A 10-minute file is no longer in the queue while the model works on it: the tab said "0 / 32"."""
    from emotion2vec_webui.runs.inference import status
    from emotion2vec_webui.ui import system_tab

    service = _Service(settings)
    idle = status.resources(service)
    assert idle["running_s"] is None
    assert "空闲 / idle" in system_tab.resources_html(service)
    service.busy_since = time.time() - 95  # the worker took a long file 95 s ago; nothing waits behind it
    busy = status.resources(service)
    assert busy["running_s"] == pytest.approx(95, abs=5) and busy["queue_depth"] == 0
    html = system_tab.resources_html(service)
    assert "running for 0h 1m 3" in html and "运行中" in html and f"0 / {settings.max_queue}" in html


def test_load_average_row():
    from emotion2vec_webui.ui.system_tab import resource_rows

    snapshot = {
        "cpu_percent": 12.0, "system_cpu_percent": 55.0, "load_average": (5.25, 3.9, 2.0), "cpu_count": 2,
        "rss_bytes": 1 << 20, "gpus": [], "running_s": 95.0, "queue_depth": 1, "max_queue": 32,
        "served": 3, "recent": 3, "p50_s": 0.5, "p95_s": 0.9,
    }  # fmt: skip
    values = [value for _, value in resource_rows(snapshot, 10.0)]
    assert "5.25 / 3.90 / 2.00 · 2 CPU" in values and "1 / 32" in values
    assert any("running for 0h 1m 35s" in v for v in values)


@pytest.mark.parametrize("value", ["utterance", "frame"])
def test_history_granularity_is_bilingual(value):
    from emotion2vec_webui.ui.handlers import _granularity_name

    name = _granularity_name(value)
    assert name.endswith(f" / {value}") and CJK.search(name)
