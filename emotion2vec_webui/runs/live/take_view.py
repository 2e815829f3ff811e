"""What a live take has shown so far, as a face draws it: windows analysed, lag, the growing timeline.

The Live tab's take *is* a stream: the page sends its microphone to
``/api/v1/stream`` and gets the same events as any program
(:class:`runs.live_stream.LiveStream` analyses and saves it). What the page
has received — the ``interval`` messages, the ``behind`` warnings, how much
audio it sent — comes back to the UI once a second as a small report, and
:meth:`LiveProgress.from_report` checks it (the page is a client like any
other: bounded, typed, finite) before the status line and the timeline are
drawn from it. Face-neutral: no Gradio, no HTTP.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from emotion2vec_webui.errors import E2VError
from emotion2vec_webui.labels import EMOTIONS

WINDOW_S = 3.0  # the rolling window each interval classifies (the stream's default window_ms)
TICK_S = 1.0  # an interval every this much audio (the stream's default interval_ms)
MIN_WINDOW_S = 0.5  # no interval before this much audio
LAG_WARN_S = 2.5  # a face says "behind" when the analysed audio ends this far before the audio sent
SOURCE_NAME = "microphone_live.wav"  # result.json audio.source_name of a live recording
MAX_REPORT_CHARS = 2_000_000  # a report of a 10-minute take is ~60 KB
MAX_ERROR_CHARS = 500


def _bad(what: str) -> E2VError:
    return E2VError(
        "bad_request", f"The page's live report is malformed ({what}). / 页面的实时报告格式有误（{what}）。"
    )


def _number(value, what: str, low: float = 0.0, high: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _bad(what)
    if not low <= value <= high:
        raise _bad(what)
    return float(value)


@dataclass
class LiveProgress:
    """A take in progress as the page saw it.

    Attributes:
        seconds: audio the page has sent.
        ticks: [9] scores of each interval received, in time order (EMOTIONS order).
        tick_ends: where each interval's window ends (s).
        skipped: intervals the server skipped while behind (its ``behind`` warnings).
        error: the last problem the page met (shown in the status line).
        max_duration_s: the take's length limit (E2V_MAX_DURATION_S).
    """

    seconds: float = 0.0
    ticks: list[np.ndarray] = field(default_factory=list)
    tick_ends: list[float] = field(default_factory=list)
    skipped: int = 0
    error: str = ""
    max_duration_s: float = 600.0

    @property
    def truncated(self) -> bool:
        """The take reached E2V_MAX_DURATION_S."""
        return self.seconds >= self.max_duration_s

    @property
    def lag_s(self) -> float:
        """How much of the audio sent no interval has covered yet."""
        if self.seconds < max(TICK_S, MIN_WINDOW_S):
            return 0.0
        return max(0.0, self.seconds - (self.tick_ends[-1] if self.tick_ends else 0.0))

    @classmethod
    def from_report(cls, report: dict, max_duration_s: float) -> LiveProgress:
        """Check the page's report: ``{"seconds", "labels": [9 names], "ticks": [[end_s, 9 scores]], "skipped",
        "error"}``.

        Raises:
            E2VError: ``bad_request`` for anything else (too many ticks, out of range, not numbers).
        """
        if not isinstance(report, dict):
            raise _bad("not an object")
        limit = max_duration_s + 60.0
        seconds = _number(report.get("seconds", 0.0), "seconds", 0.0, limit)
        labels = report.get("labels") or list(EMOTIONS)
        if not isinstance(labels, list) or sorted(map(str, labels)) != sorted(EMOTIONS):
            raise _bad("labels")
        order = [labels.index(k) for k in EMOTIONS]
        rows = report.get("ticks") or []
        if not isinstance(rows, list) or len(rows) > int(limit / 0.25) + 1:  # interval_ms is at least 250
            raise _bad("ticks")
        ticks, ends = [], []
        for row in rows:
            if not isinstance(row, list) or len(row) != 1 + len(EMOTIONS):
                raise _bad("a tick")
            end = _number(row[0], "a tick's end", 0.0, limit)
            if ends and end < ends[-1]:
                raise _bad("ticks out of order")
            scores = [_number(row[1 + i], "a score", 0.0, 1.0) for i in order]
            ticks.append(np.array(scores, dtype=np.float64))
            ends.append(end)
        skipped = int(_number(report.get("skipped", 0), "skipped", 0, limit / 0.25))
        error = report.get("error") or ""
        if not isinstance(error, str):
            raise _bad("error")
        return cls(seconds, ticks, ends, skipped, error[:MAX_ERROR_CHARS], max_duration_s)

    def timeline_result(self) -> dict:
        """The intervals as a result.json-like object for the timeline (``ui/timeline.py``).

        One frame per ``TICK_S`` of analysed audio; a second the analysis skipped takes the scores of
        the next analysed window (whose ``WINDOW_S`` covered it).
        """
        from emotion2vec_webui.engine.timeline import segments

        if self.ticks:
            n = max(1, int(np.ceil(self.tick_ends[-1] / TICK_S - 1e-6)))
            grid = (np.arange(n) + 1) * TICK_S
            pick = np.minimum(np.searchsorted(np.array(self.tick_ends), grid - 1e-6), len(self.ticks) - 1)
            scores = np.array(self.ticks)[pick]
        else:
            scores = np.zeros((0, len(EMOTIONS)))
        duration = len(scores) * TICK_S
        return {
            "frames": {"hop_s": TICK_S, "labels": list(EMOTIONS), "scores": scores.tolist()},
            "segments": segments(scores, duration, hop_s=TICK_S, min_segment_s=TICK_S) if len(scores) else [],
            "audio": {"duration_s": duration},
        }
