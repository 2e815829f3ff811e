"""Logging: JSON lines with request ids, redaction of audio payloads, size-capped rotating files."""

from __future__ import annotations

import base64
import io
import json
import logging
import os

import pytest

from emotion2vec_webui import logs


@pytest.fixture
def root_logger():
    """The root logger, restored afterwards (handlers and level)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield root
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
            h.close()
    for h in handlers:
        if h not in root.handlers:
            root.addHandler(h)
    root.setLevel(level)


def audio_base64(n_bytes: int = 6000) -> str:
    return base64.b64encode(b"RIFF" + os.urandom(n_bytes)).decode()


def test_json_lines_parse_and_carry_the_request_id(root_logger):
    out = io.StringIO()
    logs.setup_logging("INFO", "json", stream=out)
    token = logs.request_id_var.set("req-123")
    try:
        logging.getLogger("e2v.test").info("decoded %s", "a.wav")
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("e2v.test").exception("failed")
    finally:
        logs.request_id_var.reset(token)
    logging.getLogger("e2v.test").warning("outside any request")
    entries = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [e["message"] for e in entries] == ["decoded a.wav", "failed", "outside any request"]
    assert [e.get("request_id") for e in entries] == ["req-123", "req-123", None]
    assert "ValueError: boom" in entries[1]["exc_info"]
    assert {"time", "level", "logger"} <= set(entries[0])


def test_text_format_names_the_request(root_logger):
    out = io.StringIO()
    logs.setup_logging("DEBUG", "text", stream=out)
    token = logs.request_id_var.set("abc")
    try:
        logging.getLogger("e2v.test").debug("hello")
    finally:
        logs.request_id_var.reset(token)
    assert out.getvalue().rstrip().endswith("e2v.test: hello [abc]")


def test_setup_logging_is_idempotent(root_logger):
    logs.setup_logging("INFO", "text", stream=io.StringIO())
    logs.setup_logging("WARNING", "json", stream=io.StringIO())
    ours = [h for h in root_logger.handlers if getattr(h, "_e2v", None) == "stream"]
    assert len(ours) == 1 and root_logger.level == logging.WARNING


@pytest.mark.parametrize(
    "payload",
    [
        audio_base64(),
        base64.urlsafe_b64encode(os.urandom(3000)).decode(),
        "data:audio/wav;base64," + audio_base64(200),
        repr(b"RIFF" + bytes(range(256)) * 4),
        os.urandom(2000).hex(),
    ],
    ids=["base64", "urlsafe", "data-uri", "bytes-repr", "hex"],
)
def test_redaction_removes_audio_payloads(payload):
    text = logs.redact(f"request body: {{'audio_base64': '{payload}', 'filename': 'a.wav'}}")
    assert payload[20:80] not in text
    assert "<redacted" in text and "'filename': 'a.wav'" in text


def test_redaction_keeps_ordinary_text():
    long_path = "/tmp/pytest-of-someone/pytest-12/" + "/".join(["test_a_rather_long_name0"] * 6) + "/result.json"
    for text in ("wrote outputs_20261124_130509_2", "request id 3f2a9c0d1b7e4a55", long_path, "x" * 20):
        assert logs.redact(text) == text


def test_redaction_caps_the_message_length():
    text = logs.redact("word " * 10_000)
    assert len(text) < logs.MAX_MESSAGE_CHARS + 100 and "<cut" in text


def test_handlers_redact_messages_and_tracebacks(root_logger):
    out = io.StringIO()
    logs.setup_logging("INFO", "json", stream=out)
    payload = audio_base64()
    logging.getLogger("e2v.test").info("got body %s", {"audio_base64": payload})
    try:
        raise ValueError(payload)
    except ValueError:
        logging.getLogger("e2v.test").exception("bad body")
    text = out.getvalue()
    assert payload[100:160] not in text
    assert len(text.splitlines()) == 2 and "<redacted" in text


def test_rotation_caps_the_file_size(tmp_path):
    path = tmp_path / "logs" / "server.log"
    handler = logs.rotating_file_handler(path, max_bytes=4000, backups=2)
    logger = logging.getLogger("e2v.test.rotation")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        for i in range(500):
            logger.warning("line %d %s", i, "x" * 50)
    finally:
        logger.removeHandler(handler)
        handler.close()
        logger.propagate = True
    files = sorted(p.name for p in path.parent.iterdir())
    assert files == ["server.log", "server.log.1", "server.log.2"]
    assert all((path.parent / f).stat().st_size <= 4000 for f in files)
    last = (path.parent / "server.log").read_text("utf-8").splitlines()[-1]
    assert json.loads(last)["message"].startswith("line 499 ")


def test_log_to_file_writes_json_lines_once(root_logger, tmp_path):
    root_logger.setLevel(logging.INFO)
    logs.log_to_file(tmp_path / "a")
    path = logs.log_to_file(tmp_path / "b")  # replaces the first handler
    assert sum(getattr(h, "_e2v", None) == "file" for h in root_logger.handlers) == 1
    logging.getLogger("e2v.test").info("to the file")
    for h in root_logger.handlers:
        if getattr(h, "_e2v", None) == "file":
            h.flush()
    assert path == tmp_path / "b" / logs.SERVER_LOG_NAME
    assert json.loads(path.read_text("utf-8").splitlines()[-1])["message"] == "to the file"


def test_log_to_file_survives_an_unwritable_folder(root_logger, tmp_path):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the log folder should be")
    assert logs.log_to_file(blocker / "logs") is None
    assert not any(getattr(h, "_e2v", None) == "file" for h in root_logger.handlers)
