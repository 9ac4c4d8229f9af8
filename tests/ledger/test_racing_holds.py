"""Hundreds of racing holds through the real API: no device is ever held twice.

Requests run from many client threads at once (the app serves them from its thread pool, each with
its own session and transaction), so their check-then-write windows overlap. At most ``IN_FLIGHT``
are in flight: more would exhaust the app's connection pool while their sync dependencies hold every
worker thread (a starvation of the test set-up, not of the ledger). That is more than the app admits
at once (``max_inflight_api``): the rest wait in its admission queue and, on a loaded machine, may be
shed with 503 + Retry-After before doing anything; the clients here then retry as a real client does.
"""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tests.api.conftest import Api, h100_node
from tests.api.econ_setup import START, a800_node

RACERS = 200
IN_FLIGHT = 12


RETRIES_WHEN_SHED = 20


def call_honouring_retry_after(api: Api, method: str, path: str, body: dict[str, Any]) -> Any:
    """One request; a 503 (shed by admission control, nothing done) is retried after its Retry-After."""
    for _ in range(RETRIES_WHEN_SHED):
        response = api.call(method, path, "operator", body)
        if response.status_code != 503:
            return response
        time.sleep(float(response.headers.get("Retry-After", "1")))
    return response


def race(api: Api, bodies: list[tuple[str, str, dict[str, Any]]]) -> list[Any]:
    """Send every (method, path, body) from ``IN_FLIGHT`` threads at once; the final responses in order."""
    with ThreadPoolExecutor(max_workers=IN_FLIGHT) as pool:
        return list(pool.map(lambda item: call_honouring_retry_after(api, *item), bodies))


def held_per_device(api: Api) -> Counter[int]:
    held: Counter[int] = Counter()
    for row in api.ok("GET", "/allocations", "operator", limit=10000):
        if row["purpose"] != "contract" and row["end"] is None and row["device_index"] is not None:
            held[row["device_index"]] += row["milli"]
    return held


def test_racing_allocations_never_hold_a_device_twice(world: Api) -> None:
    world.ok("POST", "/agent/register", "agent1", h100_node("gpu-a", 8))
    bodies = [("POST", "/allocations", {"tenant": "acme" if n % 2 else "beta", "node": "s1/gpu-a",
                                        "devices": [n % 8, (n + 3) % 8] if n % 5 == 0 else [n % 8]})
              for n in range(RACERS)]
    responses = race(world, bodies)
    statuses = Counter(r.status_code for r in responses)
    assert set(statuses) <= {201, 409}, [r.text for r in responses if r.status_code not in (201, 409)][:3]
    held = held_per_device(world)
    assert max(held.values()) <= 1000, held  # before the ledger's locks: devices at 2000 milli
    for response in responses:
        if response.status_code == 409:
            error = response.json()["error"]
            assert "s1/gpu-a#" in error["message"] and error["field"].startswith("devices."), error
    assert statuses[201] == len(responses) - statuses[409] and sum(held.values()) <= 8000


def lease(tenant: str, n: int) -> dict[str, Any]:
    return {"tenant": tenant, "capacity": {"kind": "nodes", "nodes": ["s1/a800-1"]}, "pricing_model": "server_month",
            "unit_price": str(70000 + n), "start": START, "closed_months": 12}


def test_racing_contract_activations_lease_a_node_once(world: Api) -> None:
    a800_node(world)
    drafts = [world.ok("POST", "/contracts", "operator", lease("acme" if n % 2 else "beta", n)) for n in range(24)]
    responses = race(world, [("POST", f"/contracts/{d['id']}/activate", {}) for d in drafts])
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: 1, 409: 23}, statuses
    for response in responses:
        if response.status_code == 409:
            error = response.json()["error"]
            assert "s1/a800-1" in error["message"] and error["field"] == "capacity.nodes", error
    leased = [r for r in world.ok("GET", "/allocations", "operator") if r["purpose"] == "contract"]
    assert len(leased) == 8 and len({r["contract_id"] for r in leased}) == 1


def test_racing_deployments_never_share_a_device(world: Api) -> None:
    world.ok("POST", "/agent/register", "agent1", h100_node("gpu-a", 8))
    world.ok("POST", "/models", "operator", {"name": "qwen", "source": "/models/qwen", "engine": "vllm"})
    bodies = [("POST", "/deployments", {"model": "qwen", "name": f"qwen-{n}", "replicas": 1, "devices_per_replica": 1,
                                        "cpu_cores": 1, "tenant": "acme" if n % 2 else "beta"}) for n in range(36)]
    responses = race(world, bodies)
    statuses = Counter(r.status_code for r in responses)
    assert set(statuses) <= {201, 409} and 1 <= statuses[201] <= 8, [r.text for r in responses][:2]
    # A loser placed from a snapshot taken before the winner committed is refused by the ledger
    # (the device is named); one placed after it is refused by placement (nothing fits).
    for response in responses:
        if response.status_code == 409:
            message = response.json()["error"]["message"]
            assert "s1/gpu-a#" in message or "does not fit" in message, message
    held = held_per_device(world)
    assert len(held) == statuses[201] and set(held.values()) == {1000}


def test_racing_deployments_of_one_tenant_never_exceed_its_replica_quota(world: Api) -> None:
    world.ok("POST", "/agent/register", "agent1", h100_node("gpu-a", 8))
    world.ok("POST", "/models", "operator", {"name": "tiny", "source": "/models/tiny.gguf", "engine": "llama.cpp",
                                             "weights_bytes": 1024 * 1024})
    world.ok("PUT", "/deployment-quotas", "operator", {"tenant": "acme", "max_replicas": 3})
    bodies = [("POST", "/deployments", {"model": "tiny", "name": f"tiny-{n}", "tenant": "acme"}) for n in range(24)]
    responses = race(world, bodies)
    statuses = Counter(r.status_code for r in responses)
    assert statuses == Counter({201: 3, 409: 21}), [r.text for r in responses if r.status_code != 409][:2]
    assert world.ok("GET", "/deployment-quotas", "operator", tenant="acme")["held"] == 3
    # Each replica holds its cores in the ledger: the CPU rows are the tenant's, billable (CPU-only).
    cpu_rows = [row for row in world.ok("GET", "/allocations", "operator", limit=10000)
                if row["purpose"] == "service" and row["device_index"] is None and row["end"] is None]
    assert len(cpu_rows) == 3 and all(row["billable"] for row in cpu_rows), cpu_rows


def test_racing_first_public_deployments_all_place(world: Api) -> None:
    """The reserved platform tenant is created once however many first public deployments race."""
    world.ok("POST", "/agent/register", "agent1", h100_node("gpu-a", 8))
    world.ok("POST", "/models", "operator", {"name": "tiny", "source": "/models/tiny.gguf", "engine": "llama.cpp",
                                             "weights_bytes": 1024 * 1024})
    bodies = [("POST", "/deployments", {"model": "tiny", "name": f"public-{n}"}) for n in range(12)]
    responses = race(world, bodies)
    assert [r.status_code for r in responses] == [201] * 12, [r.text for r in responses if r.status_code != 201][:2]
    assert {d["tenant"] for d in world.ok("GET", "/deployments", "operator")} == {None}
