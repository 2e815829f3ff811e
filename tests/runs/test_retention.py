"""Retention (issue 30): E2V_KEEP_DAYS / E2V_KEEP_RUNS remove whole items, never a run being written or read."""

from __future__ import annotations

import os
import time
from datetime import timedelta

import pytest

from emotion2vec_webui.runs.catalog import run_query
from emotion2vec_webui.runs.catalog.folders import INCOMPLETE_DIR
from emotion2vec_webui.runs.catalog.retention import (
    GRACE_S,
    Maintenance,
    RetentionPolicy,
    apply_retention,
    in_use,
)
from emotion2vec_webui.runs.catalog.run_index import catalog_for
from tests.catalog_data import T0, make_batch, write_single

DAY = 86400
NOW = (T0 + timedelta(days=10)).timestamp()  # "now" for the policy: ten days after T0


def _age(path, days: float) -> None:
    """Make a folder look written ``days`` before NOW (its mtime; the result.json time is set when written)."""
    t = NOW - days * DAY
    os.utime(path, (t, t))


@pytest.fixture
def aged(tmp_path):
    """Single runs 9, 8, 7, 6, 2 and 1 days old, and a finished batch of 3 runs 5 days old."""
    root = tmp_path / "outputs"
    singles = {}
    for days in (9, 8, 7, 6, 2, 1):
        seconds = int((10 - days) * DAY)  # result.json time T0 + seconds = NOW - days
        singles[days] = write_single(root, seconds, f"d{days}.wav")
        _age(root / singles[days], days)
    batch = make_batch(root, "batch_20261206_000000", int(5 * DAY), ["a.wav", "b.wav", "c.wav"])
    for p in [root / "batch_20261206_000000", *(root / "batch_20261206_000000").iterdir()]:
        _age(p, 5)
    return root, singles, batch


def _listed(root) -> set[str]:
    return {r["run_id"] for r in run_query.list_runs(catalog_for(root), limit=200).runs}


def test_off_by_default_removes_nothing(aged):
    root, singles, batch = aged
    report = apply_retention(root, RetentionPolicy(), now=NOW)
    assert (report.runs, report.batches) == (0, 0) and len(_listed(root)) == 9


def test_keep_days_removes_older_single_runs_and_whole_batches(aged):
    root, singles, batch = aged
    report = apply_retention(root, RetentionPolicy(keep_days=5.5), now=NOW)
    assert (report.runs, report.batches, report.skipped) == (4, 0, 0)
    assert _listed(root) == {singles[2], singles[1], *batch}
    assert not any((root / singles[d]).exists() for d in (9, 8, 7, 6))
    report = apply_retention(root, RetentionPolicy(keep_days=3), now=NOW)
    assert (report.runs, report.batches) == (3, 1) and not (root / "batch_20261206_000000").exists()
    assert _listed(root) == {singles[2], singles[1]}
    assert not [p for p in root.iterdir() if p.name.startswith(".tmp-")]


def test_kept_audio_of_incomplete_takes_goes_by_age_only(aged):
    root, singles, _ = aged
    kept = root / INCOMPLETE_DIR
    kept.mkdir()
    for days in (9, 1):
        (kept / f"stream_{days}.wav").write_bytes(b"RIFF")
        _age(kept / f"stream_{days}.wav", days)
    (kept / "inside").mkdir()  # not a file of ours: left alone
    _age(kept / "inside", 9)
    report = apply_retention(root, RetentionPolicy(keep_runs=1), now=NOW)  # not runs: E2V_KEEP_RUNS leaves them
    assert report.incomplete_takes == 0 and len(list(kept.iterdir())) == 3
    report = apply_retention(root, RetentionPolicy(keep_days=3), now=NOW)
    assert report.incomplete_takes == 1 and sorted(p.name for p in kept.iterdir()) == ["inside", "stream_1.wav"]
    assert INCOMPLETE_DIR not in _listed(root)


def test_keep_runs_counts_a_batch_whole(aged):
    root, singles, batch = aged
    # newest first: 1 day (1 run), 2 days (1), the batch (3: crosses 4, kept whole), then 6, 7, 8, 9 days: removed
    report = apply_retention(root, RetentionPolicy(keep_runs=4), now=NOW)
    assert (report.runs, report.batches) == (4, 0)
    assert _listed(root) == {singles[1], singles[2], *batch}
    report = apply_retention(root, RetentionPolicy(keep_runs=2), now=NOW)
    assert (report.runs, report.batches) == (3, 1) and _listed(root) == {singles[1], singles[2]}


def test_never_a_run_being_read_a_batch_being_written_or_a_new_run(aged):
    root, singles, batch = aged
    running = make_batch(root, "batch_20261201_000000", 0, ["r.wav"], done=False)  # no report.txt, active now
    new = write_single(root, 1, "just_written.wav")  # an old time in result.json, but its folder is new:
    os.utime(root / new, (NOW - GRACE_S / 2, NOW - GRACE_S / 2))  # written moments before "now"
    with in_use(root / singles[9]):  # e.g. History or a REST detail reading it
        report = apply_retention(root, RetentionPolicy(keep_days=0.5), now=NOW)
    listed = _listed(root)
    assert {singles[9], running[0], new} == listed and report.skipped == 3
    assert (root / singles[9]).is_dir() and (root / "batch_20261201_000000").is_dir()
    report = apply_retention(root, RetentionPolicy(keep_days=0.5), now=NOW)  # the reader is done: now it goes
    assert singles[9] not in _listed(root) and report.skipped == 2


def test_the_server_upkeep_applies_it_at_start_and_again_later(aged):
    root, singles, batch = aged
    upkeep = Maintenance(root, RetentionPolicy(keep_days=3), every_s=0.3, clock=lambda: NOW).start()
    try:
        assert upkeep.synced.wait(30)
        deadline = time.monotonic() + 30
        while len(_listed(root)) > 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _listed(root) == {singles[2], singles[1]}
        late = write_single(root, 0, "copied_in_late.wav", record=False)  # T0: 10 days old, no catalog row yet
        _age(root / late, 10)
        while (root / late).exists() and time.monotonic() < deadline:  # the next pass: sync, then retention
            time.sleep(0.05)
        assert not (root / late).exists() and _listed(root) == {singles[2], singles[1]}
    finally:
        upkeep.stop()


def test_settings_read_the_variables(monkeypatch):
    from emotion2vec_webui.config import load_settings

    assert RetentionPolicy.from_settings(load_settings()) == RetentionPolicy(0.0, 0)
    monkeypatch.setenv("E2V_KEEP_DAYS", "30")
    monkeypatch.setenv("E2V_KEEP_RUNS", "5000")
    policy = RetentionPolicy.from_settings(load_settings())
    assert policy == RetentionPolicy(30.0, 5000) and policy.active
