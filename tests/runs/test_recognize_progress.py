"""Real progress for long audio: "window k of n" reaches the progress callback from the one recognise flow."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest

from emotion2vec_webui.audio.signals import noise, write_audio
from emotion2vec_webui.engine.longform import pause_profile, plan_windows
from emotion2vec_webui.runs.recognize import Recognition, RecognizeOptions

WINDOW_S = 2.0  # a short window so a 7 s clip needs several
# from the second window on, each step carries an ETA (issue 33)
STEP = re.compile(r"^分析第 (\d+)/(\d+) 个窗口(?:，约剩 \d+:\d\d)? / window (\d+) of (\d+)(?:, about \d+:\d\d left)?$")


@pytest.fixture
def long_clip(tmp_path):
    return write_audio(tmp_path / "long.wav", noise(7.0, 16000, seed=3), 16000, "wav")


def test_engine_reports_each_window(engine):
    wave = noise(7.0, 16000, seed=3)[:, 0].astype(np.float32)
    seen: list[tuple[int, int]] = []
    engine.recognize(wave, "utterance", False, window_s=WINDOW_S, on_window=lambda k, n: seen.append((k, n)))
    n = len(plan_windows(len(wave), WINDOW_S, quietness=pause_profile(wave)))
    assert n >= 3 and seen == [(k, n) for k in range(1, n + 1)]
    short: list[tuple[int, int]] = []
    engine.recognize(wave[:16000], "utterance", False, window_s=WINDOW_S, on_window=lambda k, n: short.append((k, n)))
    assert short == []  # one pass: no windows to report


@pytest.mark.parametrize("granularity", ["utterance", "frame"])
def test_flow_progress_says_window_k_of_n(engine, settings, long_clip, granularity):
    settings = dataclasses.replace(settings, window_s=WINDOW_S)
    flow = Recognition(settings, RecognizeOptions(granularity=granularity, extract_embedding=False))
    steps: list[tuple[float, str]] = []
    flow.progress = lambda fraction, what: steps.append((fraction, what))
    outcome = flow.run(long_clip, lambda fn: fn(engine), "long.wav")

    windows = [STEP.match(what) for _, what in steps if STEP.match(what)]
    assert windows, steps
    n = int(windows[0].group(2))
    assert n >= 3
    assert [(int(m.group(1)), int(m.group(2))) for m in windows] == [(k, n) for k in range(1, n + 1)]
    assert all(m.group(1) == m.group(3) and m.group(2) == m.group(4) for m in windows)  # both languages agree
    fractions = [f for f, _ in steps]
    assert fractions == sorted(fractions) and 0 < fractions[0] and fractions[-1] < 1  # one bar, only forward
    assert steps[-1][1].endswith("writing the run folder")
    assert f"long audio: analysed in {n} windows" in outcome.log_text


def test_ui_handler_passes_window_progress_to_the_page(engine, settings, long_clip):
    """The Recognize tab's handler (what its gr.Progress is fed) hears every window too."""
    from emotion2vec_webui.runs.inference.service import Service
    from emotion2vec_webui.ui import handlers

    service = Service(dataclasses.replace(settings, window_s=WINDOW_S), engine)
    service.start()
    try:
        steps: list[str] = []
        view = handlers.recognize(
            service, str(long_clip), "utterance", False, progress=lambda fraction, what: steps.append(what)
        )
    finally:
        service.stop()
    assert view.error_code is None, view.card_html
    assert any(STEP.match(what) for what in steps) and "window" in view.log_text
