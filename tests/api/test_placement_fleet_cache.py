"""The process's fleet cache always answers what a fresh build answers, whoever changed the database.

A random sequence of ledger changes (device shares held and released, CPU/memory holds, holds that
end by time, a node drained) — after every step the cached snapshot equals the one rebuilt from
scratch and a preview decides as ``core.placement.place`` does on it. Changes made through another
engine (another API process) and rows inserted with raw SQL are seen; a heartbeat that changes
nothing placement reads does not invalidate the cache.
"""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

from sqlalchemy import select, text, update
from sqlalchemy.orm import Session, selectinload

from tests.api.conftest import Api, Clock, h100_node
from zhisuan.core.placement import PlacementRequest, place
from zhisuan.identity.models import Tenant
from zhisuan.inventory.models import Node
from zhisuan.ledger.models import Allocation
from zhisuan.ledger.service import Window, hold_cpu, hold_devices, release
from zhisuan.placement.fleet_cache import FLEET_CACHE
from zhisuan.placement.service import live_snapshot, rebuilt_snapshot
from zhisuan.store.base import make_engine, make_session_factory, transaction


def app_parts(world: Api) -> tuple[Any, Any]:
    app = world.client.app  # type: ignore[attr-defined]
    return app.state.ctx.sessions, app.state.catalog


def register(world: Api, count: int) -> None:
    for i in range(count):  # one agent key per node
        site = f"s{1 + i % 2}"
        world.keys[f"node-{i}"] = world.ok("POST", f"/sites/{site}/agent-keys", "operator", {})["key"]
        world.ok("POST", "/agent/register", f"node-{i}", h100_node(f"gpu-{i}", 4))


def the_node(session: Session) -> Node:
    return session.execute(select(Node).options(selectinload(Node.devices), selectinload(Node.site))).scalars().one()


def assert_cache_is_fresh(sessions: Any, catalog: Any, clock: Clock) -> None:
    with transaction(sessions) as session:
        cached = live_snapshot(session, catalog, clock.now)
    with transaction(sessions) as session:
        assert cached == rebuilt_snapshot(session, catalog, clock.now)
        for request in (PlacementRequest(8000, 0, 1, 500), PlacementRequest(4000, 0, 2), PlacementRequest(96000, 0, 0)):
            with FLEET_CACHE.fleet(session, catalog, clock.now) as fleet:
                assert fleet.place(request) == place(cached, request)


def random_step(session: Session, rng: random.Random, clock: Clock) -> None:
    nodes = session.execute(select(Node).options(selectinload(Node.devices), selectinload(Node.site))
                            .order_by(Node.id)).scalars().all()
    tenants = session.execute(select(Tenant.id).order_by(Tenant.id)).scalars().all()
    node, tenant = rng.choice(nodes), rng.choice(tenants)
    live = session.execute(select(Allocation).where(Allocation.end.is_(None))).scalars().all()
    action = rng.choice(["share", "whole", "cpu", "release", "expiring", "clock", "drain"])
    try:
        if action == "share":
            hold_devices(session, tenant, node, [rng.randrange(4)], rng.choice([250, 500]), Window(clock.now), "manual")
        elif action == "whole":
            hold_devices(session, tenant, node, rng.sample(range(4), 2), 1000, Window(clock.now), "manual")
        elif action == "cpu":
            hold_cpu(session, tenant, node, rng.choice([4000, 16000]), 1024, Window(clock.now), "manual")
        elif action == "expiring":
            hold_devices(session, tenant, node, [rng.randrange(4)], 1000,
                         Window(clock.now, clock.now + timedelta(minutes=5)), "manual")
        elif action == "release" and live:
            release(session, rng.sample(live, min(len(live), 2)), clock.now)
        elif action == "clock":
            clock.advance(minutes=rng.choice([1, 6]))
        elif action == "drain":
            node.drained = not node.drained
    except Exception as error:  # a hold the ledger refuses (device full) is part of the sequence
        if type(error).__name__ != "Conflict":
            raise


def test_cache_equals_a_fresh_build_after_random_ledger_changes(world: Api, clock: Clock) -> None:
    register(world, 4)
    sessions, catalog = app_parts(world)
    rng = random.Random(7)
    before, reloads, deltas = FLEET_CACHE.stats.rebuilds, FLEET_CACHE.stats.updates, FLEET_CACHE.stats.deltas
    for _ in range(40):
        with transaction(sessions) as session:
            random_step(session, rng, clock)
        assert_cache_is_fresh(sessions, catalog, clock)
    # mostly incremental: rebuilds only when the inventory changed (drains), not per decision
    assert FLEET_CACHE.stats.rebuilds - before < 20 and FLEET_CACHE.stats.hits > 40
    # ledger changes and holds ending by time are read as deltas (the changed nodes' holds), never in full
    assert FLEET_CACHE.stats.deltas - deltas > 5 and FLEET_CACHE.stats.updates == reloads


def test_changes_from_another_process_and_raw_rows_are_seen(world: Api, clock: Clock) -> None:
    register(world, 2)
    sessions, catalog = app_parts(world)
    assert_cache_is_fresh(sessions, catalog, clock)
    url = world.client.app.state.engine.url.render_as_string(hide_password=False)  # type: ignore[attr-defined]
    other = make_engine(url)  # another API process: its own engine, the same database
    try:
        with transaction(make_session_factory(other)) as session:
            node = session.execute(select(Node).options(selectinload(Node.devices), selectinload(Node.site))
                                   .order_by(Node.id)).scalars().first()
            assert node is not None
            tenant = session.execute(select(Tenant.id)).scalars().first()
            hold_devices(session, tenant, node, [0, 1, 2, 3], 1000, Window(clock.now), "manual")
        assert_cache_is_fresh(sessions, catalog, clock)
        with transaction(make_session_factory(other)) as session:  # a row written outside the ORM's hooks
            row = session.execute(select(Allocation)).scalars().first()
            assert row is not None
            session.execute(text("INSERT INTO allocations (tenant_id, provider_id, node_id, device_id, model, milli, "
                                 "cpu_milli, memory_mib, purpose, ref, billable, pricing_model, tier, term_months, "
                                 "start, created_at) SELECT tenant_id, provider_id, node_id, device_id + 4, model, "
                                 "500, 0, 0, purpose, ref, billable, pricing_model, tier, term_months, start, "
                                 "created_at FROM allocations WHERE id = :id"), {"id": row.id})
        assert_cache_is_fresh(sessions, catalog, clock)
        with transaction(make_session_factory(other)) as session:  # raw SQL that adds no row: ends, deletes
            session.execute(text("UPDATE allocations SET \"end\" = start WHERE id = :id"), {"id": row.id})
        assert_cache_is_fresh(sessions, catalog, clock)
        with transaction(make_session_factory(other)) as session:
            session.execute(text("DELETE FROM allocations WHERE milli = 500"))
        assert_cache_is_fresh(sessions, catalog, clock)
    finally:
        other.dispose()
    hits = FLEET_CACHE.stats.hits
    with transaction(sessions) as session:  # what a heartbeat writes: nothing placement reads
        session.execute(update(Node).values(last_heartbeat_at=clock.now))
    with transaction(sessions) as session:
        live_snapshot(session, catalog, clock.now)
    assert FLEET_CACHE.stats.hits == hits + 1


def test_own_uncommitted_changes_are_seen_by_their_session_only(world: Api, clock: Clock) -> None:
    register(world, 1)
    sessions, catalog = app_parts(world)
    with transaction(sessions) as session:
        node = the_node(session)
        tenant = session.execute(select(Tenant.id)).scalars().first()
        hold_devices(session, tenant, node, [0], 1000, Window(clock.now), "manual")
    assert_cache_is_fresh(sessions, catalog, clock)
    clock.advance(minutes=1)
    with transaction(sessions) as session:  # a release: an UPDATE, no new row
        release(session, session.execute(select(Allocation)).scalars().all(), clock.now)
        mine = live_snapshot(session, catalog, clock.now)
        assert [d.free_milli for d in mine.nodes[0].devices] == [1000] * 4
        with sessions() as outside:  # another request, meanwhile: the release is not committed yet
            theirs = live_snapshot(outside, catalog, clock.now)
            assert [d.free_milli for d in theirs.nodes[0].devices] == [0] + [1000] * 3
    assert_cache_is_fresh(sessions, catalog, clock)


def test_a_change_inside_a_savepoint_is_seen_after_the_commit(world: Api, clock: Clock) -> None:
    register(world, 1)
    sessions, catalog = app_parts(world)
    assert_cache_is_fresh(sessions, catalog, clock)
    with transaction(sessions) as session:
        node = the_node(session)
        tenant = session.execute(select(Tenant.id)).scalars().first()
        with session.begin_nested():
            hold_devices(session, tenant, node, [1], 500, Window(clock.now), "manual")
        node.drained = True
    assert_cache_is_fresh(sessions, catalog, clock)
    with transaction(sessions) as session:
        assert not live_snapshot(session, catalog, clock.now).nodes[0].healthy
