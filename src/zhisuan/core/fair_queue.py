"""Fair order of requests waiting for a replica slot: round-robin over parties, FIFO within a party.

A *party* is whoever the fairness is between: a tenant on a shared (public) model, a key on a
tenant's private model. The rule of ``FairQueue``:

- each party's waiters form a FIFO queue (first come, first served within the party);
- every admission — a waiter popped here, or a request that found a free slot at once
  (``admitted``) — stamps its party with the next tick of a counter;
- a freed slot goes to the waiting party with the oldest stamp (a party never admitted counts as
  oldest; ties by the time it began waiting): its oldest waiter leaves the queue.

This is round-robin where a turn is an admission: once served, a party is behind every other
waiting party. So one *round* gives every waiting party one slot, and a party whose request took
a slot at once has already had its turn: a quiet party that begins waiting while a noisy one holds
the slot is served before the noisy one's queued requests. Bound: a waiter k-th (0-based) in its
party's queue is handed a slot after at most k + 1 waiters of any other party leave the queue —
one request waits behind at most one request of each other party, however many the others queued.
Removal (a client that gave up) keeps that order for the rest.

Admission bound (``refusal``): a queue of ``max_length`` waiters takes no more; the newcomer is
refused ``"party_fills_queue"`` when every waiter is its own party's (it alone fills the queue: its
own rate, 429) and ``"queue_full"`` otherwise (the model is overloaded: 503).
No clock, no I/O: the gateway decides when slots free and how long a waiter may stay.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Hashable, Iterator
from typing import Generic, Literal, TypeVar

T = TypeVar("T")
Refusal = Literal["queue_full", "party_fills_queue"]
# Stamps kept for parties that wait for nothing now; beyond this many they are forgotten (a forgotten
# party counts as never admitted: it may go first once, which costs fairness one turn, not memory).
MAX_STAMPS = 4096


def refusal(length: int, own: int, max_length: int) -> Refusal | None:
    """Why a newcomer whose party has ``own`` of the ``length`` waiters may not join, or None."""
    if length < max_length:
        return None
    return "party_fills_queue" if own >= length else "queue_full"


class FairQueue(Generic[T]):
    """Waiters by party; ``pop`` follows the module's rule. O(log parties) push/pop, O(party's
    waiters) remove, O(1) ``admitted``."""

    __slots__ = ("_waiting", "_heap", "_entry", "_stamps", "_tick", "_joined", "length")

    def __init__(self) -> None:
        self._waiting: dict[Hashable, deque[T]] = {}  # only parties with at least one waiter
        # (stamp, joined, party) per waiting party; an entry whose ``joined`` is not ``_entry[party]``
        # is stale (the party left and came back) and skipped.
        self._heap: list[tuple[int, int, Hashable]] = []
        self._entry: dict[Hashable, int] = {}
        self._stamps: dict[Hashable, int] = {}  # party → tick of its last admission
        self._tick = 0
        self._joined = 0
        self.length = 0  # an attribute, not len(): the gateway's fast path reads it per request

    def __len__(self) -> int:
        return self.length

    def count(self, party: Hashable) -> int:
        waiters = self._waiting.get(party)
        return len(waiters) if waiters is not None else 0

    def admitted(self, party: Hashable) -> None:
        """A request of ``party`` took a slot without waiting: that was its turn."""
        self._tick += 1
        self._stamps[party] = self._tick

    def push(self, party: Hashable, item: T) -> None:
        waiters = self._waiting.get(party)
        if waiters is None:
            waiters = self._waiting[party] = deque()
            self._enter(party)
        waiters.append(item)
        self.length += 1

    def pop(self) -> T | None:
        """The next waiter by the module's rule, or None when nobody waits."""
        while self._heap:
            _, joined, party = heapq.heappop(self._heap)
            if self._entry.get(party) != joined:
                continue  # stale
            waiters = self._waiting[party]
            item = waiters.popleft()
            self.length -= 1
            self.admitted(party)
            if waiters:
                self._enter(party)  # behind every party not served since
            else:
                del self._waiting[party], self._entry[party]
            return item
        return None

    def remove(self, party: Hashable, item: T) -> bool:
        """Takes ``item`` out (its client left); False if it was not waiting."""
        waiters = self._waiting.get(party)
        if waiters is None:
            return False
        try:
            waiters.remove(item)
        except ValueError:
            return False
        if not waiters:
            del self._waiting[party], self._entry[party]  # its heap entry goes stale
        self.length -= 1
        return True

    def __iter__(self) -> Iterator[T]:
        for waiters in self._waiting.values():
            yield from waiters

    def _enter(self, party: Hashable) -> None:
        if len(self._stamps) > MAX_STAMPS:
            self._stamps = {p: s for p, s in self._stamps.items() if p in self._waiting}
        self._joined += 1
        self._entry[party] = self._joined
        heapq.heappush(self._heap, (self._stamps.get(party, 0), self._joined, party))
        if len(self._heap) > 4 * len(self._entry) + 64:  # stale entries of parties that left: drop them
            self._heap = [e for e in self._heap if self._entry.get(e[2]) == e[1]]
            heapq.heapify(self._heap)
