"""Start and stop a real server process on a free loopback port, for tests and benchmarks."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

SHARED_API_TOKEN = "s3cret-token-for-tests"  # tests/conftest.py's token_api_server
# token_api_server's settings (besides its input and heads folders), and those of test_api.py's in-process app: a
# token (auth on every call), 1 MB uploads (413 is cheap), a queue of 2 and no per-client cap (overload from
# 127.0.0.1), 30 wrong tokens or logins a minute per address (tests/reliability/test_auth_throttle.py), audio_url
# allowed to 127.0.0.1 with 3 s per download and 1.5 s of silence at most (test_url_fetch.py's allowed_server).
TOKEN_API_SETTINGS = {
    "api_token": SHARED_API_TOKEN, "max_upload_mb": 1, "max_queue": 2, "max_per_client": 0, "auth_failures_per_min": 30,
    "url_allow": "127.0.0.1", "url_timeout_s": 3, "url_read_timeout_s": 1.5, "url_connect_timeout_s": 2,
}  # fmt: skip
# Generous: on this 2-core machine shared with other test runs (load 20 seen), the imports alone took over 90 s
# and the model load over 180 s. A server that dies is seen at once (``wait`` checks the process).
START_TIMEOUT_S = 300


def server_env(model_dir, root, **settings) -> dict[str, str]:
    """Environment for a test server: the model, outputs and logs under ``root``, no token.

    ``settings`` add or override ``E2V_*`` variables by their suffix, e.g.
    ``max_queue=2`` → ``E2V_MAX_QUEUE=2``.
    """
    env = {
        "E2V_MODEL": str(model_dir),
        "E2V_DEVICE": "cpu",
        "E2V_OUTPUT_DIR": str(root / "outputs"),
        "E2V_LOG_DIR": str(root / "logs"),
        "E2V_API_TOKEN": "",
    }
    env.update({f"E2V_{key.upper()}": str(value) for key, value in settings.items()})
    return env


def app_settings(model_dir, root, **settings):
    """The ``Settings`` a server started on ``server_env(model_dir, root, **settings)`` loads, for the app in-process.

    ``create_app(app_settings(...), Service(settings, engine))`` through FastAPI's ``TestClient`` then runs with
    the same configuration as that server, read by the same ``load_settings`` from the same variables.
    """
    from unittest import mock

    from emotion2vec_webui.config import load_settings

    with mock.patch.dict(os.environ, server_env(model_dir, root, **settings)):
        return load_settings()


@contextlib.contextmanager
def stream_client(settings, engine):
    """``/api/v1/stream`` in-process: the stream router over a started ``Service(settings, engine)``.

    Yields:
        ``(client, service)``: FastAPI's ``TestClient`` (``client.websocket_connect``) and the service.
    """
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from emotion2vec_webui.runs.inference.service import Service
    from emotion2vec_webui.serving import stream

    service = Service(settings, engine)
    service.start()
    app = FastAPI()
    app.include_router(stream.router)
    app.state.settings, app.state.service = settings, service
    try:
        with TestClient(app) as client:
            yield client, service
    finally:
        service.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """``python -m emotion2vec_webui serve`` in a subprocess; a context manager.

    Args:
        env: extra environment (E2V_MODEL, E2V_OUTPUT_DIR, …).
        wait_ready: also wait until /readyz answers 200 (model loaded).
        log_path: where the server's stdout/stderr go (default: a temporary file, shown on failure).
        args: extra ``serve`` arguments.
    """

    def __init__(self, env: dict[str, str], wait_ready: bool = True, log_path: Path | None = None, args=()) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **env}
        self.wait_ready = wait_ready
        self.log_path = Path(log_path) if log_path else Path(tempfile.mkstemp(prefix="e2v-server-", suffix=".log")[1])
        self.args = list(args)
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> ServerProcess:
        self._out = open(self.log_path, "wb")
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
            stdout=self._out,
            stderr=subprocess.STDOUT,
        )
        try:
            self.wait("/healthz", START_TIMEOUT_S)
            if self.wait_ready:
                self.wait("/readyz", START_TIMEOUT_S)
        except BaseException:
            self.__exit__()
            raise
        return self

    def wait(self, path: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}; log:\n{self.log_tail()}")
            try:
                if httpx.get(self.url + path, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"{path} not ready after {timeout} s; log:\n{self.log_tail()}")

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the server's log (for assertion messages)."""
        try:
            return self.log_path.read_text("utf-8", errors="replace")[-chars:]
        except OSError:
            return ""

    def rss_bytes(self) -> int:
        """The server process's resident memory."""
        import psutil

        return psutil.Process(self.proc.pid).memory_info().rss

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __exit__(self, *exc) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "_out", None):
            self._out.close()
