"""What the CLI prints while it works (issue 33): train-head says each step once; batch's bar counts every clip;
recognize shows a long file's windows with an ETA."""

from __future__ import annotations

import re

import pytest

from emotion2vec_webui.audio.signals import tone, write_audio
from emotion2vec_webui.cli.main import main
from tests.head_data import make_set


def test_train_head_prints_each_step_once(tiny_model_dir, tmp_path, capsys):
    data = make_set(tmp_path / "data", per_class=3, seed=5)
    args = ["train-head", str(data), "--name", "once", "--heads-dir", str(tmp_path / "heads"), "--holdout", "0",
            "--model", str(tiny_model_dir), "--device", "cpu"]  # fmt: skip
    assert main(args) == 0
    err = capsys.readouterr().err
    steps = [line for line in err.splitlines() if "9 clips, 3 labels" in line]
    assert len(steps) == 1, err  # logged, and printed again by the command before
    assert sum("features: 9 extracted" in line for line in err.splitlines()) == 1, err


def _counts(err: str) -> list[int]:
    """The clip counts the bar showed, in order (tqdm redraws with a carriage return)."""
    return [int(m.group(1)) for m in re.finditer(r"(\d+)/\d+ \[", err)]


def test_batch_bar_starts_at_the_resumed_clips_and_shows_every_clip(tiny_model_dir, tmp_path, capsys):
    clips = tmp_path / "clips"
    clips.mkdir()
    for i in range(8):
        write_audio(clips / f"c{i}.wav", tone(1.0, 16000, freq=200.0 + 40 * i), 16000, "wav")
    common = ["--model", str(tiny_model_dir), "--device", "cpu", "--batch-size", "8",
              "--output-dir", str(tmp_path / "out")]  # fmt: skip
    batch_dir = tmp_path / "batch"
    # The first session does 3 clips (listed by their paths in the clips folder), the resumed one the other 5.
    listing = tmp_path / "first.txt"
    listing.write_text("\n".join(str(clips / f"c{i}.wav") for i in range(3)) + "\n")
    assert main(["batch", str(listing), "--batch-dir", str(batch_dir), *common]) == 0
    capsys.readouterr()
    assert main(["batch", str(clips), "--resume", "--batch-dir", str(batch_dir), *common]) == 0
    err = capsys.readouterr().err
    counts = _counts(err)
    assert counts and counts[0] == 3, err  # starts at the clips already done
    # The five clips of one model call arrive together: each is shown (the bar drew only the first, "4/8").
    assert sorted(set(counts)) == [3, 4, 5, 6, 7, 8], err


@pytest.fixture(autouse=True)
def _quiet_recognize_logger():
    """batch turns the recognise flow's per-clip log down; put it back for the next tests."""
    import logging

    logger = logging.getLogger("emotion2vec_webui.runs.recognize")
    level = logger.level
    yield
    logger.setLevel(level)


def _long_clip(tmp_path):
    from emotion2vec_webui.audio.signals import noise

    path = tmp_path / "long.wav"
    write_audio(path, tone(12.0, 16000, freq=180.0) + noise(12.0, 16000), 16000, "wav")
    return path


def test_recognize_prints_each_window_with_an_eta(tiny_model_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("E2V_WINDOW_S", "2")  # a 12 s clip in several windows
    clip = _long_clip(tmp_path)
    common = ["--model", str(tiny_model_dir), "--device", "cpu", "--output-dir", str(tmp_path / "out"),
              "--no-embedding"]  # fmt: skip
    assert main(["recognize", str(clip), *common]) == 0
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if ": window " in line]  # (the log says "13 windows" too)
    found = [re.search(r"long\.wav: window (\d+)/(\d+) \(\d+%\), ETA (…|\d+:\d\d) / 第 \d+/\d+ 个窗口，约剩", line)
             for line in lines]  # fmt: skip
    assert lines and all(found), err
    n = int(found[0].group(2))
    assert n >= 4 and [int(m.group(1)) for m in found] == list(range(1, n + 1)), err  # one plain line per window
    assert found[0].group(3) == "…" and all(m.group(3) != "…" for m in found[1:]), err  # an ETA from window 2
    assert "\r" not in err and "long.wav" in out  # not a terminal: plain lines; the result still on stdout
    assert main(["recognize", str(clip), *common, "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert ": window " not in err and "long.wav" in out


def test_window_progress_redraws_one_line_on_a_terminal():
    import io
    from types import SimpleNamespace

    from emotion2vec_webui.cli.progress import WindowProgress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    term = Terminal()
    flow = SimpleNamespace(progress=None, window=0, windows=0, eta_s=None)
    with WindowProgress(flow, "a.wav", term):
        assert flow.progress is not None
        flow.progress(0.3, "decoded")  # not a window: nothing shown
        for k, eta in ((1, None), (1, None), (2, 65.4), (3, 7.0)):
            flow.window, flow.windows, flow.eta_s = k, 3, eta
            flow.progress(0.3 + 0.2 * (k - 1), "window")
    text = term.getvalue()
    assert text.count("\r") == 3 and text.count("\n") == 1 and text.endswith("\n"), repr(text)  # one line, redrawn
    assert "window 2/3 (50%), ETA 1:05" in text and "ETA 0:07" in text and flow.progress is None
