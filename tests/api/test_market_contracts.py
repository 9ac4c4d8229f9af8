"""Contracts through the API: the 8×A800 worked example, overlap, lifecycle, amendments, bad input."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from tests.api.conftest import Api, Clock, h100_node
from tests.api.econ_setup import START, a800_node, price_book, quota_contract


def lease_body(**extra: Any) -> dict[str, Any]:
    return {"tenant": "acme", "capacity": {"kind": "nodes", "nodes": ["s1/a800-1"]}, "pricing_model": "server_month",
            "unit_price": "75000", "start": START, "closed_months": 36, "open_months": 24,
            "penalty_rate": "0.20", "deposit": "150000", **extra}


def counts(api: Api) -> tuple[int, int, int]:
    return (len(api.ok("GET", "/audit", "operator", limit=1000)), len(api.ok("GET", "/contracts", "operator")),
            len(api.ok("GET", "/allocations", "operator")))


def test_8x_a800_lease_terminated_in_month_14_pays_the_penalty(world: Api) -> None:
    a800_node(world)
    contract = world.ok("POST", "/contracts", "operator", lease_body())
    assert contract["state"] == "draft" and contract["providers"] == ["p1"] and contract["devices"] == 8
    assert contract["model"] == "a800-sxm4-80gb" and contract["closed_end"].startswith("2029-11-01")
    assert contract["committed_value"] == "2700000.00"  # 36 × 75,000
    cid = contract["id"]
    active = world.ok("POST", f"/contracts/{cid}/activate", "operator", {})
    assert active["state"] == "active"
    allocations = world.ok("GET", "/allocations", "acme", contract=cid)
    assert len(allocations) == 8 and {a["purpose"] for a in allocations} == {"contract"}

    quote = world.ok("GET", f"/contracts/{cid}/penalty", "acme", at="2027-12-15T00:00:00Z")
    assert quote["contract_month"] == 14 and quote["in_closed_period"] is True
    # Remaining closed value: 17/31 of December 2027 + 22 whole months (Jan 2028 – Oct 2029).
    remaining = Decimal(75000) * 17 / 31 + 22 * Decimal(75000)
    assert quote["remaining_closed_value"] == str(remaining.quantize(Decimal("0.01")))
    assert quote["penalty"] == "338225.81"  # round_fen(0.20 × 1,691,129.032…)

    ended = world.ok("POST", f"/contracts/{cid}/terminate", "acme",
                     {"notice_at": "2027-11-01T00:00:00Z", "effective_at": "2027-12-15T00:00:00Z"})
    assert ended["state"] == "terminated" and ended["ended_at"].startswith("2027-12-15")
    last = ended["transitions"][-1]
    assert (last["from_state"], last["to_state"]) == ("active", "terminated")
    assert last["penalty"] == "338225.81" and last["deposit_applied"] == "150000"
    assert last["amount_due"] == "188225.81" and last["deposit_refund"] == "0"
    assert [t["to_state"] for t in ended["transitions"]] == ["active", "terminated"]
    assert {a["end"][:10] for a in world.ok("GET", "/allocations", "acme", contract=cid)} == {"2027-12-15"}
    actions = [e["action"] for e in world.ok("GET", "/audit", "acme")]
    assert "contract.terminated" in actions


def test_overlapping_exclusive_lease_is_409_naming_the_node(world: Api) -> None:
    a800_node(world)
    first = world.ok("POST", "/contracts", "operator", lease_body())
    world.ok("POST", f"/contracts/{first['id']}/activate", "operator", {})
    before = counts(world)
    response = world.call("POST", "/contracts", "operator",
                          lease_body(tenant="beta", start="2028-01-01T00:00:00Z", closed_months=6, open_months=0))
    assert response.status_code == 409, response.text
    assert "s1/a800-1" in response.json()["error"]["message"]
    assert counts(world) == before
    # a job of another tenant on the leased node is refused too
    response = world.call("POST", "/allocations", "operator", {"tenant": "beta", "node": "s1/a800-1"})
    assert response.status_code == 409 and "s1/a800-1" in response.json()["error"]["message"]
    assert counts(world) == before
    # after the lease ends, the node can be leased again
    world.ok("POST", f"/contracts/{first['id']}/breach", "operator", {"at": "2027-06-01T00:00:00Z"})
    later = world.ok("POST", "/contracts", "operator",
                     lease_body(tenant="beta", start="2027-07-01T00:00:00Z", closed_months=6, open_months=0))
    assert later["state"] == "draft"


BAD_CONTRACTS = [
    ({"unit_price": "-75000"}, 422, "unit_price"),
    ({"unit_price": "0"}, 422, "unit_price"),
    ({"currency": "USD"}, 422, "currency"),
    ({"closed_months": 0, "open_months": 0}, 422, "closed_months"),
    ({"capacity": {"kind": "quota", "model": "warp-drive", "quota": 4}, "providers": ["p1"]}, 422, "capacity.model"),
    ({"capacity": {"kind": "nodes", "nodes": ["s1/nope"]}}, 404, "capacity.nodes.0"),
    ({"tenant": "nobody"}, 404, "tenant"),
    ({"start": "2026-11-01T00:00:00"}, 422, "start"),
    ({"surprise": 1}, 422, "surprise"),
]


@pytest.mark.parametrize(("change", "status", "field"), BAD_CONTRACTS, ids=[f for *_, f in BAD_CONTRACTS])
def test_bad_contracts_are_refused_and_nothing_is_written(world: Api, change: dict[str, Any], status: int,
                                                          field: str) -> None:
    a800_node(world)
    before = counts(world)
    response = world.call("POST", "/contracts", "operator", lease_body(**change))
    assert response.status_code == status, response.text
    assert response.json()["error"]["field"] == field
    assert counts(world) == before


def test_lifecycle_rules_and_amendments(world: Api, clock: Clock) -> None:
    price_book(world)
    contract = quota_contract(world)
    cid = contract["id"]
    assert world.call("POST", f"/contracts/{cid}/terminate", "acme", {}).status_code == 409  # still a draft
    assert world.call("POST", f"/contracts/{cid}/activate", "acme", {}).status_code == 403
    world.ok("POST", f"/contracts/{cid}/activate", "operator", {})
    assert world.call("POST", f"/contracts/{cid}/activate", "operator", {}).status_code == 409
    amended = world.ok("POST", f"/contracts/{cid}/amendments", "operator",
                       {"effective_at": "2027-02-01T00:00:00Z", "unit_price": "12", "quota": 6})
    assert amended["amendments"][0]["unit_price"] == "12"
    rows = world.ok("GET", "/allocations", "operator", contract=cid)
    assert sorted((r["milli"], r["start"][:10], r["end"][:10]) for r in rows) == [
        (4000, "2026-11-01", "2027-02-01"), (6000, "2027-02-01", "2027-11-01")]
    bad = world.call("POST", f"/contracts/{cid}/amendments", "operator",
                     {"effective_at": "2030-01-01T00:00:00Z", "unit_price": "1"})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "effective_at"
    assert world.call("GET", f"/contracts/{cid}", "beta").status_code == 404
    assert world.ok("GET", f"/contracts/{cid}", "p1")["id"] == cid
    assert world.ok("GET", "/contracts", "beta") == []
    assert world.call("POST", f"/contracts/{cid}/expire", "operator", {}).status_code == 422  # not yet at its end


def test_price_book_versions_and_bad_rates(world: Api, clock: Clock) -> None:
    book = price_book(world)
    assert book["default"] is True and book["versions"][0]["version"] == 1
    assert [r["tenant"] for r in world.ok("GET", "/pricebooks/std", "acme")["versions"][0]["rates"]] == [None] * 4
    assert len(world.ok("GET", "/pricebooks/std", "beta")["versions"][0]["rates"]) == 5
    rates = [{"model": "h100-sxm", "pricing_model": "device_hour", "unit_price": "22"}]
    v2 = world.ok("POST", "/pricebooks/std/versions", "operator", {"effective_from": "2026-12-10T00:00:00Z",
                                                                   "rates": rates})
    assert [v["version"] for v in v2["versions"]] == [1, 2]
    for body, field in [
        ({"rates": [{**rates[0], "unit_price": "-1"}]}, "rates.0.unit_price"),
        ({"rates": [{**rates[0], "model": "warp-drive"}]}, "rates.0.model"),
        ({"rates": rates, "currency": "USD"}, "currency"),
        ({"rates": rates, "effective_from": "2026-01-01T00:00:00Z"}, "effective_from"),
        ({"rates": [rates[0], rates[0]]}, "rates"),
    ]:
        before = len(world.ok("GET", "/audit", "operator", limit=1000))
        response = world.call("POST", "/pricebooks/std/versions", "operator", body)
        assert response.status_code == 422, response.text
        assert response.json()["error"]["field"] == field, response.text
        assert len(world.ok("GET", "/audit", "operator", limit=1000)) == before
    assert len(world.ok("GET", "/pricebooks/std", "operator")["versions"]) == 2


def test_market_index_and_breach_risk(world: Api) -> None:
    price_book(world)  # lists A800 at 60,000 per server-month
    a800_node(world)
    a800_node(world, "a800-2")
    cheap = world.ok("POST", "/contracts", "operator", lease_body(
        tenant="beta", unit_price="40000", capacity={"kind": "nodes", "nodes": ["s1/a800-2"]}))
    dear = world.ok("POST", "/contracts", "operator", lease_body())
    for c in (cheap, dear):
        world.ok("POST", f"/contracts/{c['id']}/activate", "operator", {})
    index = world.ok("GET", "/market/index", "acme", at="2027-01-01T00:00:00Z")
    a800 = next(e for e in index if e["model"] == "a800-sxm4-80gb")
    assert a800["points"] == 3 and a800["low"] == "40000" and a800["high"] == "75000"
    assert a800["price"] == "60000.00"  # weighted median of 40k×8, 60k×16 (listed), 75k×8
    risks = world.ok("GET", "/market/breach-risk", "operator", at="2027-01-01T00:00:00Z")
    assert [r["contract_id"] for r in risks] == [dear["id"]]  # 75,000 > 60,000 × 1.2
    assert Decimal(risks[0]["provider_exposure"]) > 0 and risks[0]["tenant"] == "acme"
    assert world.ok("GET", "/market/breach-risk", "beta", at="2027-01-01T00:00:00Z") == []


def test_a_terminated_lease_holds_its_node_until_its_notice_period_ends(world: Api) -> None:
    price_book(world)
    a800_node(world)
    first = world.ok("POST", "/contracts", "operator", lease_body())
    world.ok("POST", f"/contracts/{first['id']}/activate", "operator", {})
    ended = world.ok("POST", f"/contracts/{first['id']}/terminate", "acme",
                     {"notice_at": "2027-11-01T00:00:00Z", "effective_at": "2027-12-15T00:00:00Z"})
    assert ended["state"] == "terminated"
    before = counts(world)
    overlapping = lease_body(tenant="beta", start="2027-12-01T00:00:00Z", closed_months=6, open_months=0)
    response = world.call("POST", "/contracts", "operator", overlapping)
    assert response.status_code == 409 and "s1/a800-1" in response.json()["error"]["message"], response.text
    response = world.call("POST", "/allocations", "operator",
                          {"tenant": "beta", "node": "s1/a800-1", "start": "2027-12-01T00:00:00Z"})
    assert response.status_code == 409 and response.json()["error"]["field"] == "node", response.text
    assert counts(world) == before
    # still priced and assessed while in its notice period; gone once it has taken effect
    in_notice = world.ok("GET", "/market/index", "operator", at="2027-12-01T00:00:00Z")
    assert next(e for e in in_notice if e["model"] == "a800-sxm4-80gb")["points"] == 2  # contract + listing
    risks = world.ok("GET", "/market/breach-risk", "operator", at="2027-12-01T00:00:00Z")
    assert [r["contract_id"] for r in risks] == [first["id"]]  # 75,000 > 60,000 × 1.2
    after = world.ok("GET", "/market/index", "operator", at="2027-12-20T00:00:00Z")
    assert next(e for e in after if e["model"] == "a800-sxm4-80gb")["points"] == 1
    later = world.ok("POST", "/contracts", "operator", lease_body(
        tenant="beta", start="2027-12-15T00:00:00Z", closed_months=6, open_months=0))
    world.ok("POST", f"/contracts/{later['id']}/activate", "operator", {})


def test_a_new_price_book_cannot_be_back_dated_over_usage(world: Api, clock: Clock) -> None:
    price_book(world)  # created when the clock read START, before anything was used
    world.ok("POST", "/agent/register", "agent1", h100_node("gpu-a", 2))
    world.ok("POST", "/allocations", "operator", {"tenant": "acme", "node": "s1/gpu-a", "devices": [0]})
    clock.advance(hours=2)
    rates = [{"model": "h100-sxm", "pricing_model": "device_hour", "unit_price": "1"}]
    before = len(world.ok("GET", "/audit", "operator", limit=1000))
    response = world.call("POST", "/pricebooks", "operator", {
        "name": "cheap", "default": True, "effective_from": "2026-10-01T00:00:00Z", "rates": rates})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == "effective_from"
    assert len(world.ok("GET", "/audit", "operator", limit=1000)) == before
    assert [b["name"] for b in world.ok("GET", "/pricebooks", "operator") if b["default"]] == ["std"]
    later = world.ok("POST", "/pricebooks", "operator", {"name": "cheap", "rates": rates})
    assert later["versions"][0]["effective_from"] == clock.now.isoformat().replace("+00:00", "Z")
