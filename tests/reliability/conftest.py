"""One real server for the reliability suite (fuzz, traversal, load), started once per session.

Limits are set low so that breaching them is cheap: 5 s of audio, 2 MB uploads.
The queue is large (128) so that 100 parallel requests all fit; the overload
test starts its own server with a queue of 2.
"""

from __future__ import annotations

import pytest

from tests.server_util import ServerProcess

MAX_DURATION_S = 5


@pytest.fixture(scope="session")
def reliability_server(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("reliability")
    (root / "inputs").mkdir()
    env = {
        "E2V_MODEL": str(tiny_model_dir),
        "E2V_DEVICE": "cpu",
        "E2V_OUTPUT_DIR": str(root / "outputs"),
        "E2V_LOG_DIR": str(root / "logs"),
        "E2V_INPUT_DIRS": str(root / "inputs"),
        "E2V_MAX_DURATION_S": str(MAX_DURATION_S),
        "E2V_MAX_UPLOAD_MB": "2",
        "E2V_MAX_QUEUE": "128",
        "E2V_API_TOKEN": "",
    }
    with ServerProcess(env) as srv:
        srv.root = root
        srv.outputs = root / "outputs"
        srv.inputs = root / "inputs"
        yield srv
