"""Credential guesses slowed per client: the API's bearer token and the UI's login share one failure budget.

With ``E2V_API_TOKEN`` set, the token is both the API's bearer token and the
UI's login password (``ui/app.py``). Unthrottled, a client could try them as
fast as the server answers (issue 26: 300 wrong logins at 333/s, bearer
tokens at 600/s). Here each client address has a budget of failures: a token
bucket of ``E2V_AUTH_FAILURES_PER_MIN`` (10) a minute with a minute's worth
saved up. A request that carries a credential — an ``Authorization`` header on
``/api/*`` or ``/metrics``, a ``POST /login`` — takes one failure from its
client's budget before the credential is checked (so that concurrent guesses
cannot overdraw it), and gets it back when the credential was right: a bearer
token is compared here, at once, so a client's own requests in flight hold
none of its budget; a login when Gradio answers anything but its 400
"Incorrect credentials". A client with no budget left is answered
``429 rate_limited`` with ``Retry-After`` (seconds until its next failure is
allowed), and its credential is not checked.

The right credential is never locked out:

* the budget belongs to a client address, never to the token: other
  addresses with the right token pass as always while one address guesses;
* a right credential costs nothing, so a client that sends it and makes a few
  mistakes (fewer than a minute's budget) never waits;
* only a client that used up its budget waits, at most ``60 / rate`` seconds
  after its last failure (6 s by default), then its right credential passes.

Why a throttled client's right credential is refused too: answering it would
tell a guesser which guess was right at full speed, and the throttle would
slow nothing. A success does not refill the budget either, or a guesser
sharing an address with a real user (a proxy, a NAT) would get a fresh budget
every time that user signs in. Behind a reverse proxy every client has the
proxy's address (unless it sets ``X-Forwarded-For`` and runs on this host,
which uvicorn trusts by default) and shares one budget.
"""

from __future__ import annotations

import logging
import math

from emotion2vec_webui.config import Settings
from emotion2vec_webui.serving.guards import (
    PROTECTED_PREFIXES,
    answer_error,
    bearer_matches,
    expects_body,
    header_value,
)
from emotion2vec_webui.serving.upload_guard import ClientBuckets

log = logging.getLogger(__name__)

# Gradio's login form posts here when the UI is mounted at "/" (gradio.routes, Gradio 6.31).
LOGIN_PATH = "/login"
LOGIN_WRONG = frozenset({400, 401})  # Gradio's "Incorrect credentials." is a 400


def _credential(scope) -> str | None:
    """``"bearer"`` (an ``Authorization`` header on a guarded path), ``"login"`` (the UI's login form) or None."""
    path = scope.get("path", "")
    if path.startswith(PROTECTED_PREFIXES) or path == "/api":
        return "bearer" if header_value(scope, b"authorization") else None
    if scope.get("method") == "POST" and path.rstrip("/") == LOGIN_PATH:
        return "login"
    return None


class AuthThrottleMiddleware:
    """Failed bearer tokens and UI logins, a budget per client address; ``429 rate_limited`` beyond it.

    A bearer token is checked here (as :class:`~.guards.ApiGuardMiddleware` checks it, which then
    answers the 401): a right one gives its failure back at once, so a client's long recognitions
    hold none of its budget. A login is checked by Gradio: its failure is given back when the answer
    starts and is not Gradio's 400. Does nothing when no token is set or the rate is 0.

    Args:
        app: the inner ASGI app.
        settings: ``api_token`` and ``auth_failures_per_min``.
    """

    def __init__(self, app, settings: Settings) -> None:
        self.app = app
        self.token = settings.api_token
        per_min = settings.auth_failures_per_min
        self.enabled = bool(settings.api_token) and per_min > 0
        self.failures = ClientBuckets(per_min, max(1.0, per_min))  # a minute's worth of failures saved up

    async def __call__(self, scope, receive, send) -> None:
        kind = _credential(scope) if self.enabled and scope["type"] == "http" else None
        if kind is None:
            await self.app(scope, receive, send)
            return
        client = (scope.get("client") or ("unknown", 0))[0]
        wait = self.failures.take(client, 1)  # taken before the check: concurrent guesses cannot overdraw
        if wait:
            await self._refuse(scope, receive, send, client, wait)
            return
        if kind == "bearer":
            if bearer_matches(scope, self.token):
                self.failures.give_back(client, 1)
            else:
                log.info("client %s: a wrong token on %s", client, scope.get("path"))
            await self.app(scope, receive, send)  # the API guard answers a wrong token 401
            return
        pending = True

        async def settle(message) -> None:
            nonlocal pending
            if pending and message["type"] == "http.response.start":
                pending = False
                if message["status"] in LOGIN_WRONG:
                    log.info("client %s: a wrong login", client)
                else:
                    self.failures.give_back(client, 1)
            await send(message)

        try:
            await self.app(scope, receive, settle)
        finally:
            if pending:  # no answer (the client went away before it): nothing was judged
                self.failures.give_back(client, 1)

    async def _refuse(self, scope, receive, send, client: str, wait: float) -> None:
        retry = max(1, math.ceil(min(wait, 3600)))
        log.info("client %s: out of failed sign-ins; answering 429 (retry in %d s)", client, retry)
        message = (
            f"Too many failed sign-ins from this address; retry in {retry} s (E2V_AUTH_FAILURES_PER_MIN). "
            f"/ 此地址登录失败次数过多，请 {retry} 秒后重试。"
        )
        request_id = scope.get("state", {}).get("request_id")
        drain = expects_body(scope) and b"100-continue" not in header_value(scope, b"expect").lower()
        extra = [(b"retry-after", str(retry).encode())]
        await answer_error(send, receive, 429, "rate_limited", message, request_id, extra, drain=drain)
