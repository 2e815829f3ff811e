"""Start and stop a real server process on a free loopback port, for tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """``python -m emotion2vec_webui serve`` in a subprocess; a context manager.

    Args:
        env: extra environment (E2V_MODEL, E2V_OUTPUT_DIR, …).
        wait_ready: also wait until /readyz answers 200 (model loaded).
        log_path: where the server's stdout/stderr go.
    """

    def __init__(self, env: dict[str, str], wait_ready: bool = True, log_path: Path | None = None, args=()) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **env}
        self.wait_ready = wait_ready
        self.log_path = log_path
        self.args = list(args)
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> ServerProcess:
        out = open(self.log_path, "wb") if self.log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "emotion2vec_webui",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                *self.args,
            ],
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        self.wait("/healthz", 60)
        if self.wait_ready:
            self.wait("/readyz", 120)
        return self

    def wait(self, path: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}; log: {self.log_path}")
            try:
                if httpx.get(self.url + path, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"{path} not ready after {timeout} s; log: {self.log_path}")

    def __exit__(self, *exc) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
