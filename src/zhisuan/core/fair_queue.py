"""Fair order of requests waiting for a replica slot: round-robin over parties, FIFO within a party.

A *party* is whoever the fairness is between: a tenant on a shared (public) model, a key on a
tenant's private model. The rule of ``FairQueue``:

- each party's waiters form a FIFO queue (first come, first served within the party);
- the parties that have waiters stand in a ring, in the order they started waiting;
- a freed slot goes to the party at the head of the ring: its oldest waiter leaves the queue and the
  party, if it still has waiters, moves to the back of the ring (a party left with none leaves the
  ring; when it waits again it joins at the back).

So one *round* gives every waiting party one slot. Bound: a waiter that is k-th (0-based) in its
party's queue is handed a slot after at most k + 1 waiters of any other party leave the queue —
a party that joins with one request waits behind at most one request of each other party, however
many the others have queued. Removal (a client that gave up) keeps that order for the rest.

Admission bound (``refusal``): a queue of ``max_length`` waiters takes no more; the newcomer is
refused ``"party_fills_queue"`` when every waiter is its own party's (it alone fills the queue: its
own rate, 429) and ``"queue_full"`` otherwise (the model is overloaded: 503).
No clock, no I/O: the gateway decides when slots free and how long a waiter may stay.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterator
from typing import Generic, Literal, TypeVar

T = TypeVar("T")
Refusal = Literal["queue_full", "party_fills_queue"]


def refusal(length: int, own: int, max_length: int) -> Refusal | None:
    """Why a newcomer whose party has ``own`` of the ``length`` waiters may not join, or None."""
    if length < max_length:
        return None
    return "party_fills_queue" if own >= length else "queue_full"


class FairQueue(Generic[T]):
    """Waiters by party; ``pop`` follows the module's round-robin rule. O(1) push/pop, O(party's
    waiters) remove."""

    __slots__ = ("_ring", "length")

    def __init__(self) -> None:
        # A dict keeps insertion order: its first key is the head of the ring, re-inserting moves a
        # party to the back. Only parties with at least one waiter are keys.
        self._ring: dict[Hashable, deque[T]] = {}
        self.length = 0  # an attribute, not len(): the gateway's fast path reads it per request

    def __len__(self) -> int:
        return self.length

    def count(self, party: Hashable) -> int:
        waiters = self._ring.get(party)
        return len(waiters) if waiters is not None else 0

    def push(self, party: Hashable, item: T) -> None:
        waiters = self._ring.get(party)
        if waiters is None:
            waiters = self._ring[party] = deque()
        waiters.append(item)
        self.length += 1

    def pop(self) -> T | None:
        """The next waiter by the round-robin rule, or None when nobody waits."""
        if not self._ring:
            return None
        party = next(iter(self._ring))
        waiters = self._ring.pop(party)
        item = waiters.popleft()
        if waiters:
            self._ring[party] = waiters  # to the back of the ring
        self.length -= 1
        return item

    def remove(self, party: Hashable, item: T) -> bool:
        """Takes ``item`` out (its client left); False if it was not waiting."""
        waiters = self._ring.get(party)
        if waiters is None:
            return False
        try:
            waiters.remove(item)
        except ValueError:
            return False
        if not waiters:
            del self._ring[party]  # its place in the ring is lost: it joins at the back next time
        self.length -= 1
        return True

    def __iter__(self) -> Iterator[T]:
        for waiters in self._ring.values():
            yield from waiters
