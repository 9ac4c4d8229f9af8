"""Money budgets through the identity API: set on keys and tenants as exact CNY amounts, validated."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api import conftest as api_fixtures
from tests.api.conftest import Api

# The API tests' fixtures: the API over a copy of a small world (tenants acme and beta), per backend.
clock, world, world_templates = api_fixtures.clock, api_fixtures.world, api_fixtures.world_templates


def audit_events(api: Api, action: str) -> list[dict[str, Any]]:
    return [e for e in api.ok("GET", "/audit", "operator", limit=1000) if e["action"] == action]


@pytest.mark.parametrize(("given", "stored"), [("12.50", "12.50"), ("12.5", "12.50"), (7, "7.00"), ("0", "0.00"),
                                               (0.1, "0.10")])
def test_key_money_budget_is_stored_exactly_to_the_fen(world: Api, given: Any, stored: str) -> None:
    issued = world.ok("POST", "/keys", "acme", {"name": "maas", "scopes": ["inference"], "money_budget": given})
    assert issued["money_budget"] == stored
    (listed,) = [k for k in world.ok("GET", "/keys", "acme") if k["key_id"] == issued["key_id"]]
    assert listed["money_budget"] == stored
    (event,) = [e for e in audit_events(world, "key.create") if e["object_ref"] == issued["key_id"]]
    assert event["detail"]["money_budget"] == stored


def test_key_without_money_budget_has_none(world: Api) -> None:
    assert world.ok("POST", "/keys", "acme", {"name": "plain"})["money_budget"] is None


BAD_MONEY = ["12.345", "-0.01", -1, "lots", "NaN", "Infinity", "1e13", 10**13, [1], {"cny": 1}]


@pytest.mark.parametrize("bad", BAD_MONEY)
def test_bad_key_money_budget_is_422_naming_the_field(world: Api, bad: Any) -> None:
    before = len(world.ok("GET", "/keys", "operator"))
    response = world.call("POST", "/keys", "acme", {"name": "bad", "money_budget": bad})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == "money_budget", response.text
    assert len(world.ok("GET", "/keys", "operator")) == before


def test_operator_sets_and_clears_tenant_money_budget(world: Api) -> None:
    out = world.ok("PATCH", "/tenants/acme/limits", "operator", {"rpm": 60, "money_budget": "100"})
    assert (out["rpm"], out["money_budget"]) == (60, "100.00")
    assert world.ok("GET", "/tenants/acme", "acme")["money_budget"] == "100.00"
    cleared = world.ok("PATCH", "/tenants/acme/limits", "operator", {"rpm": 60})
    assert cleared["money_budget"] is None
    second, first = audit_events(world, "tenant.limits")  # newest first
    assert first["detail"]["after"]["money_budget"] == "100.00"
    assert second["detail"]["before"]["money_budget"] == "100.00" and second["detail"]["after"]["money_budget"] is None


@pytest.mark.parametrize("bad", BAD_MONEY)
def test_bad_tenant_money_budget_is_422_naming_the_field(world: Api, bad: Any) -> None:
    before = len(audit_events(world, "tenant.limits"))
    response = world.call("PATCH", "/tenants/acme/limits", "operator", {"money_budget": bad})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == "money_budget", response.text
    assert world.ok("GET", "/tenants/acme", "acme")["money_budget"] is None
    assert len(audit_events(world, "tenant.limits")) == before


def test_tenant_may_not_set_its_own_money_budget(world: Api) -> None:
    response = world.call("PATCH", "/tenants/acme/limits", "acme", {"money_budget": "1000000"})
    assert response.status_code == 403, response.text
    assert world.ok("GET", "/tenants/acme", "acme")["money_budget"] is None


def test_budget_period_is_set_on_keys_and_tenants_and_validated(world: Api) -> None:
    assert world.ok("POST", "/keys", "acme", {"name": "default"})["budget_period"] == "monthly"
    issued = world.ok("POST", "/keys", "acme", {"name": "lifetime", "token_budget": 100, "budget_period": "none"})
    assert issued["budget_period"] == "none"
    listed = next(k for k in world.ok("GET", "/keys", "acme") if k["key_id"] == issued["key_id"])
    assert listed["budget_period"] == "none"
    out = world.ok("PATCH", "/tenants/acme/limits", "operator", {"money_budget": "10", "budget_period": "none"})
    assert out["budget_period"] == "none"
    assert world.ok("GET", "/tenants/acme", "acme")["budget_period"] == "none"
    for method, path, who in (("POST", "/keys", "acme"), ("PATCH", "/tenants/acme/limits", "operator")):
        response = world.call(method, path, who, {"budget_period": "weekly"})
        assert response.status_code == 422, response.text
        assert response.json()["error"]["field"] == "budget_period", response.text
