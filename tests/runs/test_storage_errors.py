"""A full or unwritable output folder gives typed errors; temp folders of dead writers are swept.

The tests run as root, so ``chmod`` cannot make a folder unwritable: an
outputs path that is (or lies under) a regular file stands in for a
read-only folder, and ENOSPC / EROFS / EDQUOT are injected by monkeypatching.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from emotion2vec_webui.errors import StorageError
from emotion2vec_webui.runs import storage as results
from emotion2vec_webui.runs.storage import (
    OutputDirProbe,
    check_output_dir,
    clean_stale_temps,
    is_stale_temp,
    require_output_dir,
    sweep_stale_temps,
    temp_name,
    write_run,
)


def _write(root):
    return write_run(root, {"emotion": "neutral"}, np.zeros(1600, np.float32), np.ones(4, np.float32), "log\n")


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # reaped: os.kill(pid, 0) now fails (a zombie would still answer)
    return proc.pid


def _hidden(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize(
    ("err", "code"),
    [
        (errno.ENOSPC, "storage_full"),
        (errno.EDQUOT, "storage_full"),
        (errno.EROFS, "storage_unavailable"),
        (errno.EACCES, "storage_unavailable"),
    ],
)
def test_write_errors_become_typed_and_leave_no_temp(tmp_path, monkeypatch, err, code):
    def fail(*_args, **_kwargs):
        raise OSError(err, os.strerror(err))

    monkeypatch.setattr(results.np, "save", fail)  # mid-write: after the wav, before result.json
    with pytest.raises(StorageError) as info:
        _write(tmp_path)
    assert info.value.code == code
    assert " / " in info.value.message and "E2V_OUTPUT_DIR" in info.value.message  # English / 中文
    assert str(tmp_path) not in info.value.message  # no server path in what a client reads
    assert os.listdir(tmp_path) == []  # the temp folder went with the failure


def test_enospc_on_the_wav_is_typed_too(tmp_path, monkeypatch):
    real_write = Path.write_bytes

    def full(self, data):
        if self.name == "processed_audio.wav":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, data)

    monkeypatch.setattr(Path, "write_bytes", full)
    with pytest.raises(StorageError) as info:
        _write(tmp_path)
    assert info.value.code == "storage_full" and os.listdir(tmp_path) == []


def test_other_errors_are_not_disguised(tmp_path, monkeypatch):
    def bug(*_args, **_kwargs):
        raise OSError(errno.EBADF, "Bad file descriptor")

    monkeypatch.setattr(results.np, "save", bug)
    with pytest.raises(OSError) as info:
        _write(tmp_path)
    assert not isinstance(info.value, StorageError) and info.value.errno == errno.EBADF
    assert os.listdir(tmp_path) == []


def test_outputs_path_that_is_a_file(tmp_path):
    blocker = tmp_path / "outputs"
    blocker.write_text("not a folder")
    for root in (blocker, blocker / "sub"):
        with pytest.raises(StorageError) as info:
            _write(root)
        assert info.value.code == "storage_unavailable"
        status = check_output_dir(root)
        assert not status.ok and status.code == "storage_unavailable" and " / " in status.message
        with pytest.raises(StorageError) as info:
            require_output_dir(root)
        assert str(root) in info.value.message  # the start-up message names the folder


def test_check_output_dir_creates_probes_and_measures(tmp_path):
    root = tmp_path / "new" / "outputs"
    status = check_output_dir(root, min_free_bytes=0)
    assert status.ok and status.code is None and status.free_bytes > 0
    assert root.is_dir() and os.listdir(root) == []  # the probe file is gone
    full = check_output_dir(root, min_free_bytes=1 << 62)
    assert not full.ok and full.code == "storage_full" and "MB" in full.message


def test_probe_is_cached_then_sees_the_fix(tmp_path):
    root = tmp_path / "outputs"
    root.write_text("blocker")
    probe = OutputDirProbe(root, min_free_bytes=0, ttl_s=0.2)
    assert probe.status().code == "storage_unavailable"
    root.unlink()
    assert probe.status().code == "storage_unavailable"  # cached
    deadline = time.monotonic() + 5
    while not probe.status().ok:
        assert time.monotonic() < deadline, "the probe never saw the folder fixed"
        time.sleep(0.05)


def test_temp_names_tell_dead_writers_from_live_ones(tmp_path):
    assert results._TMP_NAME_RE.match(temp_name())
    host = results._host_tag()
    dead = tmp_path / f".tmp-{_dead_pid()}-{host}-{'a' * 32}"
    mine = tmp_path / temp_name()  # this process: alive
    parent = tmp_path / f".tmp-{os.getppid()}-{host}-{'b' * 32}"  # alive, not ours
    elsewhere = tmp_path / f".tmp-{_dead_pid()}-00000000-{'c' * 32}"  # another host's: age decides
    legacy = tmp_path / ".tmp-0123456789abcdef"  # the old name: age decides
    old_legacy = tmp_path / ".tmp-fedcba9876543210"
    for p in (dead, mine, parent, elsewhere, legacy, old_legacy):
        p.mkdir()
        (p / "processed_audio.wav").write_bytes(b"x" * 100)
    os.utime(old_legacy, (0, 0))
    (tmp_path / ".tmp-file-probe").write_text("")  # a probe file left by a crash: age decides
    run = _write(tmp_path)
    assert clean_stale_temps(tmp_path) == 2
    assert _hidden(tmp_path) == sorted([".tmp-file-probe", elsewhere.name, legacy.name, mine.name, parent.name])
    assert run.path.is_dir()
    assert clean_stale_temps(tmp_path, older_than_s=-1) == 5  # everything is stale past the age
    assert not is_stale_temp("outputs_20261124_130509", 0.0)


def test_stale_atomic_write_temps_inside_run_folders_are_swept(tmp_path):
    """A crash mid speaker rename leaves files.py's ``.tmp-<pid>-<hex>-<name>`` in a run folder; the sweep takes it."""
    from emotion2vec_webui.files import temp_name as file_temp_name
    from emotion2vec_webui.files import write_atomic

    run = _write(tmp_path)
    write_atomic(run.path / "turns.csv", "index\n")  # the writer itself leaves nothing behind
    stale = run.path / file_temp_name("result.json")
    fresh = run.path / file_temp_name("transcript.srt")  # a rename under way right now
    not_the_writers = run.path / ".tmp-notes"  # not the writer's pattern: never ours to remove
    folder = run.path / file_temp_name("x")  # the writer makes files only
    elsewhere = tmp_path / "notes" / file_temp_name("a.json")  # not a run folder
    elsewhere.parent.mkdir()
    for p in (stale, fresh, not_the_writers, elsewhere):
        p.write_text("{")
    folder.mkdir()
    for p in (stale, not_the_writers, folder, elsewhere):
        os.utime(p, (0, 0))
    assert sweep_stale_temps(tmp_path) == 1
    assert _hidden(run.path) == sorted([fresh.name, not_the_writers.name, folder.name])
    assert elsewhere.exists() and (run.path / "result.json").is_file() and (run.path / "turns.csv").is_file()
    assert clean_stale_temps(tmp_path, older_than_s=-1) == 1  # the fresh one, once past the age
    assert _hidden(run.path) == sorted([not_the_writers.name, folder.name])


_KILLED_WRITER = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from emotion2vec_webui.runs import storage as results
    def stall(*args, **kwargs):
        print("writing", flush=True)
        time.sleep(120)

    results.np.save = stall
    results.write_run(sys.argv[1], {}, np.zeros(16000, np.float32), np.ones(4, np.float32), "log")
    """
)


def test_a_writer_killed_mid_write_is_swept_at_start(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
        left = _hidden(tmp_path)
        assert len(left) == 1 and left[0].startswith(f".tmp-{proc.pid}-")
        assert clean_stale_temps(tmp_path) == 0  # the writer is still alive: its temp stays
    finally:
        proc.kill()
        proc.wait()
    assert (tmp_path / left[0] / "processed_audio.wav").is_file()
    assert clean_stale_temps(tmp_path) == 1  # dead now: swept at once, whatever its age
    assert _hidden(tmp_path) == []


def _cli(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "emotion2vec_webui", *args], capture_output=True, text=True, timeout=120, cwd=cwd
    )


@pytest.mark.parametrize("command", ["serve", "batch"])
def test_start_with_an_unwritable_output_folder_exits_with_one_line(tmp_path, command):
    blocker = tmp_path / "outputs"
    blocker.write_text("a file where the outputs folder should be")
    args = ["--output-dir", str(blocker / "runs")]
    if command == "serve":
        args = ["serve", "--port", "1", *args]
    else:
        from emotion2vec_webui.audio.signals import tone, write_audio

        (tmp_path / "in").mkdir()
        write_audio(tmp_path / "in" / "a.wav", tone(0.5, 16000), 16000, "wav")
        args = ["batch", str(tmp_path / "in"), *args]
    proc = _cli(*args, cwd=tmp_path)
    assert proc.returncode == 4, (proc.returncode, proc.stderr[-2000:])
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and lines[0].endswith("[storage_unavailable]")
    assert str(blocker / "runs") in lines[0] and "Traceback" not in proc.stderr


def test_batch_start_sweeps_dead_temps(tmp_path):
    from emotion2vec_webui.audio.signals import tone, write_audio

    inputs = tmp_path / "in"
    inputs.mkdir()
    write_audio(inputs / "a.wav", tone(0.5, 16000), 16000, "wav")
    batch_dir = tmp_path / "b"
    batch_dir.mkdir()
    dead = batch_dir / f".tmp-{_dead_pid()}-{results._host_tag()}-{'d' * 32}"
    dead.mkdir()
    live = batch_dir / f".tmp-{os.getpid()}-{results._host_tag()}-{'e' * 32}"  # this test process: alive
    live.mkdir()
    (tmp_path / "no-model").mkdir()  # the sweep comes before the model: a missing one keeps the test fast
    args = ["batch", str(inputs), "--batch-dir", str(batch_dir), "--model", str(tmp_path / "no-model")]
    proc = _cli(*args, "--device", "cpu", cwd=tmp_path)
    assert proc.returncode == 3, proc.stderr[-2000:]  # model_unavailable
    assert "removed 1 stale temporary folder" in proc.stderr
    assert _hidden(batch_dir) == [live.name]


def test_the_outputs_sweep_reaches_batch_folders(tmp_path):
    """At serve start the outputs root is swept, and so is each batch folder in it (its temp runs, its runs' temps)."""
    from emotion2vec_webui.files import temp_name as file_temp_name

    batch = tmp_path / "batch_20261202_030000"
    batch.mkdir()
    (batch / "batch.json").write_text("{}")
    run = _write(batch)
    dead_run = batch / f".tmp-{_dead_pid()}-{results._host_tag()}-{'d' * 32}"  # a run folder a dead batch was writing
    dead_run.mkdir()
    rename_left = run.path / file_temp_name("transcript.srt")  # a rename cut short inside the batch's run
    rename_left.write_text("1")
    os.utime(rename_left, (0, 0))
    not_a_batch = tmp_path / "notes"  # no batch.json: never looked into
    not_a_batch.mkdir()
    kept = not_a_batch / f".tmp-{_dead_pid()}-{results._host_tag()}-{'e' * 32}"
    kept.mkdir()
    assert sweep_stale_temps(tmp_path) == 2
    assert not dead_run.exists() and not rename_left.exists()
    assert kept.exists() and (run.path / "result.json").is_file()
