"""The Conversation view's tracks, arc, markers, summary table, filter and report link, without a browser.

Hand-made results and summaries (the structure of result.json's ``summary``, docs/conversations.md): the drawing
is checked against hand-computed paths and positions, never against a model's output.
"""

from __future__ import annotations

import re

import numpy as np

from emotion2vec_webui.labels import EMOTIONS
from emotion2vec_webui.ui import conversation_view as cv
from emotion2vec_webui.ui.conversation_tab import conversation_html

CJK = re.compile(r"[\u4e00-\u9fff]")


def _onehot(*classes: int) -> list[list[float]]:
    return [[1.0 if c == k else 0.0 for c in range(len(EMOTIONS))] for k in classes]


def test_a_track_is_the_nine_scores_stacked_in_bins():
    # four frames (angry, angry, disgusted, disgusted) drawn in two bins: angry fills the first, disgusted the second
    svg = cv.track_svg({"scores": _onehot(0, 0, 1, 1)}, share=0.001)
    assert 'viewBox="0 0 1 1000"' in svg
    paths = re.findall(r'<path fill="([^"]+)" d="([^"]+)"/>', svg)
    assert len(paths) == len(EMOTIONS)
    colors = dict(paths)
    assert paths[-1][0] == cv.ui_text.EMOTION_COLORS["angry"]  # painter's order: the bottom class drawn last
    assert colors[cv.ui_text.EMOTION_COLORS["angry"]] == "M0 1000L0 0 1 1000L1 1000Z"  # top edge: 1 then 0
    assert colors[cv.ui_text.EMOTION_COLORS["disgusted"]] == "M0 1000L0 0 1 0L1 1000Z"  # angry+disgusted: 1, 1
    assert cv.track_svg({"scores": []}, 0.5) == "" and cv.track_svg({}, 0.5) == ""


def test_bins_keep_each_row_a_distribution_and_follow_the_turns_width():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(9), size=503)
    binned = cv._bins(p, 37)
    assert binned.shape == (37, 9) and np.allclose(binned.sum(axis=1), 1)
    assert np.allclose(binned.mean(axis=0), p.mean(axis=0), atol=0.01)
    wide = cv.track_svg({"scores": p.tolist()}, share=0.2)  # a fifth of the call: a fifth of the lane's bins
    assert f'viewBox="0 0 {int(0.2 * cv.TRACK_BINS) - 1} 1000"' in wide
    assert 'viewBox="0 0 502 1000"' in cv.track_svg({"scores": p.tolist()}, share=1.0)  # never more bins than frames


SUMMARY = {
    "arc": {"step_s": 1.0, "window_s": 15.0, "values": [0.1, 0.2, -0.4, -0.5, 0.0, 0.3]},
    "turning_points": [{"time_s": 2.0, "before": 0.15, "after": -0.3, "change": -0.45, "direction": "down"}],
    "events": [
        {"type": "escalation", "speaker": "right", "time_s": 2.5, "index": 1, "negativity": 0.8, "baseline": 0.2},
        {"type": "de-escalation", "speaker": "right", "time_s": 4.0, "index": 2, "negativity": 0.2, "baseline": 0.2},
    ],
    "speakers": [
        {"id": "left", "label": "left", "talk_s": 1.5, "talk_share": 0.375, "turns": 1, "mean_confidence": 0.61,
         "emotion_share": {**dict.fromkeys(EMOTIONS, 0.0), "happy": 1.0}, "mean_balance": 0.25,
         "baseline": {"negativity": 0.1, "balance": 0.2, "speech_s": 1.5, "until_s": 1.5}, "closing_balance": 0.25,
         "escalations": 0, "intense_turns": [{"index": 0, "start_s": 0.5, "end_s": 2.0, "emotion": "happy"}]},
        {"id": "right", "label": "right", "talk_s": 2.5, "talk_share": 0.625, "turns": 2, "mean_confidence": 0.5,
         "emotion_share": {**dict.fromkeys(EMOTIONS, 0.0), "angry": 0.6, "neutral": 0.4}, "mean_balance": -0.3,
         "baseline": {"negativity": 0.2, "balance": -0.1, "speech_s": 2.5, "until_s": 5.0}, "closing_balance": -0.1,
         "escalations": 1, "intense_turns": [{"index": 1, "start_s": 2.5, "end_s": 4.0, "emotion": "angry"}]},
    ],
}  # fmt: skip


def _result(frames: bool = True, summary: dict | None = SUMMARY) -> dict:
    turns = []
    for i, (sp, s, e, k) in enumerate((("left", 0.5, 2.0, 3), ("right", 2.5, 4.0, 0), ("right", 4.0, 5.0, 4))):
        turn = {"index": i, "speaker": sp, "start_s": s, "end_s": e, "emotion": EMOTIONS[k], "confidence": 0.5,
                "scores": dict.fromkeys(EMOTIONS, 1 / 9)}  # fmt: skip
        if frames:
            turn["frames"] = {"hop_s": 0.02, "smoothing_s": 0.5, "scores": _onehot(*[k] * int((e - s) / 0.02))}
        turns.append(turn)
    speakers = [{"id": sp, "label": sp, "emotion_share": {"happy": 1.0}, "speaking_share": 0.5, "turns": 1,
                 "dominant_emotion": "happy"} for sp in ("left", "right")]  # fmt: skip
    out = {"audio": {"duration_s": 8.0}, "model": {}, "speakers": speakers, "turns": turns}
    if summary is not None:
        out["summary"] = summary
    return out


def test_markers_sit_at_their_times_and_carry_them_for_the_click():
    row, listing = cv.arc_html(SUMMARY, 8.0, lambda sid: sid)
    markers = re.findall(r'<button type="button" class="e2v-conv-marker[^"]*" ([^>]*)>', row)
    assert len(markers) == 3
    starts = [float(re.search(r'data-start="([^"]+)"', m).group(1)) for m in markers]
    lefts = [float(re.search(r"left:([0-9.]+)%", m).group(1)) for m in markers]
    assert starts == [2.0, 2.5, 4.0]  # the turning point, the escalation, the de-escalation, in time order
    assert lefts == [25.0, 31.25, 50.0]  # 100 * t / duration
    assert 'data-index="1"' in markers[1] and 'data-speaker="right"' in markers[1]
    assert "data-speaker" not in markers[0]  # a turning point belongs to the call, not to a speaker: never filtered
    assert len(re.findall(r'class="e2v-conv-moment ', listing)) == 3
    assert "±0.50" in row  # the strip's range: the curve's largest |value|
    assert cv.arc_html({"arc": {"values": []}}, 8.0, str) == ("", "") and cv.arc_html(None, 8.0, str) == ("", "")


def test_the_view_has_tracks_arc_table_filter_and_report():
    html = conversation_html(_result(), "x.wav", None, {"result.json": "r.json", "report.html": "rep.html"})
    assert len(re.findall(r'class="e2v-conv-block e2v-conv-turn e2v-conv-has-track"', html)) == 3
    assert html.count('<svg class="e2v-conv-frames"') == 3
    assert 'id="conversation_arc"' in html and 'id="conversation_moments"' in html
    table = re.search(r'<table class="e2v-conv-table".*?</table>', html).group(0)
    rows = re.findall(r'<tr data-speaker="([^"]+)">(.*?)</tr>', table)
    assert [r[0] for r in rows] == ["left", "right"]
    assert "2.5 s · 62%" in rows[1][1] and "<td>-0.30</td>" in rows[1][1] and "<td>1</td>" in rows[1][1]
    assert 'data-start="2.5"' in rows[1][1]  # the most intense turn seeks
    assert 'id="conversation_comparison"' not in html  # no agent/customer names: no comparison
    assert 'class="e2v-conv-lane e2v-conv-summary"' not in html  # the table replaces the shares-only rows
    assert re.findall(r'<option value="([^"]*)">', html) == ["", "left", "right"]
    assert 'id="conversation_report" href="rep.html"' in html and ">report.html</a>" not in html
    # every tooltip and aria-label is bilingual
    for attr in re.findall(r'(?:title|aria-label)="([^"]+)"', html):
        assert CJK.search(attr) and re.search(r"[A-Za-z]{3}", attr), attr


def test_without_frames_or_summary_the_view_is_the_plain_one():
    html = conversation_html(_result(frames=False, summary=None), "x.wav")
    assert "e2v-conv-turn e2v-conv-has-track" not in html and 'class="e2v-conv-lanes e2v-conv-tracks"' not in html
    assert 'id="conversation_arc"' not in html and "<table" not in html and 'id="conversation_report"' not in html
    assert html.count('class="e2v-conv-lane e2v-conv-summary"') == 2  # the shares per speaker, as before


def test_an_agent_customer_comparison_shows_the_customers_mood_change():
    summary = {**SUMMARY, "comparison": {"agent": "left", "customer": "right", "customer_mood_change": -0.125}}
    html = conversation_html(_result(summary=summary), "x.wav", {"left": "Agent", "right": "客户"})
    note = re.search(r'<div class="e2v-conf-label" id="conversation_comparison">(.*?)</div>', html).group(1)
    assert note.startswith("Agent ↔ 客户") and "<b>-0.12</b>" in note


def test_names_reach_the_filter_table_and_markers_escaped():
    r = _result()
    html = conversation_html(r, "x.wav", {"right": "<Customer>"})
    assert '<option value="right">&lt;Customer&gt;</option>' in html
    assert "<Customer>" not in html
    assert html.count("&lt;Customer&gt;") >= 4  # lane, filter, table row, moment chips …
