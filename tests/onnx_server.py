"""A server on an ONNX export (``E2V_MODEL=<export>``) with torch and FunASR imports blocked, for tests.

A guarded subprocess, not a fresh venv: the server's own dependencies (Gradio,
FastAPI, …) are many, so the test server runs in this venv with a
``sitecustomize`` whose import hook refuses torch, FunASR, torchaudio,
silero-vad and modelscope (``ModuleNotFoundError``, as in an environment that
lacks them) and logs every attempt to ``attempts``. One such server serves the
whole session (``onnx_only_server`` in tests/conftest.py): the REST checks in
tests/serving/test_onnx_only_server.py and the browser's Conversation tab in
tests/browser/test_conversation_onnx_browser.py.
"""

from __future__ import annotations

import contextlib
import textwrap
from pathlib import Path

from tests.server_util import ServerProcess, server_env

BLOCKER = textwrap.dedent(
    """
    import importlib.abc, os, sys

    BLOCKED = {"torch", "funasr", "torchaudio", "silero_vad", "modelscope"}

    class _Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                with open(os.environ["E2V_TEST_BLOCKED_LOG"], "a") as f:
                    f.write(name + "\\n")
                raise ModuleNotFoundError(f"No module named {name!r} (blocked: ONNX-only test)", name=name)
            return None

    sys.meta_path.insert(0, _Block())
    """
)


class PatientServer(ServerProcess):
    """Waits up to 5 min for /healthz: building the Gradio UI took 100 s on this 2-core machine under load."""

    def wait(self, path: str, timeout: float) -> None:
        super().wait(path, max(timeout, 300))


@contextlib.contextmanager
def onnx_only_server(export_dir: Path, root: Path):
    """A running server on ``export_dir`` whose process cannot import torch; ``server.attempts``: the log of tries."""
    guard = root / "guard"
    guard.mkdir(parents=True, exist_ok=True)
    (guard / "sitecustomize.py").write_text(BLOCKER, "utf-8")
    attempts = root / "blocked.log"
    env = {**server_env(export_dir, root), "PYTHONPATH": str(guard), "E2V_TEST_BLOCKED_LOG": str(attempts)}
    with PatientServer(env, log_path=root / "server.log") as server:
        server.attempts = attempts
        yield server
