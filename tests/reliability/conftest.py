"""The reliability suite's configured servers, each started once per session (the token one is shared).

``reliability_server`` (fuzz, traversal, load): limits set low so that breaching
them is cheap, 5 s of audio, 2 MB uploads; the queue is large (128) so that 100
parallel requests all fit (the overload test is tests/serving/test_api.py's, on
the token server's queue of 2). ``guarded_server`` holds client timeouts, upload
limits and URL fetching in one process (``url_server`` is it), ``decode_server``
the decoders' limits: their settings conflict with each other's and with
``reliability_server``'s. ``token_server`` is the session's ``token_api_server``.
"""

from __future__ import annotations

import pytest

from emotion2vec_webui.audio.decoder_pool import _TEST_HOOK_ENV as DECODER_TEST_HOOK
from tests.early_servers import plan_start
from tests.server_util import SHARED_API_TOKEN, TOKEN_API_SETTINGS, ServerProcess, server_env

MAX_DURATION_S = 5


def _reliability_start(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("reliability")
    (root / "inputs").mkdir()
    env = server_env(
        tiny_model_dir, root, input_dirs=root / "inputs", max_duration_s=MAX_DURATION_S, max_upload_mb=2, max_queue=128,
        max_per_client=0,  # every test client is 127.0.0.1: 100 parallel requests from one client must all fit
    )
    env[DECODER_TEST_HOOK] = "1"  # test_decoder_crash.py: uploads starting with b"E2V-TEST:segv" crash a decoder

    def start(early):
        srv = early.enter(ServerProcess(env))
        srv.root, srv.outputs, srv.inputs = root, root / "outputs", root / "inputs"
        return srv

    return start


plan_start("reliability_server", _reliability_start)


@pytest.fixture(scope="session")
def reliability_server(early_servers, request):
    return early_servers.planned("reliability_server", request)


# One server for two sets of small limits that do not conflict (one process instead of two):
# short client timeouts and small upload limits, test_slow_clients.py, test_upload_guard.py, test_contract.py and
# the conversation downloads (test_names_csv.py, test_rename_downloads.py: no duration cap); and audio_url
# fetching, test_url_fetch.py (slow downloads, per-client caps: ``url_server``).
BODY_TIMEOUT_S = 3.0
HEADER_TIMEOUT_S = 2.0
UPLOADS_PER_MIN = 6
URL_READ_TIMEOUT_S = 3.0  # also the grace before E2V_URL_MIN_RATE_KB applies
URL_MAX_CONCURRENT = 6
URL_DECODE_TIMEOUT_S = 4.0  # an upload of b"E2V-TEST:hang" holds its slot this long


@pytest.fixture(scope="session")
def guarded_server(early_servers, request):
    """E2V_MAX_QUEUE=4 (5 slots, 1 per client), 1 MB uploads (2 MB to the UI's upload route, 6 a minute per
    client), 3 s body and 2 s header timeouts; audio_url may reach 127.0.0.1 (3 s read timeout, 6 downloads at
    once, the whole-download limit at its 60 s default); a decode may take 4 s; the decoder test hook is on."""
    return early_servers.planned("guarded_server", request)


def _guarded_start(tiny_model_dir, tmp_path_factory):
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
        url_allow="127.0.0.1",
        url_read_timeout_s=URL_READ_TIMEOUT_S,
        url_max_concurrent=URL_MAX_CONCURRENT,
        decode_timeout_s=URL_DECODE_TIMEOUT_S,
    )
    env[DECODER_TEST_HOOK] = "1"  # test_url_fetch.py: an upload of b"E2V-TEST:hang" holds a slot

    def start(early):
        srv = early.enter(ServerProcess(env))
        srv.root, srv.gradio_tmp = root, root / "outputs" / ".gradio-tmp"
        return srv

    return start


plan_start("guarded_server", _guarded_start)


@pytest.fixture(scope="session")
def url_server(guarded_server):
    """audio_url against a small server: ``guarded_server`` (its URL settings are there)."""
    return guarded_server


# The decoders under attack: test_decode_budget.py (input-sample budget, bounded wait, memory deaths).
DECODE_WAIT_S = 3.0
DECODE_TIMEOUT_S = 8.0  # an upload of b"E2V-TEST:hang" holds a decoder this long


@pytest.fixture(scope="session")
def decode_server(early_servers, request):
    """E2V_MAX_DURATION_S at its 600 s default (the budget of the attack), 2 decoders, 100 MB each, 4 MB uploads."""
    return early_servers.planned("decode_server", request)


def _decode_start(tiny_model_dir, tmp_path_factory):
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
    return lambda early: early.enter(ServerProcess(env))


plan_start("decode_server", _decode_start)


# The token server: the session's shared one (tests/conftest.py's token_api_server, also serving
# tests/serving/test_api.py's socket checks, tests/ui/test_gradio_client.py, the browser's token tests and
# test_url_fetch.py's allowed_server).
# Its failure budget is small for test_auth_throttle.py (wrong tokens and logins); test_error_paths.py trains
# heads in its heads folder; test_stream.py streams to it.
API_TOKEN = SHARED_API_TOKEN
AUTH_FAILURES_PER_MIN = TOKEN_API_SETTINGS["auth_failures_per_min"]  # 30 saved up, then one every 2 s


@pytest.fixture(scope="session")
def token_server(token_api_server):
    """E2V_API_TOKEN set (the API's bearer token and the UI's login password), E2V_AUTH_FAILURES_PER_MIN=30, an
    input and a heads folder (``srv.inputs``, ``srv.heads``), 1 MB uploads, a queue of 2 (``TOKEN_API_SETTINGS``)."""
    return token_api_server
