"""Registrations applied in batches (``inventory.registrar``): the same answers, rows and audit as one at
a time, each request's error its own, re-registration idempotent and cheap (issue 15, item 4)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event, select, update

from tests.api.conftest import Api, h100_node
from zhisuan.errors import Forbidden, InvalidInput, Unauthenticated
from zhisuan.identity.models import ApiKey, AuditEvent
from zhisuan.inventory.models import Device, Node
from zhisuan.inventory.registrar import Pending, Registrar
from zhisuan.inventory.schemas import NodeRegister
from zhisuan.store.base import transaction


def new_keys(world: Api, count: int) -> list[str]:
    return [world.ok("POST", "/sites/s1/agent-keys", "operator", {})["key"] for _ in range(count)]


def registrar(world: Api) -> Registrar:
    state = world.client.app.state  # type: ignore[attr-defined]
    return Registrar(state.ctx, state.catalog)


def pending(key: str, body: dict[str, Any]) -> Pending:
    return Pending(key, NodeRegister.model_validate(body), "127.0.0.1")


def outcome(item: Pending) -> Any:
    error = item.answer.exception()
    return type(error) if error is not None else item.answer.result().status


def test_one_batch_answers_each_registration_on_its_own(world: Api) -> None:
    k1, k2, k3 = new_keys(world, 3)
    faulty = h100_node("gpu-b", 2, healthy=lambda i: i != 1)
    unknown_model = h100_node("gpu-c", 1)
    unknown_model["devices"][0]["model"] = "warp-drive"
    batch = [pending(k1, h100_node("gpu-a", 2)), pending(k2, faulty), pending(k3, unknown_model),
             pending(k1, h100_node("gpu-z", 2)),  # the same key, another node: refused, it is gpu-a's now
             pending(k3[:-4] + "AAAA", h100_node("gpu-d", 1))]  # a wrong secret
    registrar(world).apply(batch)

    assert [outcome(item) for item in batch] == ["ready", "ready", InvalidInput, Forbidden, Unauthenticated]
    nodes = {node["name"]: node for node in world.ok("GET", "/nodes", "operator")}
    assert sorted(nodes) == ["gpu-a", "gpu-b"]
    assert [d["available"] for d in nodes["gpu-a"]["devices"]] == [True, True]
    assert nodes["gpu-b"]["cordon_reason"] is not None  # the faulty device took the full path: cordoned
    assert batch[0].answer.result().node_id == nodes["gpu-a"]["id"]
    with transaction(world.client.app.state.ctx.sessions) as session:  # type: ignore[attr-defined]
        audited = session.execute(select(AuditEvent.action, AuditEvent.object_ref, AuditEvent.detail)
                                  .where(AuditEvent.object_type == "node").order_by(AuditEvent.id)).all()
        bound = {key_id: name for key_id, name in session.execute(select(ApiKey.key_id, ApiKey.node_name))}
    assert [tuple(row) for row in audited] == [("node.register", "s1/gpu-a", {"devices": 2}),
                                               ("node.register", "s1/gpu-b", {"devices": 2})]
    assert bound[k3.split("_")[1]] is None  # a refused registration binds nothing
    world.keys["k3"] = k3
    world.ok("POST", "/agent/register", "k3", h100_node("gpu-c", 1))


def test_the_same_node_twice_in_a_batch_registers_then_reregisters(world: Api) -> None:
    (key,) = new_keys(world, 1)
    batch = [pending(key, h100_node("gpu-a", 2)), pending(key, h100_node("gpu-a", 3))]
    registrar(world).apply(batch)
    assert [outcome(item) for item in batch] == ["ready", "ready"]
    node = world.ok("GET", "/nodes/s1/gpu-a", "operator")
    assert len(node["devices"]) == 3 and batch[0].answer.result().node_id == batch[1].answer.result().node_id


def count_statements(world: Api) -> list[str]:
    seen: list[str] = []
    engine = world.client.app.state.engine  # type: ignore[attr-defined]
    event.listen(engine, "before_cursor_execute", lambda _c, _cur, statement, *_: seen.append(statement))
    return seen


def test_reregistration_is_idempotent_and_costs_a_few_statements_per_batch(world: Api) -> None:
    keys = new_keys(world, 20)
    bodies = [h100_node(f"gpu-{n}", 4) for n in range(20)]
    first = [pending(key, body) for key, body in zip(keys, bodies, strict=True)]
    registrar(world).apply(first)
    sessions = world.client.app.state.ctx.sessions  # type: ignore[attr-defined]
    with transaction(sessions) as session:
        devices_before = session.execute(select(Device.id, Device.node_id, Device.index).order_by(Device.id)).all()
        # gpu-0 went quiet (the monitor marked it), gpu-1 was drained by its operator
        session.execute(update(Node).where(Node.name == "gpu-0").values(status="unreachable"))
        session.execute(update(Device).where(Device.node_id == first[0].answer.result().node_id)
                        .values(available=False))
    world.ok("PATCH", "/nodes/s1/gpu-1", "operator", {"drained": True})

    statements = count_statements(world)
    again = [pending(key, body) for key, body in zip(keys, bodies, strict=True)]
    registrar(world).apply(again)
    assert [item.answer.result().node_id for item in again] == [item.answer.result().node_id for item in first]
    # not ~8 statements per node: a few set-based ones for the whole batch
    assert len(statements) <= 12, "\n".join(statement[:90] for statement in statements)
    with transaction(sessions) as session:
        assert session.execute(select(Device.id, Device.node_id, Device.index).order_by(Device.id)).all() \
            == devices_before  # device rows kept (stable ids), none added
        actions = session.execute(select(AuditEvent.action).where(AuditEvent.action == "node.reregister")).all()
    assert len(actions) == 20
    nodes = {node["name"]: node for node in world.ok("GET", "/nodes", "operator")}
    assert nodes["gpu-0"]["status"] == "ready" and all(d["available"] for d in nodes["gpu-0"]["devices"])
    assert nodes["gpu-1"]["drained"] and not any(d["available"] for d in nodes["gpu-1"]["devices"])


@pytest.mark.parametrize("change", ["device_removed", "device_unhealthy"])
def test_a_reregistration_that_changes_devices_takes_the_full_path(world: Api, change: str) -> None:
    (key,) = new_keys(world, 1)
    registrar(world).apply([pending(key, h100_node("gpu-a", 3))])
    body = h100_node("gpu-a", 2) if change == "device_removed" else h100_node("gpu-a", 3, healthy=lambda i: i != 0)
    item = pending(key, body)
    registrar(world).apply([item])
    node = world.ok("GET", "/nodes/s1/gpu-a", "operator")
    assert item.answer.result().node_id == node["id"]
    if change == "device_removed":
        assert [d["index"] for d in node["devices"]] == [0, 1]
    else:
        assert node["cordon_reason"] is not None and not node["devices"][0]["available"]


def test_concurrent_registrations_through_the_route_all_land(world: Api) -> None:
    from concurrent.futures import ThreadPoolExecutor

    keys = new_keys(world, 12)
    headers = [{"Authorization": f"Bearer {key}"} for key in keys]

    def register(number: int) -> int:
        return int(world.client.post("/api/v1/agent/register", json=h100_node(f"gpu-{number}", 2),
                                     headers=headers[number]).status_code)

    with ThreadPoolExecutor(6) as pool:
        assert list(pool.map(register, range(12))) == [200] * 12
    assert sorted(node["name"] for node in world.ok("GET", "/nodes", "operator")) == \
        sorted(f"gpu-{n}" for n in range(12))


def test_new_nodes_cost_a_few_statements_per_batch_not_per_node_or_device(world: Api) -> None:
    """Twenty new nodes of four devices: a handful of set-based statements for the whole batch (the
    nodes, their devices, the audit rows and the keys' binding one statement each), every row written."""
    keys = new_keys(world, 20)
    statements = count_statements(world)
    batch = [pending(key, h100_node(f"gpu-{n}", 4)) for n, key in enumerate(keys)]
    registrar(world).apply(batch)
    assert [outcome(item) for item in batch] == ["ready"] * 20
    assert len(statements) <= 10, "\n".join(statement[:90] for statement in statements)
    with transaction(world.client.app.state.ctx.sessions) as session:  # type: ignore[attr-defined]
        assert len(session.execute(select(Device.node_id)).all()) == 80
        bound = dict(session.execute(select(ApiKey.key_id, ApiKey.node_name)).all())
        registered = session.execute(select(AuditEvent.object_ref).where(AuditEvent.action == "node.register")).all()
    assert [bound[key.split("_")[1]] for key in keys] == [f"gpu-{n}" for n in range(20)]
    assert sorted(ref for (ref,) in registered) == sorted(f"s1/gpu-{n}" for n in range(20))
