"""The exchange through the API: the issue's scenario end to end, visibility, lapse, double booking."""

from __future__ import annotations

from decimal import Decimal

from tests.api.conftest import Api, Clock
from tests.exchange.market_setup import WINDOW, declare_nodes, fleet, offer, publish_scenario, request
from zhisuan.catalog.loader import default_catalog


def by_request(matches: list[dict], request_id: int) -> list[dict]:  # type: ignore[type-arg]
    return [m for m in matches if m["request_id"] == request_id]


def test_scenario_two_providers_three_tenants_one_round_accept_to_active_contracts(world: Api) -> None:
    orders = publish_scenario(world)
    # floors converted to CNY per device-hour by the documented rules
    assert Decimal(orders["h100"]["floor_device_hour"]) == (Decimal(100000) / (8 * 730)).quantize(Decimal("1e-6"))
    tflops = default_catalog().get("ascend-910b2").per_device_tflops("bf16")
    assert tflops is not None
    assert Decimal(orders["910b"]["floor_device_hour"]) == (
        Decimal(150000) * tflops / 1000 / 8760).quantize(Decimal("1e-6"))
    assert orders["gang"]["devices"] == 64 and orders["flex"]["normalised"] is True

    book = world.ok("GET", "/exchange/book", "beta")
    h100 = next(level for level in book if level["model"] == "h100-sxm" and level["region"] == "cn-east-1")
    assert h100["devices_offered"] == 64 and h100["best_floor"] == orders["h100"]["floor_device_hour"]
    assert all(set(level) == {"model", "region", "devices_offered", "best_floor", "devices_requested", "best_cap"}
               for level in book)  # anonymous: no ids, no counterparties

    summary = world.ok("POST", "/exchange/clear", "operator", {"objective": "surplus"})
    matched = {m["request_id"] for m in summary["matches"]}
    assert matched == {orders[k]["id"] for k in ("gang", "flex", "small")}
    assert [u["request_id"] for u in summary["unmatched"]] == [orders["cheap"]["id"]]
    assert summary["unmatched"][0]["reason"]
    cheap = world.ok("GET", f"/exchange/requests/{orders['cheap']['id']}", "gamma")
    assert cheap["state"] == "open" and cheap["unmatched_reason"] == summary["unmatched"][0]["reason"]

    gang = by_request(summary["matches"], orders["gang"]["id"])
    assert len(gang) == 1 and gang[0]["devices"] == 64 and gang[0]["model"] == "h100-sxm"
    flex = by_request(summary["matches"], orders["flex"]["id"])
    factors = {k: Decimal(v) for k, v in orders["flex"]["models"].items()}
    assert factors == {"h800": Decimal("1.0000"), "ascend-910b2": Decimal("0.3577")}  # 353.8944 / 989.4
    assert sum(factors[m["model"]] * m["devices"] for m in flex) >= 8
    # 4 of the 8 H800 go to gamma, so beta's 8 H100-equivalents mix H800 with 910B2 by throughput
    assert {m["model"] for m in flex} == {"h800", "ascend-910b2"}
    for match in summary["matches"]:  # every cleared price lies between the floor and the cap
        assert Decimal(match["price"]) > 0

    # each side sees its own matches, accepts; the contract becomes active and holds the ledger
    for tenant, key in (("acme", "gang"), ("beta", "flex"), ("gamma", "small")):
        mine = world.ok("GET", "/exchange/matches", tenant)
        assert {m["request_id"] for m in mine} == {orders[key]["id"]} and all(m["offer_id"] is None for m in mine)
        for match in mine:
            provider = "p1" if match["model"] in ("h100-sxm", "h800") else "p2"
            assert match["id"] in {m["id"] for m in world.ok("GET", "/exchange/matches", provider)}
            half = world.ok("POST", f"/exchange/matches/{match['id']}/accept", tenant, {})
            assert half["state"] == "proposed" and half["tenant_accepted"] and not half["provider_accepted"]
            assert world.ok("GET", f"/contracts/{match['contract_id']}", tenant)["state"] == "draft"
            done = world.ok("POST", f"/exchange/matches/{match['id']}/accept", provider, {})
            assert done["state"] == "accepted"
            contract = world.ok("GET", f"/contracts/{match['contract_id']}", tenant)
            assert contract["state"] == "active" and contract["devices"] == match["devices"]
            assert Decimal(contract["unit_price"]) == Decimal(match["price"])
            assert contract["pricing_model"] == "device_hour" and contract["start"].startswith("2026-11-02")
            held = world.ok("GET", "/allocations", tenant, contract=match["contract_id"])
            assert held and {a["purpose"] for a in held} == {"contract"}
    gang_contract = world.ok("GET", f"/contracts/{gang[0]['contract_id']}", "acme")
    assert gang_contract["capacity_kind"] == "nodes" and len(gang_contract["nodes"]) == 8
    assert len(world.ok("GET", "/allocations", "acme", contract=gang[0]["contract_id"])) == 64
    actions = {e["action"] for e in world.ok("GET", "/audit", "operator", limit=1000)}
    assert {"exchange.offer.create", "exchange.request.create", "exchange.clear", "exchange.match.accept",
            "contract.active"} <= actions
    # the fully matched H100 offer is off the book; a second round matches nothing new
    assert world.ok("GET", f"/exchange/offers/{orders['h100']['id']}", "p1")["state"] == "matched"
    again = world.ok("POST", "/exchange/clear", "operator", {"method": "greedy"})
    assert again["matches"] == []


def test_each_side_sees_only_its_own_items(world: Api) -> None:
    orders = publish_scenario(world)
    world.ok("POST", "/exchange/clear", "operator", {})
    match = world.ok("GET", "/exchange/matches", "acme")[0]["id"]
    h100, flex = orders["h100"]["id"], orders["flex"]["id"]
    for who, path in [("beta", f"/exchange/offers/{h100}"), ("p2", f"/exchange/offers/{h100}"),
                      ("p1", f"/exchange/requests/{flex}"), ("acme", f"/exchange/requests/{flex}"),
                      ("beta", f"/exchange/matches/{match}"), ("p2", f"/exchange/matches/{match}"),
                      ("acme", "/exchange/offers/999999")]:
        response = world.call("GET", path, who)
        assert response.status_code == 404, (who, path, response.text)
    for who, path in [("beta", f"/exchange/matches/{match}/accept"),
                      ("p2", f"/exchange/matches/{match}/accept"),
                      ("beta", f"/exchange/offers/{h100}/withdraw"), ("acme", f"/exchange/requests/{flex}/withdraw")]:
        assert world.call("POST", path, who, {}).status_code in (403, 404), (who, path)
    assert world.ok("GET", "/exchange/offers", "acme") == []
    assert {o["provider"] for o in world.ok("GET", "/exchange/offers", "p2")} == {"p2"}
    assert {r["tenant"] for r in world.ok("GET", "/exchange/requests", "beta")} == {"beta"}
    assert world.ok("GET", "/exchange/requests", "p1") == []
    assert world.call("POST", "/exchange/clear", "acme", {}).status_code == 403


def test_a_match_not_accepted_in_time_lapses_and_capacity_returns_to_the_book(world: Api, clock: Clock) -> None:
    fleet(world)
    supply = offer(world, "p1", site="s1", model="h800", devices=8, pricing_model="device_hour", floor_price="10")
    demand = request(world, "acme", amount=8, models=["h800"], max_price="20")
    match = world.ok("POST", "/exchange/clear", "operator", {})["matches"][0]
    world.ok("POST", f"/exchange/matches/{match['id']}/accept", "acme", {})
    assert world.ok("GET", f"/exchange/offers/{supply['id']}", "p1")["remaining"] == 0
    clock.advance(hours=49)
    assert world.ok("GET", f"/exchange/matches/{match['id']}", "acme")["state"] == "lapsed"
    response = world.call("POST", f"/exchange/matches/{match['id']}/accept", "p1", {})
    assert response.status_code == 409 and response.json()["error"]["field"] == "match"
    assert world.ok("GET", f"/exchange/offers/{supply['id']}", "p1")["state"] == "open"
    reopened = world.ok("GET", f"/exchange/requests/{demand['id']}", "acme")
    assert reopened["state"] == "open" and reopened["remaining"] == 8
    contract = world.ok("GET", f"/contracts/{match['contract_id']}", "acme")
    assert contract["state"] == "cancelled" and "lapsed" in contract["note"]
    assert [(t["from_state"], t["to_state"]) for t in contract["transitions"]] == [("draft", "cancelled")]
    cancelled = [e for e in world.ok("GET", "/audit", "acme") if e["action"] == "contract.cancelled"]
    assert [e["object_ref"] for e in cancelled] == [f"C-{match['contract_id']}"]
    # the capacity is back on the book: a second round matches the same offer and request again
    again = world.ok("POST", "/exchange/clear", "operator", {})["matches"]
    assert [(m["offer_id"], m["request_id"], m["devices"]) for m in again] == [(supply["id"], demand["id"], 8)]
    assert world.ok("GET", "/allocations", "acme", contract=match["contract_id"]) == []


def test_never_offers_capacity_already_under_contract_or_offered(world: Api) -> None:
    nodes = fleet(world)
    lease = world.ok("POST", "/contracts", "operator", {
        "tenant": "beta", "capacity": {"kind": "nodes", "nodes": [nodes["h100"][0]]}, "pricing_model": "device_hour",
        "unit_price": "15", "start": "2026-11-01T00:00:00Z", "closed_months": 2})
    world.ok("POST", f"/contracts/{lease['id']}/activate", "operator", {})
    quota = world.ok("POST", "/contracts", "operator", {
        "tenant": "beta", "providers": ["p1"], "capacity": {"kind": "quota", "model": "h800", "quota": 10},
        "pricing_model": "device_hour", "unit_price": "15", "start": "2026-11-01T00:00:00Z", "closed_months": 2})
    world.ok("POST", f"/contracts/{quota['id']}/activate", "operator", {})
    leased = world.call("POST", "/exchange/offers", "p1", {**WINDOW, "site": "s1", "nodes": nodes["h100"][:2],
                                                           "pricing_model": "device_hour", "floor_price": "10"})
    assert leased.status_code == 409 and leased.json()["error"]["field"] == "nodes", leased.text
    assert "C-" in leased.json()["error"]["message"]
    held = world.call("POST", "/exchange/offers", "p1", {**WINDOW, "site": "s1", "model": "h800", "devices": 8,
                                                         "pricing_model": "device_hour", "floor_price": "10"})
    assert held.status_code == 409 and held.json()["error"]["field"] == "devices", held.text
    offer(world, "p1", site="s1", model="h800", devices=6, pricing_model="device_hour", floor_price="10")
    twice = world.call("POST", "/exchange/offers", "p1", {**WINDOW, "site": "s1", "model": "h800", "devices": 1,
                                                          "pricing_model": "device_hour", "floor_price": "10"})
    assert twice.status_code == 409 and twice.json()["error"]["field"] == "devices"
    # after the lease ends, its nodes may be offered
    later = {"start": "2027-01-02T00:00:00Z", "end": "2027-02-01T00:00:00Z"}
    offer(world, "p1", **later, site="s1", nodes=nodes["h100"][:2], pricing_model="device_hour", floor_price="10")
    declare_nodes(world, "s2", "h100b", "h100-sxm", 1)
    assert len(world.ok("GET", "/exchange/offers", "p1")) == 2


def test_withdrawn_orders_leave_the_book_and_are_audited(world: Api) -> None:
    fleet(world)
    supply = offer(world, "p1", site="s1", model="h800", devices=8, pricing_model="device_hour", floor_price="10")
    demand = request(world, "acme", amount=8, models=["h800"], max_price="20", regions=["cn-east-1"])
    book = world.ok("GET", "/exchange/book", "p2")
    assert [(b["model"], b["region"], b["devices_offered"], b["devices_requested"]) for b in book] == [
        ("h800", "cn-east-1", 8, 8)]
    assert world.ok("POST", f"/exchange/offers/{supply['id']}/withdraw", "p1", {})["state"] == "withdrawn"
    assert world.ok("POST", f"/exchange/requests/{demand['id']}/withdraw", "operator", {})["state"] == "withdrawn"
    assert world.ok("GET", "/exchange/book", "p2") == []
    again = world.call("POST", f"/exchange/offers/{supply['id']}/withdraw", "p1", {})
    assert again.status_code == 409 and again.json()["error"]["field"] == "state"
    assert world.ok("POST", "/exchange/clear", "operator", {})["matches"] == []
    p1_actions = [e["action"] for e in world.ok("GET", "/audit", "p1")]
    acme_actions = [e["action"] for e in world.ok("GET", "/audit", "acme")]
    assert "exchange.offer.withdraw" in p1_actions and "exchange.request.withdraw" not in p1_actions
    assert "exchange.request.withdraw" in acme_actions and "exchange.offer.create" not in acme_actions
    # the withdrawn devices may be offered again
    offer(world, "p1", site="s1", model="h800", devices=16, pricing_model="device_hour", floor_price="10")


def test_a_cleared_price_awaiting_signatures_counts_in_the_market_index(world: Api) -> None:
    from tests.api.conftest import h100_node
    from tests.exchange.access_cases import one_h100_offer, one_h100_request

    world.ok("POST", "/agent/register", "agent1", h100_node("gpu-a", 2))
    at = "2026-11-02T12:00:00Z"

    def h100_hour_points() -> int:
        index = world.ok("GET", "/market/index", "operator", at=at)
        return sum(e["points"] for e in index if e["model"] == "h100-sxm" and e["pricing_model"] == "device_hour")

    before = h100_hour_points()
    world.ok("POST", "/exchange/offers", "p1", one_h100_offer())
    world.ok("POST", "/exchange/requests", "acme", one_h100_request())
    assert len(world.ok("POST", "/exchange/clear", "operator", {})["matches"]) == 1
    assert h100_hour_points() == before + 1
