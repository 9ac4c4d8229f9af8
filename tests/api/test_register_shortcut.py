"""``POST /agent/register`` answered by the registration shortcut (``api.register_shortcut``): the same
answers as the route, concurrent registrations grouped into one registrar batch, each refused
registration refused alone with its field named, re-registration idempotent (issue 15)."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.api.conftest import Api, h100_node
from zhisuan.api.register_shortcut import RegisterShortcut
from zhisuan.identity.models import ApiKey
from zhisuan.inventory.models import Device, Node
from zhisuan.inventory.registrar import Registrar
from zhisuan.inventory.registration_body import plain_registration
from zhisuan.inventory.schemas import NodeRegister
from zhisuan.store.base import transaction

REGISTER = "/api/v1/agent/register"


def shortcut_of(world: Api) -> RegisterShortcut:
    """The app's registration layer (the middleware stack is built by the first request)."""
    layer: Any = world.client.app.middleware_stack  # type: ignore[attr-defined]
    while not isinstance(layer, RegisterShortcut):
        layer = layer.app
    return layer


def registrar_of(world: Api) -> Registrar:
    queue: Registrar = world.client.app.state.registrar  # type: ignore[attr-defined]
    return queue


def new_keys(world: Api, count: int) -> list[str]:
    return [world.ok("POST", "/sites/s1/agent-keys", "operator", {})["key"] for _ in range(count)]


def post(world: Api, key: str | None, body: Any, via_route: bool = False) -> Any:
    """A registration; ``via_route``: with a query string, which the shortcut leaves to the route."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return world.client.post(REGISTER + ("?via=route" if via_route else ""), json=body, headers=headers)


def answer_of(response: Any) -> tuple[int, bytes, dict[str, str]]:
    return response.status_code, response.content, dict(response.headers)


def test_the_shortcut_answers_as_the_route_does(world: Api) -> None:
    key, other = new_keys(world, 2)
    first = post(world, key, h100_node("gpu-a", 2))
    shortcut = shortcut_of(world)
    assert first.status_code == 200 and shortcut.answered == 1
    again_route, again_shortcut = post(world, key, h100_node("gpu-a", 2), via_route=True), post(
        world, key, h100_node("gpu-a", 2))
    assert answer_of(first) == answer_of(again_route) == answer_of(again_shortcut)
    assert shortcut.answered == 2 and first.json()["status"] == "ready"

    unknown_model = h100_node("gpu-b", 2)
    unknown_model["devices"][1]["model"] = "warp-drive"
    twice = h100_node("gpu-b", 2)
    twice["devices"][1]["index"] = 0
    refused: list[tuple[str, str | None, dict[str, Any], int, str | None]] = [
        ("another node for a bound key", key, h100_node("gpu-z", 1), 403, None),
        ("a wrong secret", other[:-4] + "AAAA", h100_node("gpu-b", 1), 401, None),
        ("no agent scope", world.keys["operator"], h100_node("gpu-b", 1), 403, None),
        ("an unknown model", other, unknown_model, 422, "devices.1.model"),
        ("a device index twice", other, twice, 422, "devices.1.index"),
    ]
    for case, who, body, status, field in refused:
        by_route, by_shortcut = post(world, who, body, via_route=True), post(world, who, body)
        assert answer_of(by_shortcut) == answer_of(by_route), case
        assert by_shortcut.status_code == status and by_shortcut.json()["error"]["field"] == field, case
    assert shortcut.answered == 2 + len(refused)

    passed_on = [(other, {**h100_node("gpu-b", 1), "cpu_cores": "8"}, 422, "cpu_cores"),  # the model names it
                 (None, h100_node("gpu-b", 1), 401, None)]  # no credential
    for who, body, status, field in passed_on:
        by_route, by_shortcut = post(world, who, body, via_route=True), post(world, who, body)
        assert answer_of(by_shortcut) == answer_of(by_route)
        assert by_shortcut.status_code == status and by_shortcut.json()["error"]["field"] == field
    assert shortcut.answered == 2 + len(refused)  # those went the whole way
    with transaction(world.client.app.state.ctx.sessions) as session:  # type: ignore[attr-defined]
        assert session.execute(select(Node.name)).scalars().all() == ["gpu-a"]  # nothing refused was written
        assert session.execute(select(ApiKey.node_name).where(ApiKey.key_id == other.split("_")[1])).scalar() is None


@contextmanager
def writes_held(world: Api) -> Iterator[None]:
    """Registrations' writes wait while this lasts: a transaction of another connection holds the
    agent keys' rows (PostgreSQL: ``FOR UPDATE``, which the registrar's key query waits for) or the
    database's write lock (SQLite: ``BEGIN IMMEDIATE``)."""
    engine = world.client.app.state.engine  # type: ignore[attr-defined]
    connection = engine.raw_connection()
    try:
        cursor = connection.cursor()
        if engine.dialect.name == "postgresql":
            cursor.execute("SELECT id FROM api_keys WHERE site_id IS NOT NULL FOR UPDATE")
        else:
            cursor.execute("BEGIN IMMEDIATE")
        yield
    finally:
        connection.rollback()
        connection.close()


def wait_until(condition: Any, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_concurrent_registrations_share_one_batch_and_a_bad_one_is_refused_alone(world: Api) -> None:
    keys = new_keys(world, 7)
    bodies = [h100_node(f"gpu-{n}", 8) for n in range(7)]
    bodies[4]["devices"][3]["model"] = "warp-drive"
    queue = registrar_of(world)
    with ThreadPoolExecutor(7) as pool:
        with writes_held(world):
            first = pool.submit(post, world, keys[0], bodies[0])
            wait_until(lambda: queue.applying and queue.waiting() == 0)  # gpu-0's batch waits on the lock
            rest = [pool.submit(post, world, key, body) for key, body in zip(keys[1:], bodies[1:], strict=True)]
            wait_until(lambda: queue.waiting() == 6)  # the others queued meanwhile
        answers = [first.result(), *(future.result() for future in rest)]
    assert list(queue.sizes)[-2:] == [1, 6]  # gpu-0 alone, then the six others in one batch
    assert [answer.status_code for answer in answers] == [200, 200, 200, 200, 422, 200, 200]
    assert answers[4].json()["error"]["field"] == "devices.3.model"
    assert shortcut_of(world).answered == 7
    node_ids = [answer.json()["node_id"] if answer.status_code == 200 else None for answer in answers]
    nodes = {node["name"]: node for node in world.ok("GET", "/nodes", "operator")}
    assert sorted(nodes) == sorted(f"gpu-{n}" for n in range(7) if n != 4)
    assert all(len(node["devices"]) == 8 and node["status"] == "ready" for node in nodes.values())
    assert [nodes[f"gpu-{n}"]["id"] for n in range(7) if n != 4] == [i for i in node_ids if i is not None]

    # Every agent again at once (a restart), the refused one with a body it may send: nothing moves.
    bodies[4] = h100_node("gpu-4", 8)
    sessions = world.client.app.state.ctx.sessions  # type: ignore[attr-defined]
    with transaction(sessions) as session:
        devices_before = session.execute(select(Device.id, Device.node_id, Device.index).order_by(Device.id)).all()
    with ThreadPoolExecutor(7) as pool:
        again = list(pool.map(lambda pair: post(world, *pair), zip(keys, bodies, strict=True)))
    assert [answer.status_code for answer in again] == [200] * 7
    assert [answer.json()["node_id"] for n, answer in enumerate(again) if n != 4] == [i for i in node_ids if i]
    with transaction(sessions) as session:
        devices_after = session.execute(select(Device.id, Device.node_id, Device.index).order_by(Device.id)).all()
        assert session.execute(select(func.count(Node.id))).scalar() == 7
    gpu4 = again[4].json()["node_id"]
    assert [row for row in devices_after if row[1] != gpu4] == devices_before  # the same device rows, by id
    assert sum(1 for row in devices_after if row[1] == gpu4) == 8


def test_many_registrations_at_once_all_land(world: Api) -> None:
    keys = new_keys(world, 40)
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda n: post(world, keys[n], h100_node(f"gpu-{n}", 8)), range(40)))
    assert [answer.status_code for answer in answers] == [200] * 40
    assert len({answer.json()["node_id"] for answer in answers}) == 40
    assert shortcut_of(world).answered == 40
    with transaction(world.client.app.state.ctx.sessions) as session:  # type: ignore[attr-defined]
        assert session.execute(select(func.count(Device.id))).scalar() == 320


def test_the_shortcut_leaves_to_the_route_what_it_cannot_answer_exactly(world: Api) -> None:
    (key,) = new_keys(world, 1)
    body = json.dumps(h100_node("gpu-a", 1)).encode()
    plain = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    cases = [({**plain, "Content-Type": "text/plain"}, body),  # not JSON for FastAPI: 422 from the route
             (plain, body + b"]"),  # not JSON
             ({"Authorization": f"Basic {key}", "Content-Type": "application/json"}, body)]
    for headers, content in cases:
        response = world.client.post(REGISTER, content=content, headers=headers)
        assert response.status_code in (401, 422), response.text
    assert shortcut_of(world).answered == 0
    assert world.client.post(REGISTER, content=body, headers=plain).status_code == 200
    assert shortcut_of(world).answered == 1


def agent_body() -> dict[str, Any]:
    return {"name": "gpu-a", "cpu_cores": 64, "memory_mib": 512_000, "labels": {"rack": "r1", "zone": "a/b"},
            "agent_version": "0.1.0",
            "devices": [{"index": 0, "uuid": "GPU-1", "model": "h100-sxm", "reported_name": "NVIDIA H100 80GB HBM3",
                         "memory_mib": 81559, "healthy": True, "health_detail": ""}]}


def variant(path: list[str | int], value: Any) -> dict[str, Any]:
    body = copy.deepcopy(agent_body())
    where: Any = body
    for step in path[:-1]:
        where = where[step]
    if value is KeyError:
        del where[path[-1]]
    else:
        where[path[-1]] = value
    return body


VARIANTS = [
    ([], None), (["name"], " gpu-a"), (["name"], "gpu-a\n"), (["name"], "-gpu"), (["name"], "g" * 128),
    (["name"], "g" * 129), (["name"], "gpu\x00a"), (["name"], 7), (["cpu_cores"], True), (["cpu_cores"], 8.0),
    (["cpu_cores"], -1), (["cpu_cores"], 100_001), (["memory_mib"], "512"), (["labels"], {}), (["labels"], None),
    (["labels"], {"": "x"}), (["labels"], {"-x": "y"}), (["labels"], {"k": " v"}), (["labels"], {"k": "v" * 256}),
    (["labels"], {f"k{n}": "v" for n in range(65)}), (["labels"], KeyError), (["agent_version"], None),
    (["agent_version"], KeyError), (["agent_version"], "v" * 33), (["devices"], []), (["devices"], KeyError),
    (["devices", 0, "index"], 1024), (["devices", 0, "index"], False), (["devices", 0, "model"], ""),
    (["devices", 0, "model"], " h100"), (["devices", 0, "uuid"], KeyError), (["devices", 0, "memory_mib"], None),
    (["devices", 0, "memory_mib"], 10_000_001), (["devices", 0, "healthy"], 1), (["devices", 0, "healthy"], False),
    (["devices", 0, "health_detail"], "ecc\u00a0"), (["devices", 0, "reported_name"], "Ｈ100 ünïcode"),
    (["devices", 0, "extra"], 1), (["extra"], 1), (["devices", 0], "gpu"),
]


@pytest.mark.parametrize(("path", "value"), VARIANTS)
def test_a_plain_body_is_taken_only_as_the_model_takes_it(path: list[str | int], value: Any) -> None:
    payload = variant(path, value) if path else agent_body()
    taken = plain_registration(copy.deepcopy(payload))
    try:
        validated: NodeRegister | None = NodeRegister.model_validate(copy.deepcopy(payload))
    except Exception:  # noqa: BLE001 — the model refuses it: so must the plain check
        validated = None
    if taken is not None:
        assert validated is not None
        assert taken == validated and taken.model_dump() == validated.model_dump()
        assert taken.model_fields_set == validated.model_fields_set
        assert [d.model_fields_set for d in taken.devices] == [d.model_fields_set for d in validated.devices]
    if not path:
        assert taken is not None  # the agent's own body is the plain shape


def test_the_real_agent_body_is_plain() -> None:
    from zhisuan.agent.detection import DetectedDevice
    from zhisuan.agent.host import registration

    devices = [DetectedDevice(index=i, uuid=f"GPU-{i}", reported_name="NVIDIA H100 80GB HBM3", model_key="h100-sxm",
                              memory_mib=81559, healthy=True, health_detail="", vendor="nvidia", tool="nvidia-smi")
               for i in range(8)]
    body = json.loads(json.dumps(registration("gpu-a", devices, {"rack": "r1"})))
    assert plain_registration(body) == NodeRegister.model_validate(body)


def test_registrations_and_the_route_share_one_registrar(world: Api) -> None:
    (key,) = new_keys(world, 1)
    assert post(world, key, h100_node("gpu-a", 1), via_route=True).status_code == 200
    assert post(world, key, h100_node("gpu-a", 1)).status_code == 200
    assert list(registrar_of(world).sizes) == [1, 1]  # the route's registration, then the shortcut's
