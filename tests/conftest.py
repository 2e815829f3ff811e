"""Shared fixtures: the random-weight test model, the engine, generated audio, servers, the browser."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import time
from pathlib import Path

import pytest

from emotion2vec_webui.audio.signals import espeak_available, speech, tone, write_audio
from emotion2vec_webui.config import load_settings
from tests.early_servers import plan, plan_start
from tests.server_util import START_TIMEOUT_S, TOKEN_API_SETTINGS

CHROMIUM = os.environ.get("E2V_CHROMIUM", "/usr/bin/chromium")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
pytest_plugins = ["tests.xdist_groups"]  # which tests share an xdist worker (./run.sh test -n 2)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny random-weight model in FunASR's layout (built once per session)."""
    from emotion2vec_webui.model.resolve import quiet_funasr
    from emotion2vec_webui.model.standins import make_test_model

    with quiet_funasr():
        return make_test_model(tmp_path_factory.mktemp("models") / "tiny", "tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_export_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny model as an ``emotion2vec-webui export`` folder, fp32 and int8 graphs (built once per session)."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from emotion2vec_webui.model.export import export_model
    from emotion2vec_webui.model.resolve import quiet_funasr

    out = tmp_path_factory.mktemp("exports") / "tiny-onnx"
    with quiet_funasr():
        export_model(out, str(tiny_model_dir), quantize="int8")
    return out


@pytest.fixture(scope="session")
def engine(tiny_model_dir):
    """The engine on the tiny model, loaded once (``import funasr`` alone takes ~5 s)."""
    from emotion2vec_webui.engine.engine import EmotionEngine

    return EmotionEngine.load(str(tiny_model_dir), device="cpu", precision="fp32")


@pytest.fixture
def settings(tmp_path, tiny_model_dir):
    """Settings pointing at the tiny model and a fresh outputs root."""
    return dataclasses.replace(
        load_settings(), model=str(tiny_model_dir), output_dir=tmp_path / "outputs", device="cpu"
    )


@pytest.fixture
def tone_wav(tmp_path) -> Path:
    return write_audio(tmp_path / "tone.wav", tone(2.0, 16000), 16000, "wav")


@pytest.fixture(scope="session")
def speech_wav(tmp_path_factory) -> Path:
    """A spoken English sentence (espeak-ng), or a tone when espeak-ng is missing (and not in CI)."""
    out = tmp_path_factory.mktemp("speech") / "speech.wav"
    if espeak_available():
        data, rate = speech("Hello there. This is a test of speech emotion recognition.")
        return write_audio(out, data, rate, "wav")
    if IN_CI:
        pytest.fail("espeak-ng is required under CI (apt-get install espeak-ng)")
    return write_audio(out, tone(3.0, 22050), 22050, "wav")


def chromium_or_skip() -> str:
    """Path of Debian's Chromium; skips with instructions when absent (never under CI)."""
    if Path(CHROMIUM).exists() or shutil.which(CHROMIUM):
        return CHROMIUM
    message = f"Chromium not found at {CHROMIUM}: apt-get install chromium fonts-noto-cjk fonts-noto-color-emoji"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """pytest-playwright: use Debian's Chromium (Playwright's own download fails here)."""
    return {
        **browser_type_launch_args,
        "executable_path": chromium_or_skip(),
        "headless": True,
        "args": [
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-quic",
        ],
    }


@pytest.fixture(scope="session")
def conversation_models(tmp_path_factory) -> dict[str, Path]:
    """Random-weight stand-ins of the conversation models (SenseVoiceSmall, CAM++), built once per session."""
    from emotion2vec_webui.model.resolve import quiet_funasr
    from emotion2vec_webui.model.standins_asr import make_conversation_standin

    root = tmp_path_factory.mktemp("conversation-models")
    with quiet_funasr():
        return {kind: make_conversation_standin(root / kind, kind) for kind in ("sensevoice", "campplus")}


@pytest.fixture(scope="session")
def stereo_dialogue(tmp_path_factory):
    """A stereo wav, a different espeak-ng voice on each channel taking turns: ``(path, spans)``."""
    if not espeak_available():
        pytest.skip("espeak-ng is not installed")
    from emotion2vec_webui.audio.dialogue import LINES, dialogue

    stereo, rate, spans = dialogue(LINES[:4])
    path = write_audio(tmp_path_factory.mktemp("dialogue") / "call.wav", stereo, rate)
    return path, spans


@pytest.fixture(scope="session")
def early_servers():
    """The session's servers, started early in the background (tests/early_servers.py); all stop at the end."""
    from tests.early_servers import EarlyServers

    early = EarlyServers()
    yield early
    early.close()


@pytest.fixture(scope="session", autouse=True)
def _start_servers_early(request, early_servers):
    """Queue the configured servers the collected tests use, in the order they first ask for them."""
    from tests.early_servers import PLANS, enabled, in_start_order

    if not enabled():
        return
    wanted: list[str] = []
    for item in request.session.items:
        names = list(getattr(item, "fixturenames", ()))
        if "shared_server" in names and not {"ui_server", "token_api_server"} & set(names):
            names.append(DEFAULT_SERVER)  # a module fixture of its own calls shared_server(): the default one
        for name in names:
            if name in PLANS and name not in wanted:
                wanted.append(name)
    for name in in_start_order(wanted):
        early_servers.queue(*PLANS[name](request))


DEFAULT_SERVER = "shared_server()"  # the plan of shared_server's default configuration


@plan(DEFAULT_SERVER)
def _plan_default_server(request):
    return request.getfixturevalue("shared_server").plan()


@pytest.fixture(scope="session")
def shared_server(tiny_model_dir, tmp_path_factory, early_servers):
    """A real server per configuration, shared by every module of the run that asks for the same one.

    ``shared_server(inputs=False, heads=False, **settings)`` returns a running
    ``ServerProcess`` (``/readyz`` answered) on the tiny model; ``settings`` are
    ``server_env``'s ``E2V_*`` suffixes. ``inputs=True`` sets ``E2V_INPUT_DIRS``
    to the server's own ``inputs/`` folder, ``heads=True`` ``E2V_HEADS_DIR`` to
    ``heads/``. The same arguments give the same process; all stop at the end of
    the session. A module on a shared server must not assume it alone wrote the
    runs, heads or input files it sees: it filters by its own run ids and uses a
    sub-folder of ``srv.inputs`` of its own. ``name`` is not a setting: a name of
    its own gives a second process of the same settings (``test_bilingual`` wants
    one that shows no user data). Measured at the start: ``srv.healthz_s`` /
    ``srv.ready_s``, seconds until ``/healthz`` and until ``/readyz`` (the model is
    loaded); ``srv.first_page_s`` / ``srv.first_page_cpu_s``, the wall and server
    CPU seconds until ``/`` (the UI) first answered, and ``srv.ready_at_first_page``.
    ``shared_server.plan(...)`` (same arguments) gives ``(name, start)`` for
    ``early_servers.queue``: a configuration started early is the one ``shared_server(...)`` returns.
    """
    from tests.server_util import ServerProcess, server_env

    def key_of(inputs, heads, name, settings) -> str:
        return repr((inputs, heads, name, *sorted((k, str(v)) for k, v in settings.items())))

    def starter(inputs: bool, heads: bool, settings: dict):
        root = tmp_path_factory.mktemp("shared-server")
        (root / "inputs").mkdir()
        settings = dict(settings)
        if inputs:
            settings["input_dirs"] = root / "inputs"
        if heads:
            settings["heads_dir"] = root / "heads"
        env = server_env(tiny_model_dir, root, **settings)

        def start(early):
            started = time.monotonic()
            srv = early.enter(ServerProcess(env, wait_ready=False, log_path=root / "server.log"))
            srv.healthz_s = time.monotonic() - started
            _first_page(srv, started)
            srv.wait("/readyz", START_TIMEOUT_S)
            srv.ready_s = time.monotonic() - started
            srv.root, srv.outputs, srv.inputs, srv.heads = root, root / "outputs", root / "inputs", root / "heads"
            srv.token = settings.get("api_token", "")
            return srv

        return start

    def get(inputs: bool = False, heads: bool = False, name: str = "", **settings):
        key = key_of(inputs, heads, name, settings)
        return early_servers.get(key, lambda: starter(inputs, heads, settings))

    def plan(inputs: bool = False, heads: bool = False, name: str = "", **settings):
        return key_of(inputs, heads, name, settings), starter(inputs, heads, settings)

    get.plan = plan
    return get


def _first_page(srv, started: float) -> None:
    """Wait for ``/`` (the UI page) and record when it came: wall seconds since ``started``, the server's CPU
    seconds (less sensitive than wall time to a busy machine), and whether the model was ready by then."""
    import httpx
    import psutil

    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(srv.url + "/", timeout=30).status_code == 200:
                break
        assert time.monotonic() < deadline, f"/ did not answer; log:\n{srv.log_tail()}"
        time.sleep(0.05)
    srv.first_page_s = time.monotonic() - started
    cpu = psutil.Process(srv.proc.pid).cpu_times()
    srv.first_page_cpu_s = cpu.user + cpu.system
    srv.ready_at_first_page = httpx.get(srv.url + "/readyz", timeout=30).status_code == 200


def _ui_server_args(conversation_models) -> dict:
    return {"inputs": True, "heads": True, "asr_model": conversation_models["sensevoice"],
            "speaker_model": conversation_models["campplus"]}  # fmt: skip


@plan("ui_server")
def _plan_ui_server(request):
    args = _ui_server_args(request.getfixturevalue("conversation_models"))
    return request.getfixturevalue("shared_server").plan(**args)


@pytest.fixture(scope="session")
def ui_server(shared_server, conversation_models):
    """The one server of the UI tests and the conversation API: an input folder, a heads folder, the
    conversation stand-ins (ASR, speaker embeddings), no token (tests/browser, tests/serving)."""
    return shared_server(**_ui_server_args(conversation_models))


def _onnx_only_start(tiny_export_dir, tmp_path_factory):
    from tests.onnx_server import onnx_only_server as start

    root = tmp_path_factory.mktemp("onnx-only-server")
    return lambda early: early.enter(start(tiny_export_dir, root))


plan_start("onnx_only_server", _onnx_only_start, ("tiny_export_dir", "tmp_path_factory"))


@pytest.fixture(scope="session")
def onnx_only_server(early_servers, request):
    """The one server on the tiny ONNX export with torch/FunASR imports blocked (tests/onnx_server.py), shared by
    the REST checks and the browser's Conversation tab; ``server.attempts``: the log of blocked import attempts."""
    return early_servers.planned("onnx_only_server", request)


@plan("token_api_server")
def _plan_token_api_server(request):
    return request.getfixturevalue("shared_server").plan(inputs=True, heads=True, **TOKEN_API_SETTINGS)


@pytest.fixture(scope="session")
def token_api_server(shared_server):
    """The one token server of the run: a bearer token (also the UI's login password), an input and a heads
    folder, 1 MB uploads (413 is cheap), a queue of 2 and no per-client cap (overload from 127.0.0.1), 30 wrong
    tokens a minute per address, audio_url allowed to 127.0.0.1 with short timeouts (``TOKEN_API_SETTINGS``). It
    serves test_api.py's socket checks, test_gradio_client.py, the browser's token tests, tests/reliability's
    ``token_server`` (auth throttling, error paths, streams) and test_url_fetch.py's ``allowed_server``."""
    return shared_server(inputs=True, heads=True, **TOKEN_API_SETTINGS)
