"""What the CLI prints while it works (issue 33): train-head says each step once; batch's bar counts every clip;
recognize shows a long file's windows with an ETA."""

from __future__ import annotations

import logging
import re

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
    pipeline_log = logging.getLogger("emotion2vec_webui.runs.recognize")
    level = pipeline_log.level
    assert main(["batch", str(listing), "--batch-dir", str(batch_dir), *common]) == 0
    # batch turns the per-clip log down while it runs, and puts it back: an in-process caller keeps its logging
    assert pipeline_log.level == level
    capsys.readouterr()
    assert main(["batch", str(clips), "--resume", "--batch-dir", str(batch_dir), *common]) == 0
    err = capsys.readouterr().err
    counts = _counts(err)
    assert counts and counts[0] == 3, err  # starts at the clips already done
    # The five clips of one model call arrive together: each is shown (the bar drew only the first, "4/8").
    assert sorted(set(counts)) == [3, 4, 5, 6, 7, 8], err
