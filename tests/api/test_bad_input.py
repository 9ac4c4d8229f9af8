"""Bad input gets a clear 4xx naming the field, and nothing is written."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import Api, h100_node


def audit_count(api: Api) -> int:
    return len(api.ok("GET", "/audit", "operator", limit=1000))


def node_count(api: Api) -> int:
    return len(api.ok("GET", "/nodes", "operator"))


def assert_rejected(api: Api, method: str, path: str, who: str, body: Any, status: int, field: str | None) -> dict:  # type: ignore[type-arg]
    before = (audit_count(api), node_count(api), len(api.ok("GET", "/tenants", "operator")))
    response = api.call(method, path, who, body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["message"]
    if field is not None:
        assert error["field"] == field, error
        assert field.split(".")[-1] in error["message"] or error["type"] != "InvalidInput", error
    assert (audit_count(api), node_count(api), len(api.ok("GET", "/tenants", "operator"))) == before
    return error  # type: ignore[no-any-return]


BAD_REGISTRATIONS = [
    ({**h100_node("n1", 1), "devices": [{"index": 0, "model": "NVIDIA Quantum Flux 9000"}]}, 422, "devices.0.model"),
    ({**h100_node("n1", 1), "cpu_cores": "many"}, 422, "cpu_cores"),
    ({**h100_node("n1", 1), "memory_mib": -5}, 422, "memory_mib"),
    ({**h100_node("n1", 1), "unexpected": 1}, 422, "unexpected"),
    ({**h100_node("bad name!", 1)}, 422, "name"),
    ({**h100_node("n1", 2), "devices": [{"index": 0, "model": "h100-sxm"}, {"index": 0, "model": "h100-sxm"}]},
     422, "devices.1.index"),
]


@pytest.mark.parametrize(("body", "status", "field"), BAD_REGISTRATIONS, ids=[f for *_, f in BAD_REGISTRATIONS])
def test_bad_node_registration(world: Api, body: dict, status: int, field: str) -> None:  # type: ignore[type-arg]
    assert_rejected(world, "POST", "/agent/register", "agent1", body, status, field)


def test_unknown_model_message_names_the_model(world: Api) -> None:
    body = {"site": "s1", "name": "x", "cpu_cores": 1, "memory_mib": 1,
            "accelerators": [{"model": "h100-sxm", "count": 8}, {"model": "zz-9000", "count": 1}]}
    error = assert_rejected(world, "POST", "/nodes", "operator", body, 422, "accelerators.1.model")
    assert "zz-9000" in error["message"]


def test_duplicate_names_conflict(world: Api) -> None:
    assert_rejected(world, "POST", "/tenants", "operator", {"name": "acme"}, 409, "name")
    assert_rejected(world, "POST", "/providers", "operator", {"name": "p1", "revenue_share": "0.5"}, 409, "name")
    assert_rejected(world, "POST", "/sites", "operator",
                    {"name": "s1", "engine": "slurm", "region": "r", "provider": "p1"}, 409, "name")
    assert_rejected(world, "POST", "/users", "operator", {"username": "acme-user", "role": "tenant",
                                                          "tenant": "acme"}, 409, "username")


@pytest.mark.parametrize(("body", "field"), [
    ({"name": "Has Spaces"}, "name"),
    ({"name": 42}, "name"),
    ({"name": "ok", "contact_email": "not-an-email"}, "contact_email"),
    ({}, "name"),
    ({"name": "x" * 100}, "name"),
])
def test_malformed_tenant(world: Api, body: dict, field: str) -> None:  # type: ignore[type-arg]
    assert_rejected(world, "POST", "/tenants", "operator", body, 422, field)


@pytest.mark.parametrize(("body", "field"), [
    ({"name": "p9", "revenue_share": "1.5"}, "revenue_share"),
    ({"name": "p9", "revenue_share": "-0.1"}, "revenue_share"),
    ({"name": "p9", "revenue_share": "lots"}, "revenue_share"),
    ({"name": "p9"}, "revenue_share"),
])
def test_malformed_provider(world: Api, body: dict, field: str) -> None:  # type: ignore[type-arg]
    assert_rejected(world, "POST", "/providers", "operator", body, 422, field)


def test_site_with_unknown_engine_or_provider(world: Api) -> None:
    assert_rejected(world, "POST", "/sites", "operator",
                    {"name": "s9", "engine": "mainframe", "region": "r", "provider": "p1"}, 422, "engine")
    assert_rejected(world, "POST", "/sites", "operator",
                    {"name": "s9", "engine": "slurm", "region": "r", "provider": "nobody"}, 404, "provider")


def test_oversized_payload_is_refused(world: Api) -> None:
    huge = {**h100_node("n1", 1), "labels": {"padding": "x" * 2_000_000}}
    response = world.call("POST", "/agent/register", "agent1", huge)
    assert response.status_code == 413
    assert "larger than" in response.json()["error"]["message"]
    assert node_count(world) == 0


def test_malformed_json_body(world: Api) -> None:
    response = world.client.post("/api/v1/tenants", content=b"{not json",
                                 headers={"Authorization": f"Bearer {world.keys['operator']}",
                                          "Content-Type": "application/json"})
    assert response.status_code == 422
    assert response.json()["error"]["type"] == "InvalidInput"


def test_heartbeat_from_unknown_node(world: Api) -> None:
    error = assert_rejected(world, "POST", "/agent/heartbeat", "agent1", {"node": "ghost", "devices": []}, 404, "node")
    assert "ghost" in error["message"]


def test_heartbeat_names_unknown_device(world: Api) -> None:
    world.ok("POST", "/agent/register", "agent1", h100_node("n1", 2))
    response = world.call("POST", "/agent/heartbeat", "agent1",
                          {"node": "n1", "devices": [{"index": 7, "healthy": True}]})
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "devices.0.index"


def test_unknown_scope_and_bad_expiry(world: Api) -> None:
    assert_rejected(world, "POST", "/keys", "acme", {"scopes": ["root"]}, 422, "scopes")
    assert_rejected(world, "POST", "/keys", "acme", {"expires_in_days": -1}, 422, "expires_in_days")
