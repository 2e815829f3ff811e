"""A process that exits while the decode pool is still pre-starting its workers exits quietly.

At exit multiprocessing terminates every daemon child, the worker the background pre-start is waiting
for included; that is the exit, not a broken install, and used to print "A decode worker failed to
start" with a traceback at the end of every test session that started a Service.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import atexit, logging, multiprocessing, time
    atexit.register(time.sleep, 1.0)  # runs last: the rest of an exit's work (pytest's), time for the thread to log
    from emotion2vec_webui.audio import decoder_pool

    logging.basicConfig(level=logging.INFO)
    decoder_pool.prestart()  # what Service() does
    deadline = time.monotonic() + 30
    while not multiprocessing.active_children():  # the worker is spawned, still importing: not ready
        assert time.monotonic() < deadline, "no worker was started"
        time.sleep(0.005)
    print("exiting", flush=True)
    """
)


def test_exit_during_prestart_is_quiet():
    env = {**os.environ, "E2V_DECODE_WORKERS": "2"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "exiting" in proc.stdout
    assert "Traceback" not in proc.stderr and "pre-start" not in proc.stderr, proc.stderr


def test_a_real_prestart_failure_is_still_logged(monkeypatch, caplog):
    from emotion2vec_webui.audio import decoder_pool
    from emotion2vec_webui.errors import E2VError

    def broken(_ctx):
        raise E2VError("internal_error", "A decode worker failed to start. / 解码进程启动失败。")

    monkeypatch.setattr(decoder_pool, "_Worker", broken)
    pool = decoder_pool.DecoderPool(decoder_pool.PoolConfig(workers=1))
    pool.prestart(wait=True)
    assert "could not pre-start a decode worker" in caplog.text
