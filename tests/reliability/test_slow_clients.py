"""Slow and stalled clients over raw loopback sockets: they hold no admission slot and are cut off in time.

The server (``guarded_server``) admits 5 recognitions at once (``E2V_MAX_QUEUE=4``),
times a stalled body out after ``BODY_TIMEOUT_S`` and slow headers after ``HEADER_TIMEOUT_S``.
"""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest

from emotion2vec_webui.audio.signals import tone, write_audio
from tests.reliability.conftest import BODY_TIMEOUT_S, HEADER_TIMEOUT_S

BOUNDARY = "e2vslowclientboundary"
STALLED = 10


def _part_head(field: str = "file", name: str = "clip.wav") -> bytes:
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{field}"; filename="{name}"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    ).encode()


def open_stalled(port: int, path: str = "/api/v1/recognize", declared: int = 200_000, sent: int = 80, field="file"):
    """A connection that sends its headers and ``sent`` bytes of a ``declared``-byte multipart body, then nothing."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=15)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {declared}\r\n\r\n"
    ).encode()
    body = (_part_head(field) + b"RIFF" + b"\0" * sent)[:sent]
    sock.sendall(head + body)
    return sock


def read_response(sock: socket.socket, deadline: float) -> tuple[int | None, dict | None, bool]:
    """(status, JSON body, closed by the server) read until the server closes or ``deadline`` passes."""
    data = b""
    closed = False
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        except ConnectionResetError:
            closed = True
            break
        if not chunk:
            closed = True
            break
        data += chunk
    if not data:
        return None, None, closed
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    return status, parsed, closed


@pytest.fixture(scope="module")
def wav(tmp_path_factory) -> bytes:
    return write_audio(tmp_path_factory.mktemp("slow") / "probe.wav", tone(0.5, 16000), 16000, "wav").read_bytes()


def test_stalled_uploads_do_not_block_a_probe_and_get_408(guarded_server, wav):
    srv = guarded_server
    stalled = [open_stalled(srv.port) for _ in range(STALLED)]
    opened = time.monotonic()
    try:
        time.sleep(0.3)  # let the server see every one of them (they all wait for their bodies)
        started = time.monotonic()
        r = httpx.post(srv.url + "/api/v1/recognize", files={"file": ("probe.wav", wav, "audio/wav")}, timeout=10)
        took = time.monotonic() - started
        assert r.status_code == 200, r.text
        assert took < 2.0, f"the probe took {took:.2f} s behind {STALLED} stalled uploads"
        assert time.monotonic() - opened < BODY_TIMEOUT_S, "the probe ran after the stalled uploads timed out"

        results = [read_response(s, opened + BODY_TIMEOUT_S + 4) for s in stalled]
        waited = time.monotonic() - opened
        for status, body, closed in results:
            assert status == 408, (status, body)
            assert body["error"]["code"] == "request_timeout" and "/" in body["error"]["message"]
            assert closed, "the connection stays open after the 408"
        assert BODY_TIMEOUT_S - 0.5 <= waited <= BODY_TIMEOUT_S + 4, waited
    finally:
        for s in stalled:
            s.close()
    assert httpx.get(srv.url + "/readyz", timeout=5).status_code == 200


def test_a_dripping_body_is_cut_off_by_the_minimum_rate(guarded_server):
    """10 bytes every 0.2 s never idles for BODY_TIMEOUT_S, but averages far under E2V_BODY_MIN_RATE_KB."""
    sock = open_stalled(guarded_server.port, sent=10)
    started = time.monotonic()
    try:
        status = None
        while time.monotonic() - started < BODY_TIMEOUT_S + 4:
            try:
                sock.sendall(b"\0" * 10)
            except (BrokenPipeError, ConnectionResetError):
                break
            sock.settimeout(0.2)
            try:
                data = sock.recv(65536)
            except TimeoutError:
                continue
            status = int(data.split(b" ", 2)[1]) if data else None
            break
        took = time.monotonic() - started
        assert status == 408, status
        assert BODY_TIMEOUT_S - 0.5 <= took <= BODY_TIMEOUT_S + 2, took
    finally:
        sock.close()


def test_slow_headers_are_closed_within_the_bound(guarded_server):
    port = guarded_server.port
    silent = socket.create_connection(("127.0.0.1", port), timeout=15)
    trickle = socket.create_connection(("127.0.0.1", port), timeout=15)
    started = time.monotonic()
    try:
        trickle.sendall(b"POST /api/v1/recognize HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        closed_after = None
        while time.monotonic() - started < HEADER_TIMEOUT_S + 4:
            try:
                trickle.sendall(b"a")  # one header byte every 0.2 s: never idle, never done
            except (BrokenPipeError, ConnectionResetError):
                closed_after = time.monotonic() - started
                break
            trickle.settimeout(0.2)
            try:
                if trickle.recv(1024) == b"":
                    closed_after = time.monotonic() - started
                    break
            except TimeoutError:
                continue
            except ConnectionResetError:
                closed_after = time.monotonic() - started
                break
        assert closed_after is not None, "a connection trickling its headers was never closed"
        assert HEADER_TIMEOUT_S - 0.5 <= closed_after <= HEADER_TIMEOUT_S + 1.5, closed_after

        status, _, closed = read_response(silent, started + HEADER_TIMEOUT_S + 2)
        assert closed and status is None, "a connection that sent nothing was not closed"
    finally:
        silent.close()
        trickle.close()


def test_a_half_closed_body_gets_400_at_once(guarded_server):
    sock = open_stalled(guarded_server.port, sent=120)
    try:
        started = time.monotonic()
        sock.shutdown(socket.SHUT_WR)
        status, body, closed = read_response(sock, started + BODY_TIMEOUT_S + 2)
        assert status == 400 and body["error"]["code"] == "bad_request", (status, body)
        assert closed and time.monotonic() - started < 1.0
    finally:
        sock.close()


def test_a_stalled_ui_upload_gets_408_and_leaves_no_temp_file(guarded_server):
    tmp = guarded_server.gradio_tmp
    before = {p for p in tmp.rglob("*")} if tmp.exists() else set()
    sock = open_stalled(guarded_server.port, path="/gradio_api/upload", sent=2000, field="files")
    try:
        status, body, closed = read_response(sock, time.monotonic() + BODY_TIMEOUT_S + 4)
        assert status == 408 and body["error"]["code"] == "request_timeout", (status, body)
        assert closed
    finally:
        sock.close()
    after = {p for p in tmp.rglob("*")} if tmp.exists() else set()
    assert after <= before, f"left in .gradio-tmp: {sorted(after - before)}"
