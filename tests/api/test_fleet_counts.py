"""The counts the database keeps (migration 0022, ``inventory.fleet_counts``) always equal a full
recount of the node and device rows, whoever changed them and however: ORM flushes, bulk inserts of
several nodes and devices in one statement, raw-SQL updates of status, health and availability,
devices moved between nodes, nodes moved between sites, deletes by the ORM (devices first) and by the
database's cascade (node first), a rolled-back transaction, folds. Hypothesis draws the sequences;
after every step the counts read like the summary and ``/sites`` read them match the recount.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, insert, select, text, update
from sqlalchemy.orm import Session, selectinload

from tests.api.conftest import Api, h100_node
from zhisuan.identity.access import Principal
from zhisuan.inventory import fleet_counts
from zhisuan.inventory.models import Device, Node, Site
from zhisuan.store.base import transaction

OPERATOR = Principal(user_id=1, username="op", role="operator")
MODELS = ("h100-sxm", "a100-sxm4-80gb")
HEALTHS = ("healthy", "degraded", "failed")
STATUSES = ("ready", "unreachable", "registering")
NAMES = itertools.count()


def recount(session: Session, principal: Principal) -> tuple[dict[str, int], Counter[tuple[Any, ...]]]:
    """Nodes per status and devices per (model, available, health), scanning every row."""
    scope = Site.provider_id == principal.provider_id if principal.role == "provider" else True
    statuses = dict(session.execute(select(Node.status, func.count()).join(Site, Site.id == Node.site_id)
                                    .where(scope).group_by(Node.status)).all())
    devices = Counter({tuple(row[:3]): row[3] for row in session.execute(
        select(Device.model, Device.available, Device.health, func.count()).join(Node, Node.id == Device.node_id)
        .join(Site, Site.id == Node.site_id).where(scope).group_by(Device.model, Device.available, Device.health))})
    return statuses, devices


DEVICES_OF_SITES = select(func.count()).select_from(Device).join(Node)
SITE_RECOUNT = (select(func.count()).select_from(Node), DEVICES_OF_SITES, DEVICES_OF_SITES.where(Device.available),
                DEVICES_OF_SITES.where(Device.health != "healthy"))


def assert_counts_current(sessions: Any) -> None:
    with transaction(sessions) as session:
        site_ids = list(session.execute(select(Site.id)).scalars())
        for principal in (OPERATOR, Principal(user_id=2, username="p1", role="provider", provider_id=1)):
            statuses, devices = recount(session, principal)
            assert fleet_counts.node_statuses(session, principal) == statuses
            kept = Counter({(m, a, h): n for m, a, h, n in fleet_counts.device_counts(session, principal)})
            assert kept == devices
        per_site = {sid: fleet_counts.SiteCounts(*(session.execute(query.where(Node.site_id == sid)).scalar_one()
                                                   for query in SITE_RECOUNT)) for sid in site_ids}
        assert fleet_counts.site_counts(session, site_ids) == per_site
        nodes, devices_by_site = fleet_counts.exported_gauges(session)  # what /metrics exports
        assert sorted(nodes) == sorted(session.execute(  # the scrape's former scan
            select(Site.name, Node.status, func.count(Node.id)).join(Node.site).group_by(Site.name, Node.status)).all())
        keys = (Site.name, Device.model, Device.health, Device.available)
        assert sorted(devices_by_site) == sorted(session.execute(
            select(*keys, func.count(Device.id)).join(Device.node).join(Node.site).group_by(*keys)).all())


def node_rows(rng: random.Random, site_ids: list[int], count: int) -> list[dict[str, Any]]:
    return [{"site_id": rng.choice(site_ids), "name": f"n-{next(NAMES)}", "status": rng.choice(STATUSES),
             "registered_at": datetime.now(UTC), "labels": {}} for _ in range(count)]


def device_rows(rng: random.Random, node_ids: list[int]) -> list[dict[str, Any]]:
    return [{"node_id": node_id, "index": i, "model": rng.choice(MODELS), "memory_mib": 81920,
             "health": rng.choice(HEALTHS), "available": rng.random() < 0.7}
            for node_id in node_ids for i in range(rng.randint(0, 4))]


def add_nodes(session: Session, rng: random.Random, site_ids: list[int], node_ids: list[int]) -> None:
    """Several nodes, then all their devices, each in one INSERT statement."""
    ids = list(session.execute(insert(Node).returning(Node.id), node_rows(rng, site_ids, rng.randint(1, 4))).scalars())
    devices = device_rows(rng, ids)
    if devices:
        session.execute(insert(Device), devices)


def add_node_by_orm(session: Session, rng: random.Random, site_ids: list[int], node_ids: list[int]) -> None:
    node = Node(**node_rows(rng, site_ids, 1)[0])
    node.devices = [Device(**{k: v for k, v in row.items() if k != "node_id"}) for row in device_rows(rng, [0])]
    session.add(node)


def set_status(session: Session, rng: random.Random, site_ids: list[int], node_ids: list[int]) -> None:
    chosen = rng.sample(node_ids, min(len(node_ids), 3))
    session.execute(update(Node).where(Node.id.in_(chosen)).values(status=rng.choice(STATUSES)))


def set_health(session: Session, rng: random.Random, site_ids: list[int], node_ids: list[int]) -> None:
    for device in session.execute(select(Device).where(Device.node_id.in_(node_ids[:8]))).scalars():
        if rng.random() < 0.5:
            device.health, device.available = rng.choice(HEALTHS), rng.random() < 0.5


def flip_available(session: Session, rng: random.Random, site_ids: list[int], node_ids: list[int]) -> None:
    if node_ids:
        session.execute(text("UPDATE devices SET available = NOT available, health = health WHERE node_id = :n"),
                        {"n": rng.choice(node_ids)})


def move_device(session: Session, rng: random.Random, site_ids: list[int], node_ids: list[int]) -> None:
    device = session.execute(select(Device).order_by(Device.id).limit(1).offset(rng.randint(0, 5))).scalar()
    if device is not None and node_ids:
        # an index no other device can hold, (node_id, index) being unique: a random one collided when a later
        # draw repeated an earlier one's seed after a delete had shifted which device the offset picks
        device.node_id, device.index = rng.choice(node_ids), 1_000_000 + device.id


def move_node(session: Session, rng: random.Random, site_ids: list[int], node_ids: list[int]) -> None:
    if node_ids:
        session.execute(text("UPDATE nodes SET site_id = :s, status = status WHERE id = :n"),
                        {"s": rng.choice(site_ids), "n": rng.choice(node_ids)})


def delete_by_orm(session: Session, rng: random.Random, site_ids: list[int], node_ids: list[int]) -> None:
    if node_ids:
        node = session.execute(select(Node).options(selectinload(Node.devices))
                               .where(Node.id == rng.choice(node_ids))).scalar_one()
        session.delete(node)  # the ORM deletes the devices first


def delete_by_cascade(session: Session, rng: random.Random, site_ids: list[int], node_ids: list[int]) -> None:
    if node_ids:
        session.execute(text("DELETE FROM nodes WHERE id = :n"), {"n": rng.choice(node_ids)})


def delete_devices(session: Session, rng: random.Random, site_ids: list[int], node_ids: list[int]) -> None:
    session.execute(text("DELETE FROM devices WHERE id % 5 = :r"), {"r": rng.randint(0, 4)})


def fold(session: Session, rng: random.Random, site_ids: list[int], node_ids: list[int]) -> None:
    fleet_counts.fold(session, rng.choice((fleet_counts.NODE_COUNTS, fleet_counts.DEVICE_COUNTS)))


STEPS = (add_nodes, add_node_by_orm, set_status, set_health, flip_available, move_device, move_node,
         delete_by_orm, delete_by_cascade, delete_devices, fold)


def run(sessions: Any, step: Any, seed: int, commit: bool) -> None:
    rng = random.Random(seed)
    session = sessions()
    try:
        site_ids = list(session.execute(select(Site.id).order_by(Site.id)).scalars())
        node_ids = list(session.execute(select(Node.id).order_by(Node.id)).scalars())
        step(session, rng, site_ids, node_ids)
        session.flush()
        session.commit() if commit else session.rollback()
    finally:
        session.close()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(st.tuples(st.sampled_from(STEPS), st.integers(0, 2**32)), min_size=1, max_size=8))
def test_the_kept_counts_equal_a_recount_after_any_changes(world: Api, steps: list[Any]) -> None:
    sessions = world.client.app.state.ctx.sessions  # type: ignore[attr-defined]
    for step, seed in steps:
        run(sessions, step, seed, commit=seed % 7 != 0)  # one in seven rolled back
        assert_counts_current(sessions)


def test_registration_beats_and_deletes_through_the_api_keep_sites_and_summary_current(world: Api) -> None:
    sessions = world.client.app.state.ctx.sessions  # type: ignore[attr-defined]
    world.ok("POST", "/agent/register", "agent1", h100_node("gpu-a", 8, healthy=lambda i: i != 3))
    world.ok("POST", "/agent/register", "agent2", h100_node("gpu-b", 4))
    sites = {site["name"]: site for site in world.ok("GET", "/sites", "operator")}
    assert [sites["s1"][f] for f in ("nodes", "accelerators", "accelerators_unhealthy")] == [1, 8, 1]
    assert (sites["s2"]["nodes"], sites["s2"]["accelerators"]) == (1, 4)
    summary = world.ok("GET", "/fleet/summary", "operator")
    assert (summary["nodes"], summary["accelerators"], summary["by_model"][0]["unhealthy"]) == (2, 12, 1)
    assert world.ok("GET", "/sites/s1", "operator")["accelerators"] == 8
    world.ok("DELETE", "/nodes/s1/gpu-a", "operator")
    assert world.ok("GET", "/fleet/summary", "operator")["accelerators"] == 4
    assert world.ok("GET", "/sites/s1", "operator")["nodes"] == 0
    assert_counts_current(sessions)


def test_a_reader_folds_many_rows_into_one_per_key(world: Api) -> None:
    sessions = world.client.app.state.ctx.sessions  # type: ignore[attr-defined]
    with transaction(sessions) as session:
        site_id = session.execute(select(Site.id).order_by(Site.id)).scalars().first()
        for _ in range(fleet_counts.FOLD_AFTER_ROWS + 1):  # one row appended per changed node
            session.execute(insert(Node), [{"site_id": site_id, "name": f"n{_}", "status": "ready", "labels": {}}])
    with transaction(sessions) as session:
        assert fleet_counts.node_statuses(session, OPERATOR) == {"ready": fleet_counts.FOLD_AFTER_ROWS + 1}
    with transaction(sessions) as session:
        assert session.execute(select(func.count()).select_from(fleet_counts.NODE_COUNTS)).scalar_one() == 1
    assert_counts_current(sessions)
