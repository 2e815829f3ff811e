"""Credential guesses are slowed per client address, and the right token is never locked out.

Issue 26: Gradio's ``/login`` took 300 wrong guesses at 333/s, bearer tokens
600/s. ``token_server`` has ``E2V_AUTH_FAILURES_PER_MIN=30``: 30 failures
saved up per address, then one every 2 s (``serving/auth_throttle.py``). Each
test speaks from its own loopback address (127.0.0.x), so the budgets are
apart, as they are for clients on different machines.
"""

from __future__ import annotations

import socket
import time

import httpx

from tests.reliability.conftest import AUTH_FAILURES_PER_MIN

GUESSES = 300
REFILL_S = 60 / AUTH_FAILURES_PER_MIN


def _client(srv, address: str) -> httpx.Client:
    return httpx.Client(base_url=srv.url, transport=httpx.HTTPTransport(local_address=address), timeout=30)


def _assert_throttled(r: httpx.Response) -> int:
    assert r.status_code == 429, r.text
    error = r.json()["error"]
    assert error["code"] == "rate_limited" and " / " in error["message"], error
    retry = int(r.headers["retry-after"])
    assert 1 <= retry <= REFILL_S + 1, retry
    return retry


def _checked_at_most(took_s: float, spent_before: int = 0) -> float:
    """How many guesses the budget lets through in ``took_s`` seconds."""
    return AUTH_FAILURES_PER_MIN - spent_before + took_s / REFILL_S + 1


def test_wrong_tokens_are_throttled_per_address_and_the_right_one_passes(token_server):
    good = {"Authorization": f"Bearer {token_server.token}"}
    with _client(token_server, "127.0.0.11") as c, _client(token_server, "127.0.0.12") as other:
        assert c.get("/api/v1/runs", headers=good).status_code == 200
        # a few mistakes, then the right token: it passes at once and costs nothing
        for i in range(5):
            assert c.get("/api/v1/runs", headers={"Authorization": f"Bearer typo-{i}"}).status_code == 401
        assert c.get("/api/v1/runs", headers=good).status_code == 200

        began = time.monotonic()
        answers = [c.get("/api/v1/runs", headers={"Authorization": f"Bearer guess-{i}"}) for i in range(GUESSES)]
        took = time.monotonic() - began
        statuses = [r.status_code for r in answers]
        checked = statuses.count(401)
        print(f"\nbearer: {GUESSES} wrong tokens in {took:.2f} s ({GUESSES / took:.0f}/s): {checked} checked (401), "
              f"{statuses.count(429)} answered 429")  # fmt: skip
        assert set(statuses) <= {401, 429}, set(statuses)
        assert checked <= _checked_at_most(took, spent_before=5), (checked, took)
        retry = _assert_throttled(answers[-1])

        # the right token from the throttled address waits too (answering it would tell a guesser which was right) …
        _assert_throttled(c.get("/api/v1/runs", headers=good))
        # … another address is not affected: its right token passes, its wrong ones have their own budget
        assert other.get("/api/v1/runs", headers=good).status_code == 200
        assert other.get("/api/v1/runs", headers={"Authorization": "Bearer nope"}).status_code == 401
        # … and after Retry-After the right token passes again
        time.sleep(retry)
        assert c.get("/api/v1/runs", headers=good).status_code == 200


def test_wrong_logins_are_throttled_and_share_the_budget(token_server):
    with _client(token_server, "127.0.0.13") as c:
        began = time.monotonic()
        answers = [c.post("/login", data={"username": "u", "password": f"guess-{i}"}) for i in range(GUESSES)]
        took = time.monotonic() - began
        statuses = [r.status_code for r in answers]
        checked = statuses.count(400)  # Gradio's "Incorrect credentials."
        print(
            f"\nlogin: {GUESSES} wrong passwords in {took:.2f} s: {checked} checked, {statuses.count(429)} answered 429"
        )
        assert set(statuses) <= {400, 429}, set(statuses)
        assert checked <= _checked_at_most(took), (checked, took)
        retry = _assert_throttled(answers[-1])
        # one budget per address for both doors
        _assert_throttled(c.get("/api/v1/runs", headers={"Authorization": "Bearer guess"}))
        time.sleep(retry)
        r = c.post("/login", data={"username": "u", "password": token_server.token})
        assert r.status_code == 200 and any(k.startswith("access-token") for k in r.cookies), r.text


def test_requests_without_a_credential_spend_nothing(token_server):
    with _client(token_server, "127.0.0.14") as c:
        for _ in range(AUTH_FAILURES_PER_MIN + 10):
            assert c.get("/api/v1/runs").status_code == 401  # no Authorization header: not a guess
        r = c.get("/api/v1/runs", headers={"Authorization": f"Bearer {token_server.token}"})
        assert r.status_code == 200
        assert c.get("/healthz").status_code == 200


def test_a_clients_requests_in_flight_hold_none_of_its_budget(token_server):
    """More requests with the right token in flight than the budget (bodies not sent yet): the next one passes."""
    address = "127.0.0.15"
    head = (f"PATCH /api/v1/runs/outputs_20990101_000000/speakers HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {token_server.token}\r\nContent-Type: application/json\r\n"
            "Content-Length: 100\r\n\r\n").encode()  # fmt: skip
    held = []
    try:
        for _ in range(AUTH_FAILURES_PER_MIN + 5):
            s = socket.create_connection(("127.0.0.1", token_server.port), timeout=10, source_address=(address, 0))
            s.sendall(head)
            held.append(s)
        time.sleep(0.5)  # all of them are now waiting for their bodies
        with _client(token_server, address) as c:
            r = c.get("/api/v1/runs", headers={"Authorization": f"Bearer {token_server.token}"})
            assert r.status_code == 200, r.text
    finally:
        for s in held:
            s.close()
