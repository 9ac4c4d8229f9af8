"""Access control of every endpoint, for each role and two tenants.

The table below names, for each route, who may call it and what the others get. A final test
checks that every route the app serves appears in the table, so a new endpoint cannot ship
without its access test.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.api.conftest import Api, h100_node
from tests.api.econ_setup import setup_economics
from tests.exchange.access_cases import EXCHANGE_CASES, setup_exchange

ROLES = ("anonymous", "operator", "acme", "beta", "p1", "p2")
# Collections whose {ref} may hold slashes (declared {ref:path}; OpenAPI shows only {ref}).
PATH_REFS = ("nodes", "models")
Body = Callable[[], Any] | None


def setup_objects(api: Api) -> None:
    """An acme-owned key to revoke, and a node in s1 (provider p1)."""
    api.ok("POST", "/agent/register", "agent1", h100_node("gpu-a", 2))
    setup_economics(api)  # price book 'std', draft contract 1 (acme, quota on p1)
    api.ok("POST", "/models", "operator", {"name": "smol", "source": "/models/smol.gguf", "engine": "llama.cpp"})
    api.ok("POST", "/deployments", "acme", {"model": "smol", "name": "acme-smol"})
    api.ok("POST", "/jobs", "acme", {"command": ["true"], "devices_per_worker": 1})  # job 1
    setup_exchange(api)  # offer 1 (p1), request 1 (acme), match 1


def acme_key_id(api: Api) -> str:
    keys = api.ok("GET", "/keys", "acme")
    return str(keys[0]["key_id"])


# (method, path, body, {role: expected status}); roles not listed expect `default`.
CASES: list[tuple[str, str, Body, dict[str, int], int]] = [
    ("GET", "/auth/whoami", None, {"anonymous": 401}, 200),
    ("GET", "/tenants", None, {"anonymous": 401}, 200),
    ("POST", "/tenants", lambda: {"name": "gamma"}, {"anonymous": 401, "operator": 201}, 403),
    ("GET", "/tenants/acme", None, {"anonymous": 401, "operator": 200, "acme": 200}, 404),
    ("PATCH", "/tenants/acme/limits", lambda: {"rpm": 60, "tpm": None, "token_budget": 1000},
     {"anonymous": 401, "operator": 200}, 403),
    ("DELETE", "/tenants/beta", None, {"anonymous": 401, "operator": 204, "beta": 403}, 403),
    ("GET", "/users", None, {"anonymous": 401}, 200),
    ("POST", "/users", lambda: {"username": "new-acme", "role": "tenant", "tenant": "acme"},
     {"anonymous": 401, "operator": 201, "acme": 201, "beta": 404}, 404),
    ("GET", "/keys", None, {"anonymous": 401}, 200),
    ("POST", "/keys", lambda: {"name": "more"}, {"anonymous": 401}, 201),
    ("DELETE", "/keys/{acme_key}", None, {"anonymous": 401, "operator": 200, "acme": 200}, 404),
    ("GET", "/audit", None, {"anonymous": 401}, 200),
    ("GET", "/providers", None, {"anonymous": 401, "acme": 403, "beta": 403}, 200),
    ("POST", "/providers", lambda: {"name": "p3", "revenue_share": "0.5"}, {"anonymous": 401, "operator": 201}, 403),
    ("GET", "/providers/p1", None, {"anonymous": 401, "operator": 200, "p1": 200, "acme": 403, "beta": 403}, 404),
    ("GET", "/sites", None, {"anonymous": 401, "acme": 403, "beta": 403}, 200),
    ("POST", "/sites", lambda: {"name": "s9", "engine": "slurm", "region": "r", "provider": "p1"},
     {"anonymous": 401, "operator": 201, "p1": 201, "p2": 404}, 403),
    ("GET", "/sites/s1", None, {"anonymous": 401, "operator": 200, "p1": 200, "acme": 403, "beta": 403}, 404),
    ("POST", "/sites/s1/agent-keys", lambda: {}, {"anonymous": 401, "operator": 201, "p1": 201, "p2": 404}, 403),
    ("GET", "/nodes", None, {"anonymous": 401, "acme": 403, "beta": 403}, 200),
    ("POST", "/nodes", lambda: {"site": "s1", "name": "decl", "cpu_cores": 8, "memory_mib": 1024,
                                "accelerators": [{"model": "a800", "count": 8}]},
     {"anonymous": 401, "operator": 201, "p1": 201, "p2": 404}, 403),
    ("GET", "/nodes/s1/gpu-a", None, {"anonymous": 401, "operator": 200, "p1": 200, "acme": 403, "beta": 403}, 404),
    ("PATCH", "/nodes/s1/gpu-a", lambda: {"drained": True},
     {"anonymous": 401, "operator": 200, "p1": 200, "p2": 404}, 403),
    ("DELETE", "/nodes/s1/gpu-a", None, {"anonymous": 401, "operator": 204, "p1": 204, "p2": 404}, 403),
    ("POST", "/agent/register", lambda: h100_node("gpu-b", 1), {"anonymous": 401}, 403),
    ("POST", "/agent/heartbeat", lambda: {"node": "gpu-a", "devices": []}, {"anonymous": 401}, 403),
    ("GET", "/fleet/summary", None, {"anonymous": 401}, 200),
    ("POST", "/placement/preview", lambda: {"devices": 1}, {"anonymous": 401}, 200),
    ("GET", "/catalog/models", None, {"anonymous": 401}, 200),
    ("GET", "/catalog/models/h100-sxm", None, {"anonymous": 401}, 200),
    ("GET", "/catalog/measurements", None, {"anonymous": 401}, 200),
    ("PUT", "/catalog/models/h800/measurements/training-bf16", lambda: {"relative": "0.5", "benchmark": "gemm"},
     {"anonymous": 401, "operator": 200}, 403),
    # leasing economics (market + billing)
    ("POST", "/pricebooks", lambda: {"name": "std2", "rates": [
        {"model": "h100-sxm", "pricing_model": "device_hour", "unit_price": "9"}]},
     {"anonymous": 401, "operator": 201}, 403),
    ("GET", "/pricebooks", None, {"anonymous": 401}, 200),
    ("GET", "/pricebooks/std", None, {"anonymous": 401}, 200),
    ("POST", "/pricebooks/std/versions", lambda: {"rates": [
        {"model": "h100-sxm", "pricing_model": "device_hour", "unit_price": "9"}]},
     {"anonymous": 401, "operator": 201}, 403),
    ("POST", "/contracts", lambda: {"tenant": "beta", "providers": ["p2"], "capacity": {
        "kind": "quota", "model": "h100-sxm", "quota": 1}, "pricing_model": "device_hour", "unit_price": "9",
        "start": "2026-11-01T00:00:00Z", "closed_months": 1}, {"anonymous": 401, "operator": 201}, 403),
    ("GET", "/contracts", None, {"anonymous": 401}, 200),
    ("GET", "/contracts/1", None, {"anonymous": 401, "operator": 200, "acme": 200, "p1": 200}, 404),
    ("POST", "/contracts/1/activate", lambda: {}, {"anonymous": 401, "operator": 200}, 403),
    ("POST", "/contracts/1/terminate", lambda: {},
     {"anonymous": 401, "operator": 409, "acme": 409, "beta": 404}, 403),
    ("POST", "/contracts/1/breach", lambda: {}, {"anonymous": 401, "operator": 409}, 403),
    ("POST", "/contracts/1/expire", lambda: {"at": "2028-01-01T00:00:00Z"}, {"anonymous": 401, "operator": 409}, 403),
    ("POST", "/contracts/1/amendments", lambda: {"effective_at": "2027-01-01T00:00:00Z", "unit_price": "14"},
     {"anonymous": 401, "operator": 201}, 403),
    ("GET", "/contracts/1/penalty", None, {"anonymous": 401, "operator": 200, "acme": 200, "p1": 200}, 404),
    ("GET", "/market/index", None, {"anonymous": 401}, 200),
    ("GET", "/market/breach-risk", None, {"anonymous": 401}, 200),
    ("POST", "/allocations", lambda: {"tenant": "acme", "node": "s1/gpu-a", "devices": [0]},
     {"anonymous": 401, "operator": 201}, 403),
    ("GET", "/allocations", None, {"anonymous": 401}, 200),
    ("GET", "/allocations/999", None, {"anonymous": 401}, 404),
    ("POST", "/allocations/999/end", lambda: {}, {"anonymous": 401, "operator": 404}, 403),
    ("POST", "/usage/token-events", lambda: {"events": [{
        "event_id": "e1", "tenant": "acme", "provider": "p1", "model": "qwen-7b", "at": "2026-11-01T07:00:00Z",
        "input_tokens": 10, "output_tokens": 5}]}, {"anonymous": 401, "operator": 200}, 403),
    ("GET", "/usage", None, {"anonymous": 401}, 200),
    ("GET", "/usage/summary", None, {"anonymous": 401}, 200),
    ("GET", "/usage/summary?group_by=tenant", None, {"anonymous": 401, "operator": 200}, 403),
    ("POST", "/metering/run", lambda: {}, {"anonymous": 401, "operator": 200}, 403),
    ("POST", "/invoices/run", lambda: {"period": "2026-10"}, {"anonymous": 401, "operator": 201}, 403),
    ("GET", "/invoices", None, {"anonymous": 401, "p1": 403, "p2": 403}, 200),
    ("GET", "/invoices/INV-none", None, {"anonymous": 401, "p1": 403, "p2": 403}, 404),
    ("GET", "/invoices/INV-none/export", None, {"anonymous": 401, "p1": 403, "p2": 403}, 404),
    ("POST", "/settlements/run", lambda: {"period": "2026-10"}, {"anonymous": 401, "operator": 200}, 403),
    ("GET", "/settlements", None, {"anonymous": 401, "acme": 403, "beta": 403}, 200),
    ("GET", "/margin/2026-10", None, {"anonymous": 401, "operator": 200}, 403),
    ("POST", "/models", lambda: {"name": "m9", "source": "/m9.gguf", "engine": "llama.cpp"},
     {"anonymous": 401, "operator": 201}, 403),
    ("GET", "/models", None, {"anonymous": 401}, 200),
    ("GET", "/models/smol", None, {"anonymous": 401}, 200),
    ("DELETE", "/models/m9", None, {"anonymous": 401, "operator": 404}, 403),
    ("POST", "/deployments", lambda: {"model": "smol"}, {"anonymous": 401, "operator": 201, "acme": 201, "beta": 201},
     403),
    ("GET", "/deployments", None, {"anonymous": 401, "p1": 403, "p2": 403}, 200),
    ("GET", "/deployments/acme-smol", None, {"anonymous": 401, "operator": 200, "acme": 200, "p1": 403, "p2": 403},
     404),
    ("PATCH", "/deployments/acme-smol", lambda: {"replicas": 1},
     {"anonymous": 401, "operator": 200, "acme": 200, "p1": 403, "p2": 403}, 404),
    ("DELETE", "/deployments/acme-smol", None, {"anonymous": 401, "operator": 200, "acme": 200, "p1": 403, "p2": 403},
     404),
    ("POST", "/auth/login", lambda: {"username": "nobody", "password": "wrong password 123"}, {}, 401),
    ("PUT", "/deployment-quotas", lambda: {"tenant": "acme", "max_replicas": 4}, {"anonymous": 401, "operator": 200},
     403),
    ("GET", "/deployment-quotas", None, {"anonymous": 401, "operator": 200, "acme": 200, "beta": 200}, 403),
    # Jobs: tenants run them (operators for a tenant), providers see none; another tenant's job is a 404.
    ("POST", "/jobs", lambda: {"command": ["true"], "devices_per_worker": 1},
     {"anonymous": 401, "operator": 422, "acme": 201, "beta": 201}, 403),
    ("GET", "/jobs", None, {"anonymous": 401}, 200),
    ("GET", "/jobs/queue", None, {"anonymous": 401, "operator": 200}, 403),
    ("GET", "/jobs/usage", None, {"anonymous": 401, "operator": 200, "acme": 200, "beta": 200}, 403),
    ("GET", "/jobs/1", None, {"anonymous": 401, "operator": 200, "acme": 200}, 404),
    ("GET", "/jobs/1/events", None, {"anonymous": 401, "operator": 200, "acme": 200}, 404),
    ("GET", "/jobs/1/logs", None, {"anonymous": 401, "operator": 200, "acme": 200}, 404),
    ("POST", "/jobs/1/cancel", lambda: {}, {"anonymous": 401, "operator": 200, "acme": 200}, 404),
    ("POST", "/sites/s1/sync", lambda: {}, {"anonymous": 401, "operator": 409, "p1": 409, "p2": 404}, 403),
    ("POST", "/agent/workers", lambda: {"node": "gpu-a", "workers": []}, {"anonymous": 401}, 403),
    ("POST", "/agent/replicas", lambda: {"node": "gpu-a", "replicas": []}, {"anonymous": 401}, 403),
    ("POST", "/nodes/s1/gpu-a/cordon", lambda: {"reason": "fan noise"},
     {"anonymous": 401, "operator": 200, "p1": 200, "p2": 404}, 403),
    ("POST", "/nodes/s1/gpu-a/uncordon", lambda: {}, {"anonymous": 401, "operator": 200, "p1": 200, "p2": 404}, 403),
    ("GET", "/serving/endpoints", None, {"anonymous": 401, "operator": 200}, 403),
    ("POST", "/serving/demand", lambda: {"demand": []}, {"anonymous": 401, "operator": 204}, 403),
    ("GET", "/jobs/1/goodput", None, {"anonymous": 401, "operator": 200, "acme": 200}, 404),
    ("GET", "/goodput", None, {"anonymous": 401, "operator": 422, "acme": 200, "beta": 200}, 403),
    ("GET", "/goodput?tenant=acme", None, {"anonymous": 401, "operator": 200, "acme": 200}, 403),
    # Console: utilisation history (operators every site, providers theirs, tenants none).
    ("GET", "/utilisation", None, {"anonymous": 401, "acme": 403, "beta": 403}, 200),
    ("GET", "/economics/yield", None, {"anonymous": 401}, 422),  # the period is required
    ("GET", "/economics/yield?period=2026-11", None, {"anonymous": 401, "acme": 403, "beta": 403}, 200),
    ("POST", "/economics/payback", lambda: {"purchase_price": "1000", "monthly_lease": "100", "utilisation": "0.5"},
     {"anonymous": 401, "acme": 403, "beta": 403}, 200),
    # What-if: operators only (reads only; 'std' is the default book of the access world).
    ("POST", "/economics/what-if", lambda: {"period": "2026-11", "price_change_percent": "10"},
     {"anonymous": 401, "operator": 200}, 403),
    # The playground's pass-through: the /v1 gateway decides who may chat (none runs in these tests: 404).
    ("POST", "/playground/chat/completions", lambda: {"model": "smol", "messages": []}, {"anonymous": 401}, 404),
    *EXCHANGE_CASES,
]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("method", "path", "body", "expected", "default"), CASES,
                         ids=[f"{m} {p}" for m, p, *_ in CASES])
def test_access(world: Api, role: str, method: str, path: str, body: Body, expected: dict[str, int],
                default: int) -> None:
    setup_objects(world)
    path = path.replace("{acme_key}", acme_key_id(world))
    response = world.call(method, path, None if role == "anonymous" else role, body() if body else None)
    want = expected.get(role, default)
    assert response.status_code == want, f"{role}: {response.status_code} {response.text}"
    if want >= 400:
        assert response.json()["error"]["message"]


def test_agent_keys_only_reach_agent_endpoints(world: Api) -> None:
    assert world.call("GET", "/tenants", "agent1").status_code == 403
    assert world.call("GET", "/nodes", "agent1").status_code == 403
    assert world.ok("POST", "/agent/register", "agent1", h100_node("gpu-c", 1))["status"] == "ready"


def test_tenant_never_sees_another_tenants_objects(world: Api) -> None:
    assert [t["name"] for t in world.ok("GET", "/tenants", "beta")] == ["beta"]
    beta_users = {u["username"] for u in world.ok("GET", "/users", "beta")}
    assert beta_users == {"beta-user"}
    beta_keys = world.ok("GET", "/keys", "beta")
    assert {k["username"] for k in beta_keys} == {"beta-user"}
    acme_key = acme_key_id(world)
    assert world.call("DELETE", f"/keys/{acme_key}", "beta").status_code == 404
    assert world.ok("GET", "/auth/whoami", "acme")["username"] == "acme-user"  # acme's key still works
    beta_id = world.ok("GET", "/tenants/beta", "beta")["id"]
    events = world.ok("GET", "/audit", "beta")
    assert events and all(event["tenant_id"] == beta_id for event in events)
    assert not any("acme" in event["object_ref"] for event in events)


def test_provider_sees_only_its_own_sites_and_nodes(world: Api) -> None:
    setup_objects(world)
    world.ok("POST", "/agent/register", "agent2", h100_node("gpu-z", 1))
    assert [s["name"] for s in world.ok("GET", "/sites", "p2")] == ["s2"]
    assert [n["name"] for n in world.ok("GET", "/nodes", "p2")] == ["gpu-z"]
    assert world.ok("GET", "/fleet/summary", "p2")["accelerators"] == 1
    assert world.ok("GET", "/fleet/summary", "operator")["accelerators"] == 3


def test_every_route_has_an_access_case(api: Api) -> None:
    # The OpenAPI document lists every operation (``app.routes`` lists included routers, not their routes).
    missing = []
    for route_path, operations in api.client.app.openapi()["paths"].items():  # type: ignore[attr-defined]
        if not route_path.startswith("/api/v1"):
            continue
        path = route_path.removeprefix("/api/v1")
        for method in operations:
            if not any(m == method.upper() and _same_shape(p, path) for m, p, *_ in CASES):
                missing.append(f"{method.upper()} {path}")
    assert not missing, f"routes without an access case: {missing}"


def _same_shape(case_path: str, route_path: str) -> bool:
    case_parts, route_parts = case_path.split("/"), route_path.split("/")
    if route_parts[-1].endswith(":path}"):
        return case_parts[: len(route_parts) - 1] == route_parts[:-1]
    if "{ref}" in route_parts and route_parts[route_parts.index("{ref}") - 1] in PATH_REFS:
        # A slash-holding ref, at the end (/nodes/{ref}) or before an action (/nodes/{ref}/cordon).
        at = route_parts.index("{ref}")
        tail = route_parts[at + 1:]
        if case_parts[:at] != route_parts[:at]:
            return False
        return not tail or (len(case_parts) >= len(route_parts) and case_parts[-len(tail):] == tail)
    if len(case_parts) != len(route_parts):
        return False
    return all(r.startswith("{") or c == r for c, r in zip(case_parts, route_parts, strict=True))
