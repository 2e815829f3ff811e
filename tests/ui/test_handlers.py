"""The web UI's handlers, HTML and charts with the tiny random-weight model (no browser).

Random weights: assert structure and agreement between views, never a particular emotion.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import numpy as np
import pytest

from emotion2vec_webui.labels import EMOTIONS
from emotion2vec_webui.runs.inference.service import Service
from emotion2vec_webui.ui import app as ui
from emotion2vec_webui.ui import handlers as ui_handlers
from emotion2vec_webui.ui import text as ui_text


@pytest.fixture
def service(settings, engine):
    svc = Service(settings, engine=engine)
    svc.start()
    yield svc
    svc.stop()


def _rows(html: str) -> list[str]:
    return re.findall(r'class="e2v-row[^"]*" data-emotion="(\w+)"', html)


def test_frame_run_shows_card_timeline_segments_and_four_files(service, speech_wav):
    view = ui_handlers.recognize(service, str(speech_wav), "frame", True)
    assert view.error_code is None, view.card_html
    result = view.result
    assert sorted(_rows(view.card_html)) == sorted(EMOTIONS)  # all nine scores shown
    assert f'data-emotion="{result["emotion"]}"' in view.card_html
    assert ui_text.percent(result["confidence"]) in view.card_html
    assert [Path(f).name for f in view.files] == ["result.json", "processed_audio.wav", "embedding.npy", "frames.csv"]
    root = service.settings.output_dir.resolve()
    assert all(Path(f).resolve().parent == root / view.run_id for f in view.files)
    assert view.is_frame and view.timeline_figure() is not None
    segments = view.segments_html()
    assert segments.count("<tr>") == len(result["segments"]) + 1  # header row + one per segment
    assert "inference" in view.log_text and view.run_id in view.run_label()


def test_utterance_run_without_embedding_has_two_files_and_no_timeline(service, tone_wav):
    view = ui_handlers.recognize(service, str(tone_wav), "utterance", False)
    assert view.error_code is None, view.card_html
    assert [Path(f).name for f in view.files] == ["result.json", "processed_audio.wav"]
    assert not view.is_frame and view.timeline_figure() is None and view.segments_html() == ""


def test_the_progress_bar_hears_the_real_steps_in_order(service, tone_wav):
    steps: list[tuple[float, str]] = []
    view = ui_handlers.recognize(service, str(tone_wav), "utterance", False, progress=lambda f, s: steps.append((f, s)))
    assert view.error_code is None, view.card_html
    assert [f for f, _ in steps] == sorted(f for f, _ in steps) and len(steps) == 2
    assert "decoded" in steps[0][1] and "已解码" in steps[0][1]
    assert "writing" in steps[1][1] and "写入" in steps[1][1]


def test_error_details_get_a_chinese_line_unless_they_have_one():
    html = ui_text.error_card_html("audio_too_short", "The audio is 0.05 s long.")
    assert "音频太短" in html and "0.05 s" in html
    html = ui_text.error_card_html("bad_request", "请先上传。Upload first.")
    assert "请求参数无效" not in html


def test_vad_run_shows_speech_segments_with_gaps(service, speech_wav):
    view = ui_handlers.recognize(service, str(speech_wav), "utterance", False, "vad")
    assert view.error_code is None, view.card_html
    segments = view.result["segments"]
    assert segments and all(seg["source"] == "vad" for seg in segments)
    assert view.has_segments and not view.is_frame and view.timeline_figure() is None
    html = view.segments_html()
    assert "Speech segments (VAD)" in html and html.count("<tr>") == len(segments) + 1
    for seg in segments:
        assert f"{seg['start_s']:.2f} – {seg['end_s']:.2f} s" in html
    bad = ui_handlers.recognize(service, str(speech_wav), "utterance", False, "words")
    assert bad.error_code == "bad_request" and "segmentation" in bad.card_html


@pytest.mark.parametrize(
    "content, granularity, code",
    [
        (b"this is not audio at all " * 40, "utterance", "audio_undecodable"),
        (None, "utterance", "bad_request"),
        (b"", "sideways", "bad_request"),
    ],
)
def test_failures_become_readable_error_cards(service, tmp_path, content, granularity, code):
    path = None
    if content is not None:
        path = tmp_path / "broken.wav"
        path.write_bytes(content)
    view = ui_handlers.recognize(service, str(path) if path else None, granularity, True)
    assert view.error_code == code
    assert f'data-error-code="{code}"' in view.card_html and "Traceback" not in view.card_html
    assert view.files == () and view.run_id is None
    assert not list(service.settings.output_dir.glob("outputs_*"))  # nothing written


def test_user_strings_are_escaped(service, tone_wav, tmp_path):
    evil = tmp_path / "<img src=x onerror=alert(1)>.wav"
    evil.write_bytes(tone_wav.read_bytes())
    view = ui_handlers.recognize(service, str(evil), "utterance", False)
    assert "<img src=x" not in view.card_html and "&lt;img src=x" in view.card_html


def test_model_loading_and_unavailable_states(settings, tone_wav):
    loading = Service(settings)  # never started: stays "loading"
    html, done = ui_handlers.status_banner(loading)
    assert 'data-state="loading"' in html and not done
    view = ui_handlers.recognize(loading, str(tone_wav), "utterance", True)
    assert view.error_code == "model_unavailable"
    # While loading: say so, with the time so far, and ask to retry; no "set E2V_MODEL … restart" advice.
    assert 'data-state="loading"' in view.card_html and "E2V_MODEL" not in view.card_html
    assert "still loading" in view.card_html and "加载中" in view.card_html and "again" in view.card_html
    missing = Service(dataclasses.replace(settings, model=str(settings.output_dir / "no-such-model")))
    missing.start()
    st = missing.wait_ready(60)
    html, done = ui_handlers.status_banner(missing)
    assert st.state == "unavailable" and done
    assert 'data-state="unavailable"' in html and "E2V_MODEL" in html


def test_ready_banner_warns_about_random_weights(service):
    html, done = ui_handlers.status_banner(service)
    assert done and 'data-state="ready"' in html
    assert 'data-state="random_weights"' in html  # the tiny test model has random weights


def test_history_lists_newest_first_and_reopens_the_same_view(service, tone_wav, speech_wav):
    first = ui_handlers.recognize(service, str(tone_wav), "utterance", True)
    second = ui_handlers.recognize(service, str(speech_wav), "frame", False)
    root = service.settings.output_dir
    rows = ui_handlers.history_rows(root)
    assert [r[0] for r in rows] == [second.run_id, first.run_id]
    assert rows[0][2] == "speech.wav" and rows[0][5] == "逐帧 / frame" and rows[1][5] == "整句 / utterance"
    again = ui_handlers.view_run(root, second.run_id)  # as after a restart: read from disk
    assert again.card_html == second.card_html and again.files == second.files
    assert again.segments_html() == second.segments_html()
    assert second.log_text.startswith(again.log_text)  # run.log is written before the final "wrote …" line


@pytest.mark.parametrize("run_id", ["../outputs", "outputs_20260101_000000", "", "/etc/passwd"])
def test_history_refuses_unknown_or_escaping_run_ids(service, run_id):
    view = ui_handlers.view_run(service.settings.output_dir, run_id)
    assert view.error_code == "not_found" and view.files == ()


def test_charts_draw_from_result_json():
    from emotion2vec_webui.ui.charts import timeline_figure

    frames = np.random.default_rng(0).dirichlet(np.ones(9), size=3000)
    result = {
        "audio": {"duration_s": 60.0},
        "frames": {"hop_s": 0.02, "labels": list(EMOTIONS), "scores": frames.tolist()},
        "segments": [
            {"start_s": 0.0, "end_s": 30.0, "emotion": "happy", "confidence": 0.5},
            {"start_s": 30.0, "end_s": 60.0, "emotion": "sad", "confidence": 0.4},
        ],
    }
    fig = timeline_figure(result)
    assert fig is not None and len(fig.axes) == 2
    assert timeline_figure({"frames": None}) is None


def test_build_ui_and_mount_settings(service, settings, monkeypatch):
    monkeypatch.setenv("GRADIO_TEMP_DIR", "")  # unset for gradio_temp_dir, and restored after the test
    demo = ui.build_ui(service)
    ids = {getattr(b, "elem_id", None) for b in demo.blocks.values()}
    assert {"audio_in", "granularity", "extract_embedding", "run_button", "result_card"} <= ids
    assert Path(os.environ["GRADIO_TEMP_DIR"]) == settings.output_dir.resolve() / ".gradio-tmp"
    assert Path(os.environ["GRADIO_TEMP_DIR"]).is_dir()
    kwargs = ui.mount_kwargs(settings)
    assert kwargs["max_file_size"] == settings.max_upload_bytes
    assert kwargs["allowed_paths"] == [str(settings.output_dir.resolve())]
    assert "auth" not in kwargs
    with_token = ui.mount_kwargs(dataclasses.replace(settings, api_token="tok"))
    assert with_token["auth"]("anyone", "tok") and not with_token["auth"]("anyone", "nope")


def test_example_clips_are_small_and_decode():
    from emotion2vec_webui.audio.decode import decode_audio
    from emotion2vec_webui.ui.examples.make_examples import CLIPS, example_paths

    paths = example_paths()
    assert len(paths) == len(CLIPS)
    assert sum(p.stat().st_size for p in paths) < 300 * 1024
    for p in paths:
        assert decode_audio(p).duration_s > 1.0


def test_mounted_ui_queue_does_not_poll_at_1_khz(service, settings, monkeypatch):
    """Gradio's idle queue polled every 1 ms, taking CPU from inference; the mounted UI's polls every 20 ms."""
    from emotion2vec_webui import app as server

    monkeypatch.setenv("GRADIO_TEMP_DIR", "")
    app = server.create_app(settings, service)
    mounted = [route.app.blocks for route in app.routes if hasattr(getattr(route, "app", None), "blocks")]
    assert len(mounted) == 1
    queue = mounted[0]._queue
    assert queue.sleep_when_free >= server.QUEUE_POLL_S >= 0.01
    assert queue.progress_update_sleep_when_free >= server.PROGRESS_POLL_S
    assert ui.build_ui(service)._queue.sleep_when_free < 0.01  # Gradio's own default: what the fix is for
