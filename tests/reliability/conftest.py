"""One real server for the reliability suite (fuzz, traversal, load), started once per session.

Limits are set low so that breaching them is cheap: 5 s of audio, 2 MB uploads.
The queue is large (128) so that 100 parallel requests all fit; the overload
test starts its own server with a queue of 2.
"""

from __future__ import annotations

import pytest

from emotion2vec_webui.audio.decoder_pool import _TEST_HOOK_ENV as DECODER_TEST_HOOK
from tests.server_util import ServerProcess, server_env

MAX_DURATION_S = 5


@pytest.fixture(scope="session")
def reliability_server(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("reliability")
    (root / "inputs").mkdir()
    env = server_env(
        tiny_model_dir, root, input_dirs=root / "inputs", max_duration_s=MAX_DURATION_S, max_upload_mb=2, max_queue=128,
        max_per_client=0,  # every test client is 127.0.0.1: 100 parallel requests from one client must all fit
    )
    env[DECODER_TEST_HOOK] = "1"  # test_decoder_crash.py: uploads starting with b"E2V-TEST:segv" crash a decoder
    with ServerProcess(env) as srv:
        srv.root = root
        srv.outputs = root / "outputs"
        srv.inputs = root / "inputs"
        yield srv


# Short client timeouts and small upload limits: test_slow_clients.py and test_upload_guard.py.
BODY_TIMEOUT_S = 3.0
HEADER_TIMEOUT_S = 2.0
UPLOADS_PER_MIN = 6


@pytest.fixture(scope="session")
def guarded_server(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("guarded")
    env = server_env(
        tiny_model_dir,
        root,
        max_queue=4,
        body_timeout_s=BODY_TIMEOUT_S,
        header_timeout_s=HEADER_TIMEOUT_S,
        max_upload_mb=1,
        max_batch_upload_mb=2,
        upload_requests_per_min=UPLOADS_PER_MIN,
    )
    with ServerProcess(env) as srv:
        srv.root = root
        srv.gradio_tmp = root / "outputs" / ".gradio-tmp"
        yield srv


# audio_url against a small server: test_url_fetch.py (slow downloads, per-client caps).
URL_READ_TIMEOUT_S = 3.0  # also the grace before E2V_URL_MIN_RATE_KB applies
URL_MAX_CONCURRENT = 6
URL_DECODE_TIMEOUT_S = 4.0  # an upload of b"E2V-TEST:hang" holds its slot this long


@pytest.fixture(scope="session")
def url_server(tiny_model_dir, tmp_path_factory):
    """E2V_MAX_QUEUE=4 (5 slots, 1 per client), 127.0.0.1 allowed, the whole-download limit at its 60 s default."""
    root = tmp_path_factory.mktemp("url-server")
    env = server_env(
        tiny_model_dir,
        root,
        max_queue=4,
        url_allow="127.0.0.1",
        url_read_timeout_s=URL_READ_TIMEOUT_S,
        url_max_concurrent=URL_MAX_CONCURRENT,
        max_upload_mb=1,
        max_duration_s=MAX_DURATION_S,
        decode_timeout_s=URL_DECODE_TIMEOUT_S,
    )
    env[DECODER_TEST_HOOK] = "1"
    with ServerProcess(env) as srv:
        yield srv


# The decoders under attack: test_decode_budget.py (input-sample budget, bounded wait, memory deaths).
DECODE_WAIT_S = 3.0
DECODE_TIMEOUT_S = 8.0  # an upload of b"E2V-TEST:hang" holds a decoder this long


@pytest.fixture(scope="session")
def decode_server(tiny_model_dir, tmp_path_factory):
    """E2V_MAX_DURATION_S at its 600 s default (the budget of the attack), 2 decoders, 100 MB each, 4 MB uploads."""
    root = tmp_path_factory.mktemp("decode-server")
    env = server_env(
        tiny_model_dir,
        root,
        max_upload_mb=4,
        max_per_client=0,  # attackers and probes all come from 127.0.0.1
        decode_workers=2,
        decode_memory_mb=100,
        decode_timeout_s=DECODE_TIMEOUT_S,
        decode_wait_s=DECODE_WAIT_S,
    )
    env[DECODER_TEST_HOOK] = "1"
    with ServerProcess(env) as srv:
        yield srv


# A token server with a small failure budget: test_auth_throttle.py (wrong tokens and logins).
API_TOKEN = "reliability-token-5e3a"
AUTH_FAILURES_PER_MIN = 30  # 30 saved up, then one every 2 s


@pytest.fixture(scope="session")
def token_server(tiny_model_dir, tmp_path_factory):
    """E2V_API_TOKEN set (the API's bearer token and the UI's login password), E2V_AUTH_FAILURES_PER_MIN=30;
    an input folder and a heads folder of its own (test_error_paths.py trains heads)."""
    root = tmp_path_factory.mktemp("token-server")
    (root / "inputs").mkdir()
    env = server_env(
        tiny_model_dir, root, api_token=API_TOKEN, auth_failures_per_min=AUTH_FAILURES_PER_MIN,
        input_dirs=root / "inputs", heads_dir=root / "heads",
    )  # fmt: skip
    with ServerProcess(env) as srv:
        srv.token = API_TOKEN
        srv.root, srv.inputs, srv.heads = root, root / "inputs", root / "heads"
        yield srv
