"""The operator's what-if through the API: a replay with the actual book and factor 1 is the issued
invoices to the fen; a +10 % book and a usage factor move revenue and margin; nothing is written;
bad input names its field."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.api.conftest import Api, Clock, h100_node
from tests.api.econ_setup import price_book
from zhisuan.billing.models import Invoice, UsageRecord
from zhisuan.store.base import transaction

D = Decimal


def issued_month(world: Api, clock: Clock) -> dict[str, Any]:
    """acme: 2 H100 × 10 h at 20.00 = 400.00; beta: ½ H100 × 4 h spot at 18.00 = 36.00 (its override, no spot discount);
    acme: 1.5 M input × 2.00 + 0.5 M output × 6.00 = 6.00 → 406.00. November invoiced and settled."""
    price_book(world)
    world.ok("POST", "/agent/register", "agent1", h100_node("gpu-a", 4))
    world.ok("POST", "/allocations", "operator", {"tenant": "acme", "node": "s1/gpu-a", "devices": [0, 1],
                                                 "start": "2026-11-01T08:00:00Z", "end": "2026-11-01T18:00:00Z"})
    world.ok("POST", "/allocations", "operator", {"tenant": "beta", "node": "s1/gpu-a", "devices": [2], "milli": 500,
                                                 "tier": "spot", "start": "2026-11-02T00:00:00Z",
                                                 "end": "2026-11-02T04:00:00Z"})
    world.ok("POST", "/usage/token-events", "operator", {"events": [{
        "event_id": "gw-1", "tenant": "acme", "provider": "p1", "model": "qwen-7b", "at": "2026-11-01T07:00:00Z",
        "input_tokens": 1_500_000, "output_tokens": 500_000}]})
    clock.now = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)
    issued = {i["tenant"]: D(i["total"]) for i in world.ok("POST", "/invoices/run", "operator", {"period": "2026-11"})}
    assert issued == {"acme": D("406.00"), "beta": D("36.00")}
    return world.ok("POST", "/settlements/run", "operator", {"period": "2026-11"})  # type: ignore[no-any-return]


def counts(world: Api) -> tuple[int, int, int]:
    with transaction(world.client.app.state.ctx.sessions) as session:  # type: ignore[attr-defined]
        return (session.execute(select(func.count(Invoice.id))).scalar_one(),
                session.execute(select(func.count(UsageRecord.key))).scalar_one(),
                session.execute(select(func.count(UsageRecord.key)).where(
                    UsageRecord.invoice_line_id.is_(None))).scalar_one())


def test_replay_with_the_actual_book_is_the_issued_invoices_and_writes_nothing(world: Api, clock: Clock) -> None:
    settled = issued_month(world, clock)
    before = counts(world)
    same = world.ok("POST", "/economics/what-if", "operator", {"period": "2026-11"})
    assert same["book"] == "std" and same["usage_records"] == before[1]
    assert {t["tenant"]: (D(t["actual"]), D(t["what_if"])) for t in same["tenants"]} == {
        "acme": (D("406.00"), D("406.00")), "beta": (D("36.00"), D("36.00"))}
    assert same["actual"] == same["what_if"]
    assert (D(same["actual"]["revenue"]), D(same["actual"]["margin"])) == (D(settled["revenue"]), D(settled["margin"]))
    assert [(p["provider"], p["payout"]) for p in same["providers"]] == \
        [(p["provider"], p["actual_payout"]) for p in same["providers"]]

    # +10 %: 440.00 + 6.60; ½ × 4 h × 19.80 = 39.60 → revenue 486.20.
    dearer = world.ok("POST", "/economics/what-if", "operator", {"period": "2026-11", "price_change_percent": "10"})
    assert {t["tenant"]: D(t["what_if"]) for t in dearer["tenants"]} == {"acme": D("446.60"), "beta": D("39.60")}
    assert D(dearer["what_if"]["revenue"]) == D("486.20")
    assert D(dearer["what_if"]["margin"]) == D("486.20") - D(dearer["what_if"]["payouts"])
    # Half the usage at the book's prices: 203.00 and 18.00.
    half = world.ok("POST", "/economics/what-if", "operator", {"period": "2026-11", "usage_factor": "0.5",
                                                               "book": "std", "version": 1})
    assert {t["tenant"]: D(t["what_if"]) for t in half["tenants"]} == {"acme": D("203.00"), "beta": D("18.00")}
    assert counts(world) == before  # nothing invoiced, metered or marked


@pytest.mark.parametrize(("body", "field"), [
    ({"period": "2026-13"}, "period"),
    ({"period": "someday"}, "period"),
    ({"period": "2026-11", "book": "nope"}, "book"),
    ({"period": "2026-11", "version": 9}, "version"),
    ({"period": "2026-11", "usage_factor": "-1"}, "usage_factor"),
    ({"period": "2026-11", "price_change_percent": "-100"}, "price_change_percent"),
    ({"period": "2026-11", "factor": "2"}, "factor"),
])
def test_bad_input_names_its_field(world: Api, body: dict[str, Any], field: str) -> None:
    price_book(world)
    response = world.call("POST", "/economics/what-if", "operator", body)
    assert response.status_code == 422, response.text
    assert field in response.text


def test_only_the_operator_replays(world: Api) -> None:
    price_book(world)
    assert world.call("POST", "/economics/what-if", "acme", {"period": "2026-11"}).status_code == 403
    assert world.call("POST", "/economics/what-if", "p1", {"period": "2026-11"}).status_code == 403
