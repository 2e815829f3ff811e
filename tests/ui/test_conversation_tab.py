"""The Conversation tab's handlers without a browser: names saved only into this server's runs, names shown."""

from __future__ import annotations

import json
from types import SimpleNamespace

from emotion2vec_webui.labels import EMOTIONS
from emotion2vec_webui.ui.conversation_tab import conversation_html, run_info_html, save_names


def _result(**extra):
    return {
        "audio": {"duration_s": 75.0}, "model": {},
        "speakers": [{"id": "left", "label": "left", "emotion_share": {"angry": 1.0}, "speaking_share": 1.0,
                      "turns": 1, "dominant_emotion": "angry"}],
        "turns": [{"index": 0, "speaker": "left", "start_s": 1.0, "end_s": 3.0, "emotion": "angry",
                   "emotion_zh": "生气", "confidence": 0.5, "scores": dict.fromkeys(EMOTIONS, 1 / 9)}],
        **extra,
    }  # fmt: skip


def test_save_names_only_touches_a_run_of_this_server(tmp_path):
    outside = tmp_path / "elsewhere" / "outputs_20260101_000000"
    outside.mkdir(parents=True)
    (outside / "result.json").write_text(json.dumps(_result()), "utf-8")
    service = SimpleNamespace(settings=SimpleNamespace(output_dir=tmp_path / "outputs"))
    view, html = save_names(service, str(outside), "left=Agent")
    assert 'data-error-code="not_found"' in html
    assert json.loads((outside / "result.json").read_text("utf-8"))["speakers"][0]["label"] == "left"
    assert 'data-error-code="bad_request"' in save_names(service, None, "left=Agent")[1]  # nothing analysed yet


def _run(tmp_path):
    outputs = tmp_path / "outputs"
    folder = outputs / "outputs_20260101_000000"
    folder.mkdir(parents=True)
    (folder / "result.json").write_text(json.dumps(_result()), "utf-8")
    return SimpleNamespace(settings=SimpleNamespace(output_dir=outputs)), folder


def test_a_refused_rename_keeps_the_view_and_says_why_beside_the_box(tmp_path):
    import gradio as gr

    service, folder = _run(tmp_path)
    before = (folder / "result.json").read_bytes()
    view, note = save_names(service, str(folder), "left=Alice, S2=Bob")  # S2 is not a speaker of this run
    assert type(view) is type(gr.skip())  # the lanes and transcript stay on the page
    assert 'data-error-code="bad_request"' in note and "S2" in note
    assert (folder / "result.json").read_bytes() == before  # nothing written
    view, note = save_names(service, str(folder), "left=Alice")
    assert ">Alice</div>" in view and "Saved" in note and "left=Alice" in note


def test_run_info_names_the_folder_result_json_and_the_ids(tmp_path):
    _, folder = _run(tmp_path)
    html = run_info_html(_result(), folder)
    assert folder.name in html and "result.json" in html and "<code>left</code>" in html
    assert run_info_html(_result(), None).count("result.json") == 0


def test_the_view_shows_saved_names_a_time_axis_and_a_playhead():
    r = _result()
    r["speakers"][0]["label"] = "Agent"
    html = conversation_html(r, "x.wav")
    assert ">Agent</div>" in html and ">left</div>" not in html
    assert html.count("e2v-conv-playhead") >= 2 and 'data-duration="75.0"' in html
    assert "01:00</span>" in html and "00:10</span>" in html  # axis labels at a round step
