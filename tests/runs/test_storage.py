"""Run folders: atomic, unique under concurrency, listed newest first, safe paths."""

from __future__ import annotations

import json
import os
import threading
from datetime import datetime, timezone

import numpy as np
import pytest
import soundfile as sf

from emotion2vec_webui.runs.catalog.folders import read_result
from emotion2vec_webui.runs.storage import (
    ARTIFACTS,
    RUN_ID_RE,
    clean_stale_temps,
    list_runs,
    run_path,
    write_run,
)

WHEN = datetime(2026, 11, 24, 13, 5, 9, tzinfo=timezone.utc)


def _write(root, when=WHEN, embedding=True):
    wav = np.zeros(1600, np.float32)
    emb = np.ones(8, np.float32) if embedding else None
    return write_run(root, {"emotion": "neutral"}, wav, emb, "log\n", when)


def test_run_folder_holds_every_file(tmp_path):
    run = _write(tmp_path)
    assert run.run_id == "outputs_20261124_130509"
    assert sorted(os.listdir(run.path)) == sorted(["result.json", "processed_audio.wav", "embedding.npy", "run.log"])
    data, rate = sf.read(run.path / "processed_audio.wav")
    info = sf.info(run.path / "processed_audio.wav")
    assert rate == 16000 and info.channels == 1 and info.subtype == "PCM_16"
    assert np.load(run.path / "embedding.npy").dtype == np.float32


def test_no_embedding_file_when_not_asked(tmp_path):
    run = _write(tmp_path, embedding=False)
    assert not (run.path / "embedding.npy").exists()


def test_many_runs_in_the_same_second_get_distinct_complete_folders(tmp_path):
    runs, errors = [], []

    def worker():
        try:
            runs.append(_write(tmp_path))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    ids = {r.run_id for r in runs}
    assert len(ids) == 40
    assert all(RUN_ID_RE.match(i) for i in ids)
    for r in runs:
        assert json.loads((r.path / "result.json").read_text())["emotion"] == "neutral"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_a_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(TypeError):
        write_run(tmp_path, {"x": object()}, np.zeros(1600, np.float32), None, "", WHEN)  # not JSON-serialisable
    assert list(tmp_path.iterdir()) == []


def test_listing_is_newest_first_with_numeric_suffixes(tmp_path):
    for _ in range(12):
        _write(tmp_path)
    _write(tmp_path, when=datetime(2026, 11, 24, 13, 5, 10, tzinfo=timezone.utc))
    (tmp_path / "not_a_run").mkdir()
    ids = [r.run_id for r in list_runs(tmp_path)]
    assert ids[0] == "outputs_20261124_130510"
    assert ids[1] == "outputs_20261124_130509_11"
    assert ids[-1] == "outputs_20261124_130509"
    assert "not_a_run" not in ids
    assert len(list_runs(tmp_path, limit=3)) == 3


def test_run_path_refuses_anything_odd(tmp_path):
    run = _write(tmp_path)
    for art in ARTIFACTS:  # each artifact the run wrote (frames.csv and others belong to other kinds of run)
        assert (run_path(tmp_path, run.run_id, art) is not None) == (run.path / art).is_file()
    assert run_path(tmp_path, run.run_id, "embedding.npy") is not None
    bad_ids = ["../etc", "outputs_20261124_130509/..", "outputs_2026", "OUTPUTS_20261124_130509", "", "x"]
    for bad in bad_ids:
        assert run_path(tmp_path, bad, "result.json") is None
    for bad_art in ["../result.json", "secret.txt", "RESULT.JSON", "result.json/"]:
        assert run_path(tmp_path, run.run_id, bad_art) is None
    # A symlink planted inside the outputs root that escapes it.
    outside = tmp_path.parent / "outside_secret.txt"
    outside.write_text("secret")
    evil = tmp_path / "outputs_20261124_000000"
    evil.mkdir()
    (evil / "result.json").symlink_to(outside)
    assert run_path(tmp_path, evil.name, "result.json") is None
    assert read_result(tmp_path, evil.name) is None
    link_run = tmp_path / "outputs_20261124_000001"
    link_run.symlink_to(tmp_path.parent)
    assert run_path(tmp_path, link_run.name) is None


def test_stale_temp_folders_are_cleaned(tmp_path):
    stale = tmp_path / ".tmp-deadbeef"
    stale.mkdir()
    os.utime(stale, (0, 0))
    fresh = tmp_path / ".tmp-fresh"
    fresh.mkdir()
    assert clean_stale_temps(tmp_path) == 1
    assert not stale.exists() and fresh.exists()
