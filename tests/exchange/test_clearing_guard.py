"""The clearing round writes only against what it read: an order changed while the solver ran is
skipped (saying why), and nothing is matched twice."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from tests.api.conftest import Api
from tests.exchange.market_setup import fleet, offer, request
from zhisuan.exchange import clearing, service
from zhisuan.exchange import models as m
from zhisuan.store.base import transaction


@pytest.mark.parametrize("changed", ["request", "offer"])
def test_an_order_changed_during_the_solve_is_not_matched(world: Api, monkeypatch: pytest.MonkeyPatch,
                                                          changed: str) -> None:
    fleet(world)
    supply = offer(world, "p1", site="s1", model="h800", devices=8, pricing_model="device_hour", floor_price="10")
    demand = request(world, "acme", amount=8, models=["h800"], max_price="20")
    sessions = world.client.app.state.ctx.sessions  # type: ignore[attr-defined]
    solve = clearing.solve

    def withdraw_meanwhile(*args: Any) -> Any:
        with transaction(sessions) as session:  # another writer, while no clearing transaction is open
            row = (session.get(m.ExchangeRequest, demand["id"]) if changed == "request"
                   else session.get(m.ExchangeOffer, supply["id"]))
            assert row is not None
            service.bump(row, "withdrawn")
        return solve(*args)

    monkeypatch.setattr(clearing, "solve", withdraw_meanwhile)
    summary = world.ok("POST", "/exchange/clear", "operator", {})
    assert summary["matches"] == [] and len(summary["skipped"]) == 1
    assert f"its {changed} changed during the clearing" in summary["skipped"][0]
    assert world.ok("GET", "/exchange/matches", "operator") == []
    assert world.ok("GET", "/contracts", "operator") == []


def test_a_second_round_does_not_match_what_the_first_matched(world: Api) -> None:
    fleet(world)
    offer(world, "p1", site="s1", model="h800", devices=8, pricing_model="device_hour", floor_price="10")
    for tenant in ("acme", "beta"):
        request(world, tenant, amount=8, models=["h800"], max_price="20")
    first = world.ok("POST", "/exchange/clear", "operator", {})
    second = world.ok("POST", "/exchange/clear", "operator", {"method": "fcfs"})
    assert len(first["matches"]) == 1 and second["matches"] == []
    assert sum(match["devices"] for match in world.ok("GET", "/exchange/matches", "operator")) == 8


def test_cleared_prices_feed_the_index_until_their_contract_does(world: Api) -> None:
    fleet(world)
    offer(world, "p1", site="s1", model="h800", devices=8, pricing_model="device_hour", floor_price="10")
    request(world, "acme", amount=8, models=["h800"], max_price="20")
    match = world.ok("POST", "/exchange/clear", "operator", {})["matches"][0]
    sessions = world.client.app.state.ctx.sessions  # type: ignore[attr-defined]
    now = world.client.app.state.ctx.clock()  # type: ignore[attr-defined]
    with transaction(sessions) as session:
        points = service.cleared_price_points(session, now)
    assert [(p.model, str(p.pricing_model), p.unit_price, p.weight, p.source) for p in points] == [
        ("h800", "device_hour", Decimal(match["price"]), 8, f"cleared:M-{match['id']}")]
    for side in ("acme", "p1"):
        world.ok("POST", f"/exchange/matches/{match['id']}/accept", side, {})
    with transaction(sessions) as session:
        assert service.cleared_price_points(session, now) == []
