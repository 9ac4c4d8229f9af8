"""The gateway's own queue in front of replicas' slots (admission.py, router.ModelRoute): never more in
flight than slots, a freed slot to the next waiter in fair order, bounds, and a client that leaves.

The routes, replicas, futures and HTTP connections are the real ones; no engine is needed (a slot is
taken and given back as proxy.py does)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from zhisuan.gateway.admission import (
    CLIENT_GONE,
    NO_REPLICA,
    PARTY_FILLS_QUEUE,
    QUEUE_FULL,
    QUEUE_TIMEOUT,
    QueueBounds,
    acquire,
)
from zhisuan.gateway.discovery import ReplicaDiscovery
from zhisuan.gateway.http import HttpConnection, Request
from zhisuan.gateway.router import Replica, Router, Waiter


async def _no_handler(conn: HttpConnection, req: Request) -> None:
    pass


def fresh() -> HttpConnection:
    return HttpConnection(_no_handler)


def route_with(*slots: int | None) -> tuple[Router, Any]:
    router = Router()
    for i, n in enumerate(slots):
        router.add_replica("m", f"r{i}", "127.0.0.1", 1, slots=n)
    return router, router.get("m")


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coro)


# Operations: a request of party p arrives, or the k-th request holding a slot completes.
operations = st.lists(st.one_of(st.tuples(st.just("arrive"), st.integers(0, 2)),
                                st.tuples(st.just("complete"), st.integers(0, 20))), max_size=80)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 3), min_size=1, max_size=3), operations)
def test_slots_are_never_exceeded_and_never_left_idle_while_someone_waits(slots: list[int],
                                                                          ops: list[tuple[str, int]]) -> None:
    async def scenario() -> None:
        _, route = route_with(*slots)
        loop = asyncio.get_running_loop()
        holding: list[tuple[Replica, int]] = []  # (replica, party) per request holding a slot
        waiting: list[Waiter] = []
        for op, arg in ops:
            if op == "arrive":  # what acquire does, without awaiting
                free = route.pick() if not route.queue.length else None
                if free is not None:
                    free.outstanding += 1
                    holding.append((free, arg))
                else:
                    w = Waiter(loop.create_future(), 0.0, arg, set())
                    route.queue.push(arg, w)
                    waiting.append(w)
                    route.hand_over()
            elif holding:
                replica, _ = holding.pop(arg % len(holding))
                route.release(replica)
            for w in [w for w in waiting if w.future.done()]:
                waiting.remove(w)
                holding.append((w.future.result(), w.party))
            assert all(r.outstanding <= r.slots for r in route.replicas)
            assert sum(r.outstanding for r in route.replicas) == len(holding)
            if route.queue.length:  # work-conserving: someone waits only when every slot is taken
                assert all(r.outstanding == r.slots for r in route.replicas)
            assert route.queue.length == len(waiting)

    run(scenario())


def test_a_freed_slot_goes_round_robin_not_first_come() -> None:
    """One slot; A took it at once and queues three more, then B queues one: B is next, not last."""
    async def scenario() -> list[str]:
        _, route = route_with(1)
        conn = HttpConnection(_no_handler)
        bounds = QueueBounds(max_length=10, max_wait_s=10)
        first = await acquire(route, "A", set(), conn, bounds, time.monotonic())
        assert isinstance(first, Replica)
        served: list[str] = []

        async def request(party: str, name: str) -> None:
            got = await acquire(route, party, set(), fresh(), bounds, time.monotonic())
            assert isinstance(got, Replica)
            served.append(name)
            await asyncio.sleep(0)
            route.release(got)

        tasks = [asyncio.ensure_future(request("A", f"a{i}")) for i in (2, 3, 4)]
        await asyncio.sleep(0)
        tasks.append(asyncio.ensure_future(request("B", "b1")))
        await asyncio.sleep(0)
        assert route.queue.length == 4
        route.release(first)
        await asyncio.gather(*tasks)
        return served

    assert run(scenario()) == ["b1", "a2", "a3", "a4"]


def test_bounds_full_queue_own_queue_and_longest_wait() -> None:
    async def scenario() -> None:
        _, route = route_with(1)
        bounds = QueueBounds(max_length=2, max_wait_s=0.3)
        conn = HttpConnection(_no_handler)
        holder = await acquire(route, "A", set(), conn, bounds, time.monotonic())
        assert isinstance(holder, Replica)
        now = time.monotonic()
        a_waits = [asyncio.ensure_future(acquire(route, "A", set(), HttpConnection(_no_handler), bounds, now))
                   for _ in range(2)]
        await asyncio.sleep(0)
        assert route.queue.length == 2
        # A alone fills the queue: its own next request is refused (429); B's is refused as overload (503)
        # only once others wait too — here B finds it full of A's: 503 (it is not B's doing).
        assert await acquire(route, "A", set(), conn, bounds, now) == PARTY_FILLS_QUEUE
        assert await acquire(route, "B", set(), conn, bounds, now) == QUEUE_FULL
        assert await asyncio.gather(*a_waits) == [QUEUE_TIMEOUT, QUEUE_TIMEOUT]  # nobody freed the slot
        assert route.queue.length == 0 and holder.outstanding == 1

    run(scenario())


def test_a_client_that_disconnects_while_queued_leaves_at_once_and_takes_no_slot() -> None:
    async def scenario() -> None:
        _, route = route_with(1)
        bounds = QueueBounds(max_length=10, max_wait_s=30)
        holder = await acquire(route, "A", set(), fresh(), bounds, time.monotonic())
        assert isinstance(holder, Replica)
        leaving = HttpConnection(_no_handler)
        staying = HttpConnection(_no_handler)
        gone = asyncio.ensure_future(acquire(route, "B", set(), leaving, bounds, time.monotonic()))
        kept = asyncio.ensure_future(acquire(route, "C", set(), staying, bounds, time.monotonic()))
        await asyncio.sleep(0)
        leaving.connection_lost(None)
        assert route.queue.length == 1  # out of the queue in the callback itself
        assert await asyncio.wait_for(gone, 1.0) == CLIENT_GONE
        route.release(holder)
        got = await asyncio.wait_for(kept, 1.0)
        assert got is holder and holder.outstanding == 1  # the slot went to C, not to the one who left
        assert staying.on_lost is None  # the queue's callback is not left on the connection

    run(scenario())


def test_waiters_of_a_route_whose_replicas_all_left_are_told_so() -> None:
    async def scenario() -> None:
        router, route = route_with(1)
        bounds = QueueBounds(max_length=10, max_wait_s=30)
        holder = await acquire(route, "A", set(), fresh(), bounds, time.monotonic())
        assert isinstance(holder, Replica)
        waiting = asyncio.ensure_future(acquire(route, "B", set(), fresh(), bounds, time.monotonic()))
        await asyncio.sleep(0)
        router.drain("r0")
        assert await asyncio.wait_for(waiting, 3.0) == NO_REPLICA

    run(scenario())


def test_uncapped_replicas_never_queue_and_new_replicas_take_waiters_at_once() -> None:
    async def scenario() -> None:
        router, route = route_with(None)
        bounds = QueueBounds()
        conn = HttpConnection(_no_handler)
        held = [await acquire(route, "A", set(), conn, bounds, time.monotonic()) for _ in range(50)]
        assert all(isinstance(r, Replica) for r in held) and route.queue.length == 0
        router2, capped = route_with(1)
        first = await acquire(capped, "A", set(), conn, bounds, time.monotonic())
        waiting = asyncio.ensure_future(acquire(capped, "B", set(), fresh(), bounds, time.monotonic()))
        await asyncio.sleep(0)
        added = router2.add_replica("m", "r-new", "127.0.0.1", 2, slots=1)
        assert await asyncio.wait_for(waiting, 0.5) is added and first is not added

    run(scenario())


def test_discovery_caps_a_replica_at_its_listed_slots_and_at_one_when_unsaid() -> None:
    router = Router()
    discovery = ReplicaDiscovery(router, fetch=None)  # type: ignore[arg-type]  # apply() only

    def listed(**extra: Any) -> dict[str, Any]:
        return {"id": "m@1-0", "model": "m", "host": "10.0.0.7", "port": 9000, "secret": "s", **extra}

    discovery.apply({"version": "1", "models": ["m"], "replicas": [listed(slots=4)]})
    assert router.by_id["m@1-0"].slots == 4
    discovery.apply({"version": "2", "models": ["m"], "replicas": [listed(slots=2)]})  # relaunched, same address
    assert router.by_id["m@1-0"].slots == 2
    discovery.apply({"version": "3", "models": ["m"], "replicas": [listed()]})  # an older control plane
    assert router.by_id["m@1-0"].slots == 1


def test_queue_lengths_never_name_a_private_model() -> None:
    async def scenario() -> dict[str, int]:
        router = Router()
        router.add_replica("public-m", "pub-0", "127.0.0.1", 1, slots=1)
        router.add_replica("secret-project", "acme-0", "127.0.0.1", 2, slots=1, tenant_id=7)
        router.add_replica("other-secret", "beta-0", "127.0.0.1", 3, slots=1, tenant_id=8)
        loop = asyncio.get_running_loop()
        for route in (router.resolve("secret-project", 7), router.resolve("other-secret", 8)):
            route.queue.push("key-1", Waiter(loop.create_future(), time.monotonic(), "key-1", set()))
        return router.queue_lengths()

    assert run(scenario()) == {"public-m": 0, "private": 2}


def test_waiters_wait_through_an_ejection_and_get_the_slot_when_it_ends() -> None:
    async def scenario() -> None:
        _, route = route_with(1)
        bounds = QueueBounds(max_length=10, max_wait_s=30)
        holder = await acquire(route, "A", set(), fresh(), bounds, time.monotonic())
        assert isinstance(holder, Replica)
        waiting = asyncio.ensure_future(acquire(route, "B", set(), fresh(), bounds, time.monotonic()))
        await asyncio.sleep(0)
        holder.ejected_until = time.monotonic() + 0.5  # a failed connection: out for a moment
        route.release(holder)  # the slot is free, but the replica takes nothing now
        assert await acquire(route, "C", set(), fresh(), bounds, time.monotonic()) == NO_REPLICA  # newcomer: 503
        assert not waiting.done()
        assert await asyncio.wait_for(waiting, 3.0) is holder  # at the recheck after the ejection

    run(scenario())
