"""The Live tab's plain-Python parts: chunk files read whole, a handler that never waits, analysis that skips."""

from __future__ import annotations

import struct
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.labels import EMOTIONS
from emotion2vec_webui.ui import live_tab


def _wav(path, samples: np.ndarray, rate: int = 48000, declared: int | None = None):
    """A 16-bit mono WAV whose header may declare fewer data bytes than follow (as the page's glued chunks do)."""
    body = samples.astype("<i2").tobytes()
    size = len(body) if declared is None else declared
    fmt = struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
    path.write_bytes(
        b"RIFF" + struct.pack("<I", 36 + size) + b"WAVEfmt " + fmt + b"data" + struct.pack("<I", size) + body
    )
    return path


def test_a_glued_chunk_is_read_to_the_end_whatever_its_header_says(tmp_path):
    samples = (np.arange(48000) % 200 - 100).astype(np.int16)
    rate, data = live_tab.read_stream_chunk(_wav(tmp_path / "a.wav", samples, declared=9600))
    assert rate == 48000 and np.array_equal(data, samples)
    with pytest.raises(E2VError) as err:
        (tmp_path / "b.wav").write_bytes(b"not a wav at all")
        live_tab.read_stream_chunk(tmp_path / "b.wav")
    assert err.value.code == "audio_undecodable"


class SlowService:
    """A stand-in service whose every inference takes ``delay`` seconds (a loaded CPU)."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.settings = SimpleNamespace(max_duration_s=600.0, min_duration_s=0.1)
        self.calls = 0
        self.lock = threading.Lock()

    def call(self, fn):
        with self.lock:  # one inference at a time, like the service's worker
            self.calls += 1
            time.sleep(self.delay)
            scores = dict.fromkeys(EMOTIONS, 0.0) | {"happy": 1.0}
            return SimpleNamespace(scores=scores)

    def live_window(self, window, client=""):  # the live analysis's way in (Service.live_window)
        return self.call(None)


def test_chunks_never_wait_for_a_slow_analysis_which_skips_windows_then_catches_up(tmp_path):
    service = SlowService(delay=1.5)
    session, statuses, worst = None, [], 0.0
    rate, chunk_s = 48000, 0.1
    rng = np.random.default_rng(0)
    sent = []
    for i in range(80):  # 8 s of audio, ten chunks a second, twice as fast as real time
        data = (rng.standard_normal(int(rate * chunk_s)) * 3000).astype(np.int16)
        sent.append(data)
        path = _wav(tmp_path / f"c{i}.wav", data)
        t0 = time.perf_counter()
        session, html = live_tab.on_chunk(service, session, str(path))
        session, _ = live_tab.on_chunk(service, session, str(path))  # the page sent it twice: kept once
        worst = max(worst, time.perf_counter() - t0)
        statuses.append(html)
        time.sleep(chunk_s / 2)
    assert worst < 0.5, f"a chunk waited {worst:.2f} s (the analysis takes {service.delay} s)"
    assert any("catching up" in s and "分析落后" in s for s in statuses), statuses[-1]
    deadline = time.monotonic() + 10
    while session.lag_s > live_tab.LAG_WARN_S and time.monotonic() < deadline:
        time.sleep(0.1)
    caught_up = live_tab.status_html(session)
    assert "caught up" in caught_up and "跟上" in caught_up and session.skipped > 0
    assert service.calls < 8  # windows were skipped, not queued
    # Every received sample is kept, in order.
    raw = np.concatenate(session.chunks)
    assert np.array_equal(raw, np.concatenate(sent).astype(np.float32) / 32768.0)
    timeline = session.timeline_result()
    assert len(timeline["frames"]["scores"]) == int(np.ceil(session.analysed_s))
    session.analyzer.stop()
    assert not session.analyzer.is_alive()


def test_the_view_draws_only_when_a_new_window_was_analysed():
    session = live_tab.LiveSession()
    assert live_tab.on_view(session) is None
    session.add(16000, np.zeros(16000 * 2, np.float32))
    session.record_tick(dict.fromkeys(EMOTIONS, 1 / 9), 2.0)
    assert live_tab.on_view(session) is not None
    assert live_tab.on_view(session) is None
