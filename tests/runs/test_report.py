"""report.html and turns.jsonl on a hand-built conversation: self-contained, every section, numbers, escaping."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import pytest

from emotion2vec_webui.engine.call_summary import arc_at, balance, summary_for_result
from emotion2vec_webui.labels import EMOTIONS_ZH
from emotion2vec_webui.runs.report import SECTIONS, report_html, write_report
from emotion2vec_webui.runs.transcripts import conversation_files, turn_records, turns_jsonl_text
from tests.engine.test_call_summary import call

EVIL = '<script>alert("x")</script>'


class Page(HTMLParser):
    """Every tag with its attributes, every text node, and the text of each element carrying ``data-field``."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.fields: list[tuple[dict, str]] = []
        self._open: list[dict | None] = []
        self.styles: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        self._in_style = tag == "style"
        if tag not in ("meta", "line", "rect", "polyline", "polygon", "br"):
            self._open.append({**a, "_text": ""} if "data-field" in a else None)

    def handle_endtag(self, tag):
        self._in_style = False
        if tag in ("meta", "line", "rect", "polyline", "polygon", "br"):
            return
        top = self._open.pop() if self._open else None
        if top is not None:
            self.fields.append((top, top.pop("_text").strip()))

    def handle_data(self, data):
        self.text.append(data)
        if self._in_style:
            self.styles.append(data)
        for item in self._open:
            if item is not None:
                item["_text"] += data


def conversation(**names) -> dict:
    turns = call()
    for t in turns:
        t["emotion_zh"] = EMOTIONS_ZH[t["emotion"]]
        t["text"] = f"turn {t['index']} {EVIL}" if t["index"] == 3 else f"turn {t['index']}"
    result = {
        "emotion": "neutral", "confidence": 0.61, "granularity": "utterance", "timestamp": "2026-12-06T08:00:00+00:00",
        "request_id": EVIL, "warnings": [], "app_version": "0.1.0",
        "audio": {"source_name": f"{EVIL}.wav", "duration_s": 120.0, "original_channels": 2, "channels": "mix"},
        "model": {"name": "tiny", "hub": "local", "hub_id": "x", "device": "cpu", "dtype": "fp32", "random_weights": True},
        "turns": turns,
        "speakers": [{"id": "left", "label": names.get("left", "left"), "channel": 0},
                     {"id": "right", "label": names.get("right", "right"), "channel": 1}],
    }  # fmt: skip
    result["summary"] = summary_for_result(result)
    return result


def parse(html: str) -> Page:
    page = Page()
    page.feed(html)
    page.close()
    return page


def test_the_report_is_self_contained():
    page = parse(report_html(conversation(left=EVIL, right="Customer")))
    for tag, attrs in page.tags:
        for key in ("src", "href", "xlink:href", "action", "poster", "data"):
            value = (attrs.get(key) or "").strip().lower()
            assert not value or value.startswith("#"), (tag, key, value)  # only links inside the page
        assert tag not in ("script", "iframe", "object", "embed", "link", "img")
    css = "".join(page.styles)
    assert "@import" not in css and "url(" not in css and "http" not in css


def test_every_section_is_there_with_a_bilingual_heading():
    page = parse(report_html(conversation()))
    ids = [a["id"] for tag, a in page.tags if tag == "section"]
    assert ids == list(SECTIONS)
    text = "".join(page.text)
    for heading in ("摘要 / Summary", "情绪曲线 / Emotional arc", "说话人泳道 / Speaker lanes",
                    "转写与情感 / Transcript with emotions", "所用设置 / Settings used"):  # fmt: skip
        assert heading in text
    assert sum(tag == "svg" for tag, _ in page.tags) == 2
    assert "@media print" in "".join(page.styles)


def test_numbers_equal_result_json():
    result = conversation(left="Agent", right="Customer")
    summary = result["summary"]
    page = parse(report_html(result))
    by_speaker = {s["id"]: s for s in summary["speakers"]}
    seen = set()
    for attrs, text in page.fields:
        field, sid = attrs["data-field"], attrs.get("data-speaker")
        if sid is not None:
            s = by_speaker[sid]
            want = s["baseline"]["negativity"] if field == "baseline_negativity" else s[field]
            assert float(text) == pytest.approx(want, abs=0.051 if field == "talk_s" else 0.0006), (field, sid)
            seen.add(field)
        elif field == "call_escalations":
            assert int(text) == summary["escalations"] == 1
        elif field == "customer_mood_change":
            assert float(text) == pytest.approx(summary["comparison"]["customer_mood_change"], abs=0.0006)
        elif field == "confidence":
            assert float(text) == pytest.approx(result["confidence"], abs=0.006)
    assert {"talk_s", "talk_share", "turns", "mean_confidence", "baseline_negativity", "escalations"} <= seen
    confidences = [float(text) for attrs, text in page.fields if attrs["data-field"] == "turn_confidence"]
    assert confidences == pytest.approx([t["confidence"] for t in result["turns"]], abs=0.0006)
    # one escalation marker and one turning-point line in the arc, at the summary's times
    marks = [a for tag, a in page.tags if tag == "polygon"]
    assert [float(a["data-time"]) for a in marks] == [e["time_s"] for e in summary["events"]]
    lines = [a for tag, a in page.tags if tag == "line" and a.get("class") == "turn"]
    assert [float(a["data-time"]) for a in lines] == [p["time_s"] for p in summary["turning_points"]]
    rects = [a for tag, a in page.tags if tag == "rect" and "data-emotion" in a]
    assert [a["data-emotion"] for a in rects] == [t["emotion"] for t in result["turns"]]


def test_user_strings_are_escaped():
    html = report_html(conversation(left=EVIL, right="Cust&omer"))
    assert "<script" not in html.lower()
    assert "&lt;script&gt;" in html and "Cust&amp;omer" in html
    page = parse(html)
    text = "".join(page.text)
    assert EVIL in text  # shown as text: the name, the transcript line, the file name, the request id
    assert text.count(EVIL) >= 4


def test_a_file_without_turns_still_has_every_section():
    result = conversation()
    segments = [{k: t[k] for k in ("start_s", "end_s", "emotion", "confidence", "scores")} for t in result["turns"]]
    single = {**result, "turns": None, "speakers": None, "segments": segments, "summary": None}
    page = parse(report_html(single))
    assert [a["id"] for tag, a in page.tags if tag == "section"] == list(SECTIONS)
    assert sum(tag == "svg" for tag, _ in page.tags) == 2  # computed from the segments
    utterance = {**single, "segments": None}
    page = parse(report_html(utterance))
    assert [a["id"] for tag, a in page.tags if tag == "section"] == list(SECTIONS)
    assert not any(tag == "svg" for tag, _ in page.tags)
    bare = parse(report_html({}))  # a result.json with almost nothing still makes a page
    assert [a["id"] for tag, a in bare.tags if tag == "section"] == list(SECTIONS)


def test_write_report(tmp_path):
    result = conversation()
    path = write_report(tmp_path, result)
    assert path.name == "report.html" and path.read_text("utf-8") == report_html(result)


def test_turns_jsonl_records():
    result = conversation(left="Agent")
    records = [json.loads(line) for line in turns_jsonl_text(result).splitlines()]
    assert records == turn_records(result)
    assert conversation_files(result)["turns.jsonl"] == turns_jsonl_text(result)
    assert len(records) == len(result["turns"])
    for r, t in zip(records, result["turns"], strict=True):
        assert set(r) == {
            "index",
            "speaker",
            "label",
            "start_s",
            "end_s",
            "text",
            "emotion",
            "confidence",
            "balance",
            "arc",
        }
        assert r["label"] == ("Agent" if t["speaker"] == "left" else "right")
        assert (r["start_s"], r["end_s"], r["text"], r["emotion"]) == (
            t["start_s"],
            t["end_s"],
            t["text"],
            t["emotion"],
        )
        assert r["balance"] == pytest.approx(balance(t["scores"]), abs=1e-4)
        assert r["arc"] == arc_at(result["summary"], (t["start_s"] + t["end_s"]) / 2)
    # a run written before the summary existed gets the same arc values
    assert turn_records({**result, "summary": None}) == records
    assert records[3]["text"] == f"turn 3 {EVIL}"  # JSON keeps the text as said; readers escape for their medium


def test_a_valence_heads_arc_is_summarised_in_the_arc_section():
    result = conversation()
    frames = {"hop_s": 0.02, "targets": ["valence"], "values": [[-0.5]] * 3000 + [[0.5]] * 3000}
    result["dimensions"] = {"name": f"av{EVIL}", "frames": frames}
    result["summary"] = summary_for_result(result)
    html = report_html(result)
    assert "<script" not in html.lower()
    line = [text for attrs, text in parse(html).fields if attrs["data-field"] == "dimension_arc"]
    assert len(line) == 1 and "start -0.50" in line[0] and "end 0.50" in line[0] and EVIL in line[0]
