"""The UI's progress relay and the flow's window steps (issue 33: a long file showed no progress)."""

from __future__ import annotations

import re
import threading
import time

import pytest

from emotion2vec_webui.config import load_settings
from emotion2vec_webui.runs.recognize import Recognition, RecognizeOptions
from emotion2vec_webui.ui.progress import relay_progress


def test_steps_from_another_thread_reach_the_bar_on_the_calling_thread():
    caller = threading.get_ident()
    shown: list[tuple[float, str, int]] = []

    def work(step):
        assert threading.get_ident() != caller
        for k in range(1, 6):
            step(k / 5, f"window {k} of 5")
            time.sleep(0.05)
        return "done"

    assert relay_progress(work, lambda f, t: shown.append((f, t, threading.get_ident())), poll_s=0.01) == "done"
    assert {tid for _, _, tid in shown} == {caller}
    assert [t for _, t, _ in shown][-1] == "window 5 of 5" and len(shown) >= 3


def test_the_work_s_error_is_raised_and_a_failing_bar_is_ignored():
    def work(step):
        step(0.5, "half")
        time.sleep(0.05)
        raise ValueError("boom")

    def bar(f, t):
        raise RuntimeError("page closed")

    with pytest.raises(ValueError, match="boom"):
        relay_progress(work, bar, poll_s=0.01)


def test_window_steps_carry_an_eta_from_the_second_window():
    flow = Recognition(load_settings(), RecognizeOptions(), write=False)
    steps: list[tuple[float, str]] = []
    flow.progress = lambda f, s: steps.append((f, s))
    for k in range(1, 5):
        flow.window_started(k, 4)
        time.sleep(0.02)
    assert "left" not in steps[0][1] and "window 1 of 4" in steps[0][1]
    assert all(re.search(r"window \d of 4, about \d+:\d\d left", s) for _, s in steps[1:])
    assert [f for f, _ in steps] == sorted(f for f, _ in steps)
