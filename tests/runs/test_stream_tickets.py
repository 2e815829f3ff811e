"""Stream tickets: unguessable, single-use, short-lived, bounded."""

from __future__ import annotations

from emotion2vec_webui.runs.live.stream_tickets import MAX_TICKET_CHARS, StreamTickets


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_ticket_opens_once():
    book = StreamTickets()
    a, b = book.issue(), book.issue()
    assert a != b and len(a) >= 40 and book.outstanding() == 2
    assert book.redeem(a) and not book.redeem(a)  # used up
    assert book.redeem(b) and book.outstanding() == 0


def test_a_ticket_expires():
    clock = Clock()
    book = StreamTickets(lifetime_s=30.0, clock=clock)
    ticket = book.issue()
    clock.now += 29.9
    kept = book.issue()
    clock.now += 0.2  # the first is now 30.1 s old
    assert not book.redeem(ticket) and book.outstanding() == 1
    assert book.redeem(kept)


def test_anything_else_is_refused_and_uses_nothing_up():
    book = StreamTickets()
    ticket = book.issue()
    for wrong in ("", None, 12, ticket[:-1], ticket + "x", ticket.upper(), "y" * (MAX_TICKET_CHARS + 1)):
        assert not book.redeem(wrong)
    assert book.outstanding() == 1 and book.redeem(ticket)


def test_the_book_is_bounded_the_oldest_goes_first():
    book = StreamTickets(max_outstanding=3)
    tickets = [book.issue() for _ in range(5)]
    assert book.outstanding() == 3
    assert not book.redeem(tickets[0]) and not book.redeem(tickets[1])
    assert all(book.redeem(t) for t in tickets[2:])
