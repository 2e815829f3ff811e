"""Stream tickets: short-lived, single-use passes that open one ``/api/v1/stream`` socket without the API token.

The Live tab streams the microphone to ``/api/v1/stream`` like any program,
but a page must never hold ``E2V_API_TOKEN`` (anything the page can read, a
script injected into it can read too). So a face that has already checked
who it talks to — the UI, whose every event is behind its login when a token
is set — asks for a ticket at Record and hands it to the page, which opens
the socket with ``?ticket=…``; the socket redeems it before it reads
anything else (``serving/stream.py``).

* **Unguessable**: 32 random bytes (:func:`secrets.token_urlsafe`); only
  their SHA-256 is kept, so a copy of the book opens nothing.
* **Short-lived**: a ticket is good for :data:`TICKET_LIFETIME_S` from its
  issue; an expired one is refused and dropped.
* **Single-use**: redeeming removes it, whether or not the stream that
  follows succeeds.
* **Compared in constant time** (:func:`hmac.compare_digest` against every
  outstanding digest: no early exit that tells how close a guess came).
* **Bounded**: at most :data:`MAX_OUTSTANDING` outstanding; issuing one more
  drops the oldest. Minting needs the face's own authentication, so a
  stranger cannot fill the book; a wrong ticket costs the socket's client
  one failure from the same budget as a wrong token.

In memory, per server process: a ticket is redeemed by the server that
issued it (the UI and the socket are one app, ``app.py``).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time

TICKET_LIFETIME_S = 30.0  # from issue to the socket's redeeming it (Record → socket open takes well under 1 s)
MAX_OUTSTANDING = 256  # issued, not yet redeemed nor expired
MAX_TICKET_CHARS = 128  # anything longer is not one of ours (43 characters)


def _digest(ticket: str) -> bytes:
    return hashlib.sha256(ticket.encode("utf-8", "surrogatepass")).digest()


class StreamTickets:
    """The server's outstanding tickets (thread-safe: the UI issues from its workers, the socket redeems).

    Args:
        lifetime_s: how long a ticket is good for after its issue.
        max_outstanding: tickets kept at most (the oldest is dropped beyond).
        clock: monotonic seconds (tests pass their own).
    """

    def __init__(self, lifetime_s: float = TICKET_LIFETIME_S, max_outstanding: int = MAX_OUTSTANDING,
                 clock=time.monotonic) -> None:  # fmt: skip
        self.lifetime_s, self.max_outstanding, self.clock = lifetime_s, max_outstanding, clock
        self._expiry: dict[bytes, float] = {}  # digest → when it expires; insertion order = issue order
        self._lock = threading.Lock()

    def issue(self) -> str:
        """A new ticket, good for one socket within ``lifetime_s``."""
        ticket = secrets.token_urlsafe(32)
        with self._lock:
            self._drop_expired()
            while len(self._expiry) >= self.max_outstanding:
                self._expiry.pop(next(iter(self._expiry)))
            self._expiry[_digest(ticket)] = self.clock() + self.lifetime_s
        return ticket

    def redeem(self, ticket: str | None) -> bool:
        """Whether ``ticket`` is outstanding and unexpired; it is used up either way."""
        if not isinstance(ticket, str) or not ticket or len(ticket) > MAX_TICKET_CHARS:
            return False
        given = _digest(ticket)
        with self._lock:
            self._drop_expired()
            found = None
            for digest in self._expiry:  # every digest compared, in constant time each
                if hmac.compare_digest(digest, given):
                    found = digest
            if found is None:
                return False
            del self._expiry[found]
            return True

    def outstanding(self) -> int:
        """Tickets issued and not yet redeemed nor expired."""
        with self._lock:
            self._drop_expired()
            return len(self._expiry)

    def _drop_expired(self) -> None:
        now = self.clock()
        for digest in [d for d, expiry in self._expiry.items() if expiry <= now]:
            del self._expiry[digest]
