"""A request's slot at a replica: at once when one is free (a counter), else a fair wait in the gateway.

``acquire`` returns a replica whose slot the request now holds (``ModelRoute.release`` gives it
back), or a reason it got none:

- fast path (``ModelRoute.take_free``): nobody waits on the route and a routable replica has a free
  slot → the least-loaded one, ``outstanding += 1``, and the party's turn stamped
  (``FairQueue.admitted``); nothing else;
- no routable replica (not already tried) → ``NO_REPLICA`` (the caller answers 503/504 as before);
- else the request waits in the route's ``queue`` (``core.fair_queue``: round-robin over tenants on
  a public route, over keys on a private one; FIFO within each). Bounds (``QueueBounds``): a queue of
  ``max_length`` takes no more (``QUEUE_FULL``, or ``PARTY_FILLS_QUEUE`` when every waiter is the
  caller's own tenant's/key's); a waiter gets a slot within ``max_wait_s`` or leaves (``QUEUE_TIMEOUT``);
  a client that disconnects leaves at once (``CLIENT_GONE``, nothing answered). Every
  ``RECHECK_S`` a waiter hands free slots over itself (a replica back from ejection frees slots
  without an event) and leaves with ``NO_REPLICA`` once the route has no replica left that is not
  draining (one ejected for a moment, or unhealthy while its supervisor restarts it, is waited for:
  a newcomer meanwhile gets 503 at once, as without a queue).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Hashable
from dataclasses import dataclass

from zhisuan.core.fair_queue import refusal
from zhisuan.gateway.http import HttpConnection
from zhisuan.gateway.metrics import GatewayMetrics
from zhisuan.gateway.openai_body import error_body
from zhisuan.gateway.router import ModelRoute, Replica, Waiter

NO_REPLICA, QUEUE_FULL, PARTY_FILLS_QUEUE, QUEUE_TIMEOUT, CLIENT_GONE = range(5)
RECHECK_S = 1.0
# Retry-After of a request refused by a full queue or one that waited its longest there.
QUEUE_RETRY_S = 2


@dataclass(frozen=True)
class QueueBounds:
    """Per route and gateway: waiters at most, and seconds one may wait for a slot."""

    max_length: int = 1000
    max_wait_s: float = 300.0


async def acquire(route: ModelRoute, party: Hashable, exclude: set[str], conn: HttpConnection,
                  bounds: QueueBounds, arrived: float) -> Replica | int:
    """A replica whose slot is now held, or one of the reasons above (see the module)."""
    replica = route.take_free(party, exclude)
    if replica is not None:
        return replica
    if not route.any_routable(exclude):
        return NO_REPLICA
    why = refusal(route.queue.length, route.queue.count(party), bounds.max_length)
    if why is not None:
        return QUEUE_FULL if why == "queue_full" else PARTY_FILLS_QUEUE
    return await _wait(route, party, exclude, conn, bounds, arrived)


async def _wait(route: ModelRoute, party: Hashable, exclude: set[str], conn: HttpConnection,
                bounds: QueueBounds, arrived: float) -> Replica | int:
    waiter = Waiter(asyncio.get_running_loop().create_future(), arrived, party, exclude)
    route.queue.push(party, waiter)
    route.hand_over()  # a slot may be free that no release announced (a replica back from ejection)

    def client_gone() -> None:
        if route.queue.remove(party, waiter):
            waiter.future.set_result(None)

    conn.on_lost = client_gone
    try:
        while not waiter.future.done():
            left = bounds.max_wait_s - (time.monotonic() - arrived)
            if left <= 0:
                return _leave(route, waiter, QUEUE_TIMEOUT)
            await asyncio.wait((waiter.future,), timeout=min(left, RECHECK_S))
            if not waiter.future.done():
                route.hand_over()
                if not waiter.future.done() and not route.may_come_back():
                    return _leave(route, waiter, NO_REPLICA)
    except asyncio.CancelledError:
        if _leave(route, waiter, CLIENT_GONE) != CLIENT_GONE:  # handed a slot just now: give it back
            replica = waiter.future.result()
            assert replica is not None
            route.release(replica)
        raise
    finally:
        if conn.on_lost is client_gone:
            conn.on_lost = None
    replica = waiter.future.result()
    if replica is None or conn.closed:  # gone while waiting, or just after being handed a slot
        if replica is not None:
            route.release(replica)
        return CLIENT_GONE
    return replica


def _leave(route: ModelRoute, waiter: Waiter, why: int) -> int:
    """Out of the queue with ``why``, unless a slot was handed over meanwhile (then -1: keep it)."""
    if route.queue.remove(waiter.party, waiter):
        waiter.future.set_result(None)
        return why
    return -1 if waiter.future.done() and waiter.future.result() is not None else why


def answer_refusal(conn: HttpConnection, metrics: GatewayMetrics, model: str, label: str, why: int,
                   bounds: QueueBounds) -> None:
    """The client's answer (OpenAI's error shape, ``retry-after``) and the refusal's count, for every
    reason but ``NO_REPLICA``; a client that left gets nothing (it is gone)."""
    retry = b"retry-after: %d\r\n" % QUEUE_RETRY_S
    if why == CLIENT_GONE:
        metrics.reject(label, "client_gone_while_queued")
    elif why == PARTY_FILLS_QUEUE:
        conn.respond(429, error_body(f"Your requests alone fill the queue of model '{model}'; retry after "
                                     f"{QUEUE_RETRY_S} s.", "requests", "rate_limit_exceeded"), extra=retry)
        metrics.reject(label, "queue_full_own")
    elif why == QUEUE_FULL:
        conn.respond(503, error_body(f"The queue of model '{model}' is full; try again later.",
                                     "service_unavailable", "queue_full"), extra=retry)
        metrics.reject(label, "queue_full")
    else:
        conn.respond(503, error_body(f"The queue of model '{model}' did not free a slot within "
                                     f"{bounds.max_wait_s:g} s; try again later.", "service_unavailable",
                                     "queue_timeout"), extra=retry)
        metrics.reject(label, "queue_timeout")
