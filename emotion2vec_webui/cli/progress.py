"""``recognize``'s progress on a long file: ``window k/n … ETA`` on stderr (issue 33).

The recognise flow reports each window of a long recording as it starts
(:meth:`Recognition.window_started`, with the seconds left at the pace so
far); this prints it. On a terminal it is one line redrawn in place (``\\r``
and erase-to-end), ended when the file is done; anywhere else (a pipe, a log
file, CI) one plain line per window, so nothing is lost to carriage returns.
A short file, analysed in one pass, prints nothing. ``--quiet`` turns it off.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:  # the CLI's --help imports this module; the flow (numpy, the engine) loads with the run
    from emotion2vec_webui.runs.recognize import Recognition


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "…"
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60}:{seconds % 60:02d}"


class WindowProgress:
    """Shows ``flow``'s window progress for the file ``name`` on ``stream`` (default stderr).

    Use as a context manager around the run: it hooks ``flow.progress`` and, on a terminal, ends its line.
    """

    def __init__(self, flow: Recognition, name: str, stream: TextIO | None = None) -> None:
        self.flow, self.name = flow, name
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.shown = 0  # the last window printed
        self.open_line = False  # a terminal line still to end

    def __enter__(self) -> WindowProgress:
        self.flow.progress = self.report
        return self

    def __exit__(self, *exc) -> None:
        self.flow.progress = None
        if self.open_line:
            self.stream.write("\n")
            self.stream.flush()

    def report(self, fraction: float, step: str) -> None:
        """The flow's ``progress`` callback: prints when a new window starts."""
        k, n = self.flow.window, self.flow.windows
        if not k or k == self.shown:
            return
        self.shown = k
        eta = _clock(self.flow.eta_s)
        line = f"{self.name}: window {k}/{n} ({fraction:.0%}), ETA {eta} / 第 {k}/{n} 个窗口，约剩 {eta}"
        if self.tty:
            self.stream.write(f"\r{line}\x1b[K")
            self.open_line = True
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
