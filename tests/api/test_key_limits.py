"""API keys scoped to models with RPM/TPM limits and a token budget; tenant limits set by operators."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import Api


def key_count(api: Api) -> int:
    return len(api.ok("GET", "/keys", "operator"))


def audit_count(api: Api) -> int:
    return len(api.ok("GET", "/audit", "operator", limit=1000))


def test_tenant_creates_key_with_models_and_limits(world: Api) -> None:
    body = {"name": "maas", "scopes": ["inference"], "models": ["qwen3-8b", "smollm2-135m"],
            "rpm": 60, "tpm": 10_000, "token_budget": 5_000_000}
    issued = world.ok("POST", "/keys", "acme", body)
    assert issued["models"] == ["qwen3-8b", "smollm2-135m"]
    assert (issued["rpm"], issued["tpm"], issued["token_budget"]) == (60, 10_000, 5_000_000)
    (listed,) = [k for k in world.ok("GET", "/keys", "acme") if k["key_id"] == issued["key_id"]]
    assert listed["models"] == ["qwen3-8b", "smollm2-135m"] and listed["rpm"] == 60
    (event,) = [e for e in world.ok("GET", "/audit", "operator", limit=1000)
                if e["action"] == "key.create" and e["object_ref"] == issued["key_id"]]
    assert event["detail"]["rpm"] == 60


def test_key_without_limits_is_unlimited(world: Api) -> None:
    issued = world.ok("POST", "/keys", "acme", {"name": "plain"})
    assert issued["models"] is None
    assert (issued["rpm"], issued["tpm"], issued["token_budget"]) == (None, None, None)


@pytest.mark.parametrize(("body", "field"), [
    ({"rpm": 0}, "rpm"),
    ({"tpm": -5}, "tpm"),
    ({"token_budget": "lots"}, "token_budget"),
    ({"rpm": 1.5}, "rpm"),
    ({"models": "qwen3-8b"}, "models"),
    ({"models": [""]}, "models.0"),
    ({"models": ["x" * 129]}, "models.0"),
    ({"models": [f"m{i}" for i in range(65)]}, "models"),
])
def test_bad_key_limits_are_rejected(world: Api, body: dict[str, Any], field: str) -> None:
    before = (key_count(world), audit_count(world))
    response = world.call("POST", "/keys", "acme", {"name": "bad", **body})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field, response.text
    assert (key_count(world), audit_count(world)) == before


def test_operator_sets_and_clears_tenant_limits(world: Api) -> None:
    out = world.ok("PATCH", "/tenants/acme/limits", "operator", {"rpm": 600, "tpm": 100_000, "token_budget": None})
    assert (out["name"], out["rpm"], out["tpm"], out["token_budget"]) == ("acme", 600, 100_000, None)
    shown = world.ok("GET", "/tenants/acme", "acme")
    assert (shown["rpm"], shown["tpm"]) == (600, 100_000)
    (event,) = [e for e in world.ok("GET", "/audit", "operator", limit=1000) if e["action"] == "tenant.limits"]
    assert event["object_ref"] == "acme" and event["detail"]["after"]["rpm"] == 600
    cleared = world.ok("PATCH", "/tenants/acme/limits", "operator", {"rpm": None, "tpm": None, "token_budget": None})
    assert (cleared["rpm"], cleared["tpm"], cleared["token_budget"]) == (None, None, None)


def test_tenant_may_not_set_its_own_limits(world: Api) -> None:
    before = audit_count(world)
    response = world.call("PATCH", "/tenants/acme/limits", "acme", {"rpm": None, "tpm": None, "token_budget": None})
    assert response.status_code == 403, response.text
    assert world.ok("GET", "/tenants/acme", "acme")["rpm"] is None
    assert audit_count(world) == before


@pytest.mark.parametrize(("body", "field"), [({"rpm": 0}, "rpm"), ({"tpm": "x"}, "tpm"), ({"burst": 3}, "burst")])
def test_bad_tenant_limits_are_rejected(world: Api, body: dict[str, Any], field: str) -> None:
    before = audit_count(world)
    response = world.call("PATCH", "/tenants/acme/limits", "operator", body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field, response.text
    assert audit_count(world) == before
