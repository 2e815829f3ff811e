"""The output folder stops taking files under a running server: typed errors, /readyz not ready, recovery.

The tests run as root, where ``chmod 0555`` stops nothing, so:

* *unwritable*: the outputs folder is replaced by a regular file while the
  server runs → ``503 storage_unavailable``;
* *full*: the outputs folder lives on a 6 MB tmpfs (when this machine lets
  the tests mount one; skipped otherwise) that a filler file fills up →
  ``507 storage_full`` from a real ENOSPC.

Both then undo the damage and check the server recovers on its own. The
server is started with dead and live writers' temp folders planted in its
outputs folder: the start-up sweep removes only the dead one.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from emotion2vec_webui.audio.signals import tone, write_audio
from emotion2vec_webui.runs import storage as results
from tests.early_servers import plan_start
from tests.server_util import ServerProcess, server_env

POLL_S = 10  # /readyz caches its probe for 2 s


def _mount_tmpfs(where: Path, size: str) -> bool:
    where.mkdir()
    if sys.platform != "linux" or shutil.which("mount") is None:
        return False
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True)
    return proc.returncode == 0


def _storage_start(tiny_model_dir, tmp_path_factory):
    """The disk and the planted temp folders made now; the server started by the returned function (early,
    tests/early_servers.py), and the disk unmounted after the server stops."""
    root = tmp_path_factory.mktemp("storage")
    disk = root / "disk"
    mounted = _mount_tmpfs(disk, "6m")
    outputs = disk / "outputs"
    outputs.mkdir()
    dead_pid = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = outputs / f".tmp-{int(dead_pid.stdout)}-{results._host_tag()}-{'d' * 32}"
    live = outputs / f".tmp-{os.getpid()}-{results._host_tag()}-{'e' * 32}"  # this test process: alive
    for folder in (dead, live):
        folder.mkdir()
        (folder / "processed_audio.wav").write_bytes(b"\0" * 1000)
    env = server_env(tiny_model_dir, root, output_dir=outputs, min_free_mb=0.5)

    @contextlib.contextmanager
    def server_on_the_disk():
        try:
            with ServerProcess(env) as srv:
                srv.outputs, srv.mounted, srv.planted = outputs, mounted, (dead, live)
                srv.clip = write_audio(root / "clip.wav", tone(1.0, 16000), 16000, "wav").read_bytes()
                yield srv
        finally:
            if mounted:
                subprocess.run(["umount", "-l", str(disk)], check=False)

    return lambda early: early.enter(server_on_the_disk())


plan_start("storage_server", _storage_start)


@pytest.fixture(scope="module")
def storage_server(early_servers, request):
    return early_servers.planned("storage_server", request)


def _recognize(srv) -> httpx.Response:
    files = {"file": ("clip.wav", srv.clip, "audio/wav")}
    return httpx.post(srv.url + "/api/v1/recognize", files=files, data={"extract_embedding": "false"}, timeout=60)


def _ready_until(srv, want: int) -> dict:
    deadline = time.monotonic() + POLL_S
    while True:
        r = httpx.get(srv.url + "/readyz", timeout=10)
        if r.status_code == want or time.monotonic() > deadline:
            assert r.status_code == want, r.text
            return r.json()
        time.sleep(0.1)


def test_start_sweeps_only_dead_writers_temps(storage_server):
    dead, live = storage_server.planted
    assert not dead.exists() and live.is_dir()
    assert "removed 1 stale temporary folder" in storage_server.log_tail(100_000)
    shutil.rmtree(live)


def test_unwritable_output_folder_then_fixed(storage_server):
    srv = storage_server
    body = _ready_until(srv, 200)
    assert body["storage"]["ok"] is True and body["storage"]["free_mb"] > 0
    shutil.rmtree(srv.outputs)
    srv.outputs.write_text("a file where the outputs folder should be")
    try:
        r = _recognize(srv)
        assert r.status_code == 503, r.text
        error = r.json()["error"]
        assert error["code"] == "storage_unavailable" and " / " in error["message"]
        assert str(srv.outputs) not in error["message"]
        body = _ready_until(srv, 503)
        assert body["ready"] is False and body["state"] == "unavailable"
        assert body["storage"]["code"] == "storage_unavailable" and body["message"] == body["storage"]["message"]
        assert httpx.get(srv.url + "/healthz", timeout=10).status_code == 200  # alive, only not ready
    finally:
        srv.outputs.unlink()  # fixed: the probe (and the next run) create the folder again
    _ready_until(srv, 200)
    r = _recognize(srv)
    assert r.status_code == 200, r.text
    assert (srv.outputs / r.json()["run_id"] / "result.json").is_file()


def test_full_disk_then_freed(storage_server):
    srv = storage_server
    if not srv.mounted:
        pytest.skip("cannot mount a small tmpfs here (needs root and CAP_SYS_ADMIN)")
    _ready_until(srv, 200)
    filler = srv.outputs.parent / "filler"
    try:
        with open(filler, "wb") as f:
            chunk = b"\0" * 65536
            try:
                while True:
                    f.write(chunk)
                    f.flush()
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
        for size in (4096, 512, 16, 1):  # the last crumbs, so that no write fits
            try:
                with open(filler, "ab") as f:
                    while True:
                        f.write(b"\0" * size)
                        f.flush()
            except OSError:
                pass
        r = _recognize(srv)
        assert r.status_code == 507, r.text
        error = r.json()["error"]
        assert error["code"] == "storage_full" and " / " in error["message"]
        body = _ready_until(srv, 503)
        assert body["storage"]["code"] == "storage_full", body
        assert not list(srv.outputs.glob(".tmp-*")), "the failed write left its temp folder"
    finally:
        filler.unlink(missing_ok=True)
    _ready_until(srv, 200)
    assert _recognize(srv).status_code == 200
