"""Token usage per key, model and day (``GET /usage/summary``), against the invoice of the same period.

Price book 'tok' (from 2026-11-01): qwen-7b 2.00 / 6.00 and smol 0.50 / 1.00 CNY per million
input / output tokens. Every expectation below is computed by hand in the comments.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from tests.api.conftest import Api, Clock
from tests.api.econ_setup import clock_at
from zhisuan.billing.gateway_sink import LedgerUsageSink
from zhisuan.gateway.protocols import UsageEvent

RATES = [("qwen-7b", "input_tokens", "2.00"), ("qwen-7b", "output_tokens", "6.00"),
         ("smol", "input_tokens", "0.50"), ("smol", "output_tokens", "1.00")]


def token_book(api: Api) -> None:
    with clock_at(api, "2026-11-01T00:00:00Z"):  # in force from then: a book cannot take effect in the past
        api.ok("POST", "/pricebooks", "operator", {
            "name": "tok", "effective_from": "2026-11-01T00:00:00Z",
            "rates": [{"model": m, "pricing_model": p, "unit_price": u} for m, p, u in RATES]})


def event(event_id: str, key: str | None, model: str, at: str, inp: int, out: int,
          tenant: str = "acme") -> dict[str, Any]:
    body = {"event_id": event_id, "tenant": tenant, "provider": "p1", "model": model, "at": at,
            "input_tokens": inp, "output_tokens": out}
    return body if key is None else {**body, "api_key_id": key}


def key_ids(api: Api) -> tuple[str, str, str]:
    """acme's two keys (the world's and a new one) and beta's key."""
    k1 = api.ok("GET", "/keys", "acme")[0]["key_id"]
    k2 = api.ok("POST", "/keys", "acme", {"name": "second"})["key_id"]
    kb = api.ok("GET", "/keys", "beta")[0]["key_id"]
    assert len({k1, k2, kb}) == 3
    return k1, k2, kb


def scenario(api: Api, clock: Clock) -> tuple[str, str, str]:
    """Seven acme events over 3–4 Nov (two keys and no key, two models), one in October, one of beta."""
    token_book(api)
    k1, k2, kb = key_ids(api)
    clock.now = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)
    events = [
        event("e1", k1, "qwen-7b", "2026-11-03T10:00:00Z", 1_000_000, 250_000),
        event("e2", k1, "qwen-7b", "2026-11-03T23:59:59Z", 500_000, 0),  # one record (:in)
        event("e3", k1, "qwen-7b", "2026-11-04T00:00:00Z", 0, 100_000),  # one record (:out), next UTC day
        event("e4", k2, "qwen-7b", "2026-11-04T12:00:00Z", 300_000, 200_000),
        event("e5", k2, "smol", "2026-11-03T05:00:00Z", 1_010_000, 2_000_000),
        event("e6", k2, "smol", "2026-11-04T06:00:00Z", 1_010_000, 0),
        event("e7", None, "qwen-7b", "2026-11-04T09:00:00Z", 100, 100),  # posted without a key
        event("o1", k1, "qwen-7b", "2026-10-31T23:59:59Z", 1_000_000, 0),  # October: not in 2026-11
        event("b1", kb, "qwen-7b", "2026-11-03T10:00:00Z", 2_000_000, 0, tenant="beta"),
    ]
    result = api.ok("POST", "/usage/token-events", "operator", {"events": events})
    assert result["status"] == "accepted" and len(result["accepted"]) == 13  # e1 e4 e5 e7: two records each
    return k1, k2, kb


def rows_by(summary: dict[str, Any], *dims: str) -> dict[tuple[Any, ...], tuple[int, int, int, str | None]]:
    return {tuple(r[d] for d in dims): (r["requests"], r["input_tokens"], r["output_tokens"], r["amount"])
            for r in summary["rows"]}


def totals(summary: dict[str, Any]) -> tuple[int, int, int, str | None]:
    t = summary["totals"]
    return t["requests"], t["input_tokens"], t["output_tokens"], t["amount"]


def test_usage_per_key_model_day_agrees_with_the_invoice(world: Api, clock: Clock) -> None:
    k1, k2, _ = scenario(world, clock)
    fine = world.ok("GET", "/usage/summary", "acme", group_by="key,model,day", period="2026-11")
    assert fine["book"] == "tok" and fine["currency"] == "CNY" and fine["group_by"] == ["key", "model", "day"]
    assert (fine["start"], fine["end"]) == ("2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z")
    assert rows_by(fine, "key", "model", "day") == {
        # e1 + e2: 1.5M in × 2.00 = 3.00, 0.25M out × 6.00 = 1.50
        (k1, "qwen-7b", "2026-11-03"): (2, 1_500_000, 250_000, "4.50"),
        # e3 at 00:00:00 belongs to the 4th: 0.1M out × 6.00
        (k1, "qwen-7b", "2026-11-04"): (1, 0, 100_000, "0.60"),
        (k2, "qwen-7b", "2026-11-04"): (1, 300_000, 200_000, "1.80"),  # 0.60 + 1.20
        (k2, "smol", "2026-11-03"): (1, 1_010_000, 2_000_000, "2.51"),  # 0.505 → 0.51 (half up) + 2.00
        (k2, "smol", "2026-11-04"): (1, 1_010_000, 0, "0.51"),  # 0.505 → 0.51
        (None, "qwen-7b", "2026-11-04"): (1, 100, 100, "0.00"),  # 0.0002 + 0.0006, each rounds to 0.00
    }
    assert [r["key"] for r in fine["rows"]][-1] is None  # rows sorted by the group, no key last
    # Totals are priced per invoice line: qwen in 1,800,100 → 3.6002 → 3.60; qwen out 550,100 → 3.3006
    # → 3.30; smol in 2,020,000 → 1.01; smol out 2,000,000 → 2.00: 9.91 (rows sum to 9.92: the two 0.505s).
    assert totals(fine) == (7, 3_820_100, 2_550_100, "9.91")
    assert sum(Decimal(r["amount"]) for r in fine["rows"]) == Decimal("9.92") and len(fine["notes"]) == 1

    by_model = world.ok("GET", "/usage/summary", "acme", group_by="model", period="2026-11")
    assert rows_by(by_model, "model") == {("qwen-7b",): (5, 1_800_100, 550_100, "6.90"),  # 3.60 + 3.30
                                          ("smol",): (2, 2_020_000, 2_000_000, "3.01")}  # 1.01 + 2.00
    assert by_model["notes"] == [] and totals(by_model) == totals(fine)
    by_key = world.ok("GET", "/usage/summary", "acme", group_by="key", period="2026-11")
    assert rows_by(by_key, "key") == {(k1,): (3, 1_500_000, 350_000, "5.10"),  # 3.00 + 0.35M × 6 = 2.10
                                      (k2,): (3, 2_320_000, 2_200_000, "4.81"),  # 0.60 + 1.20 + 1.01 + 2.00
                                      (None,): (1, 100, 100, "0.00")}
    by_day = world.ok("GET", "/usage/summary", "acme", group_by="day", period="2026-11")
    # 3rd: e1 e2 e5 = 3.00 + 1.50 + 0.51 + 2.00; 4th: e3 e4 e6 e7 = qwen in 300,100 → 0.60, qwen out 300,100
    # → 1.8006 → 1.80, smol in 0.51
    assert rows_by(by_day, "day") == {("2026-11-03",): (3, 2_510_000, 2_250_000, "7.01"),
                                      ("2026-11-04",): (4, 1_310_100, 300_100, "2.91")}

    # The invoice of the period bills exactly what the summary says, line by line.
    [invoice] = [i for i in world.ok("POST", "/invoices/run", "operator", {"period": "2026-11"})
                 if i["tenant"] == "acme"]
    per_model: dict[str, Decimal] = {}
    for line in invoice["lines"]:
        per_model[line["model"]] = per_model.get(line["model"], Decimal(0)) + Decimal(line["amount"])
    assert {m: str(a) for m, a in per_model.items()} == {r["model"]: r["amount"] for r in by_model["rows"]}
    assert invoice["total"] == fine["totals"]["amount"] == "9.91"
    again = world.ok("GET", "/usage/summary", "acme", group_by="key,model,day", period="2026-11")
    assert again["rows"] == fine["rows"]  # invoiced records are still usage


def test_filters_days_and_scoping(world: Api, clock: Clock) -> None:
    k1, k2, kb = scenario(world, clock)
    one_key = world.ok("GET", "/usage/summary", "acme", group_by="model", period="2026-11", key=k1)
    assert rows_by(one_key, "model") == {("qwen-7b",): (3, 1_500_000, 350_000, "5.10")}
    # from/to are UTC days, both included: 31 Oct .. 3 Nov holds o1 + e1 e2 of k1
    days = world.ok("GET", "/usage/summary", "acme", group_by="day", key=k1,
                    **{"from": "2026-10-31", "to": "2026-11-03"})
    assert (days["start"], days["end"]) == ("2026-10-31T00:00:00Z", "2026-11-04T00:00:00Z")
    assert rows_by(days, "day") == {("2026-10-31",): (1, 1_000_000, 0, None),  # before the book's first version
                                    ("2026-11-03",): (2, 1_500_000, 250_000, "4.50")}
    assert days["rows"][0]["note"] and "no version in force" in days["rows"][0]["note"]
    smol = world.ok("GET", "/usage/summary", "operator", group_by="tenant,key", period="2026-11", model="smol")
    assert rows_by(smol, "tenant", "key") == {("acme", k2): (2, 2_020_000, 2_000_000, "3.01")}

    # Operators see both tenants; beta only its own key; p1 everything credited to it; p2 nothing.
    both = world.ok("GET", "/usage/summary", "operator", group_by="tenant", period="2026-11")
    assert rows_by(both, "tenant") == {("acme",): (7, 3_820_100, 2_550_100, "9.91"),
                                       ("beta",): (1, 2_000_000, 0, "4.00")}  # 2M × 2.00
    assert rows_by(world.ok("GET", "/usage/summary", "beta", group_by="key", period="2026-11"), "key") == {
        (kb,): (1, 2_000_000, 0, "4.00")}
    assert world.ok("GET", "/usage/summary", "beta", group_by="model", period="2026-11", model="smol")["rows"] == []
    assert totals(world.ok("GET", "/usage/summary", "p1", group_by="model", period="2026-11")) == (
        8, 5_820_100, 2_550_100, "13.91")
    empty = world.ok("GET", "/usage/summary", "p2", group_by="model", period="2026-11")
    assert empty["rows"] == [] and totals(empty) == (0, 0, 0, "0.00")
    for who, params, status, field in [
        ("beta", {"key": k1}, 404, "key"),  # acme's key does not exist for beta
        ("beta", {"tenant": "acme"}, 404, "tenant"),  # another tenant answers like an unknown one
        ("beta", {"group_by": "tenant"}, 403, "group_by"),
        ("p1", {"group_by": "tenant,model"}, 403, "group_by"),
        ("operator", {"key": "nosuchkey"}, 404, "key"),
        ("operator", {"tenant": "nobody"}, 404, "tenant"),
    ]:
        response = world.call("GET", "/usage/summary", who, **params)
        assert response.status_code == status, (who, params, response.text)
        assert response.json()["error"]["field"] == field
    assert world.call("GET", "/usage/summary", None).status_code == 401


@pytest.mark.parametrize(("params", "field"), [
    ({"group_by": "key,colour"}, "group_by"),
    ({"group_by": "model,model"}, "group_by"),
    ({"period": "2026-13"}, "period"),
    ({"period": "2026-11", "from": "2026-11-01"}, "period"),
    ({"from": "2026-11-31"}, "from"),
    ({"from": "20261101"}, "from"),
    ({"to": "yesterday"}, "to"),
    ({"from": "2026-11-05", "to": "2026-11-04"}, "to"),
    ({"from": "2025-01-01", "to": "2026-01-02"}, "to"),  # 367 days: 366 is the most
])
def test_bad_summary_queries_name_the_field(world: Api, params: dict[str, str], field: str) -> None:
    response = world.call("GET", "/usage/summary", "operator", **params)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field


def test_key_must_exist_and_belong_to_the_events_tenant(world: Api, clock: Clock) -> None:
    k1, k2, kb = key_ids(world)
    good = event("g1", k1, "qwen-7b", "2026-11-01T07:00:00Z", 10, 5)
    before = world.ok("GET", "/usage", "operator")
    for events, status, field in [
        ([good, event("x", "nosuchkey", "qwen-7b", "2026-11-01T07:00:00Z", 1, 1)], 422, "events.1.api_key_id"),
        ([good, event("x", kb, "qwen-7b", "2026-11-01T07:00:00Z", 1, 1)], 422, "events.1.api_key_id"),  # beta's
        ([event("x", "bad key!", "qwen-7b", "2026-11-01T07:00:00Z", 1, 1)], 422, "events.0.api_key_id"),
        ([good, {**good, "api_key_id": k2}], 409, "events.1.api_key_id"),  # one event, two keys
    ]:
        response = world.call("POST", "/usage/token-events", "operator", {"events": events})
        assert response.status_code == status, response.text
        assert response.json()["error"]["field"] == field
    assert world.ok("GET", "/usage", "operator") == before  # nothing of those batches was written

    assert world.ok("POST", "/usage/token-events", "operator", {"events": [good]})["status"] == "accepted"
    assert {u["api_key_id"] for u in world.ok("GET", "/usage", "acme")} == {k1}
    assert world.ok("POST", "/usage/token-events", "operator", {"events": [good]})["status"] == "replayed"
    provider_key = world.ok("GET", "/keys", "p1")[0]["key_id"]  # a provider's user: no tenant
    for other, status in (({**good, "api_key_id": provider_key}, 422), ({**good, "api_key_id": None}, 409)):
        response = world.call("POST", "/usage/token-events", "operator", {"events": [other]})
        assert response.status_code == status, response.text
    # the event is counted once: one request
    summary = world.ok("GET", "/usage/summary", "acme", group_by="key", period="2026-11")
    assert rows_by(summary, "key") == {(k1,): (1, 10, 5, None)}  # no price book yet
    assert summary["notes"] and summary["book"] is None


def test_model_without_a_token_price_has_no_amount(world: Api) -> None:
    token_book(world)
    k1 = world.ok("GET", "/keys", "acme")[0]["key_id"]
    world.ok("POST", "/usage/token-events", "operator", {"events": [
        event("m1", k1, "mystery", "2026-11-01T07:00:00Z", 1000, 1000),
        event("m2", k1, "qwen-7b", "2026-11-01T07:30:00Z", 1_000_000, 0)]})
    summary = world.ok("GET", "/usage/summary", "acme", group_by="model", period="2026-11")
    mystery, qwen = summary["rows"]
    assert (mystery["model"], mystery["amount"], qwen["model"], qwen["amount"]) == ("mystery", None, "qwen-7b", "2.00")
    assert "mystery" in mystery["note"] and qwen["note"] is None
    assert summary["totals"]["amount"] is None and summary["totals"]["requests"] == 2


def test_gateway_sink_carries_the_key(world: Api) -> None:
    token_book(world)
    k1, k2, kb = key_ids(world)
    acme_id = world.ok("GET", "/tenants/acme", "acme")["id"]
    sink = LedgerUsageSink(world.client.app.state.ctx.sessions, provider="p1")  # type: ignore[attr-defined]
    at = datetime(2026, 11, 1, 7, 0, tzinfo=UTC).timestamp()

    def gw(event_id: str, key: str, prompt: int, completion: int) -> UsageEvent:
        return UsageEvent(event_id=event_id, key_id=key, tenant_id=f"tenant-{acme_id}", model="qwen-7b",
                          replica="r0", prompt_tokens=prompt, completion_tokens=completion, stream=False,
                          status="ok", started_at=at - 1, ended_at=at)

    batch = [gw("a", k1, 1_000_000, 0), gw("b", k2, 0, 1_000_000), gw("c", kb, 500_000, 0),
             gw("d", "gone", 500_000, 0), gw("e", k1, 0, 0)]  # c, d: not acme's keys; e: no tokens
    asyncio.run(sink.ingest(batch))
    asyncio.run(sink.ingest(batch))  # a re-sent batch counts once
    summary = world.ok("GET", "/usage/summary", "acme", group_by="key", period="2026-11")
    # a: 1M in × 2.00; b: 1M out × 6.00; c + d are recorded without a key: 1M in × 2.00
    assert rows_by(summary, "key") == {(k1,): (1, 1_000_000, 0, "2.00"), (k2,): (1, 0, 1_000_000, "6.00"),
                                       (None,): (2, 1_000_000, 0, "2.00")}


def test_rolled_up_usage_counts_and_bills_like_one_event_per_request(world: Api, clock: Clock) -> None:
    """The same 30 requests (two keys, two models, 0.3 s apart across a UTC midnight) posted one event per
    request in November and rolled up per key × model × second in December: every summary row (requests,
    tokens, amount) and the invoice total agree, and the roll-up wrote far fewer records."""
    from zhisuan.billing.gateway_sink import rolled_up_token_events, token_events

    token_book(world)
    k1, k2, _ = key_ids(world)
    acme_id = world.ok("GET", "/tenants/acme", "acme")["id"]
    clock.now = datetime(2027, 1, 2, tzinfo=UTC)

    def requests_from(base: datetime) -> list[UsageEvent]:
        start = base.timestamp()
        return [UsageEvent(event_id=f"{base:%m}-{n}", key_id=(k1, k2)[n % 2], tenant_id=f"tenant-{acme_id}",
                           model=("qwen-7b", "smol")[n % 3 == 0], replica="r0", prompt_tokens=1_000 + 37 * n,
                           completion_tokens=(n * 911) % 5_000, stream=False, status="ok",
                           started_at=start + 0.3 * n - 1, ended_at=start + 0.3 * n) for n in range(30)]

    november = token_events(requests_from(datetime(2026, 11, 3, 23, 59, 56, 500_000, tzinfo=UTC)), "p1")
    december = rolled_up_token_events(requests_from(datetime(2026, 12, 3, 23, 59, 56, 500_000, tzinfo=UTC)), "p1")
    assert len(december) < len(november) and sum(e.requests for e in december) == 30
    for batch in (november, december, december):  # the December batch twice: a replay counts once
        world.ok("POST", "/usage/token-events", "operator",
                 {"events": [e.model_dump(mode="json", exclude_defaults=True) for e in batch]})

    def rows(period: str) -> dict[tuple[Any, ...], tuple[int, int, int, str | None]]:
        summary = world.ok("GET", "/usage/summary", "acme", group_by="key,model,day", period=period)
        by = rows_by(summary, "key", "model", "day")
        return {(key, model, day[8:]): row for (key, model, day), row in by.items()}

    assert rows("2026-11") == rows("2026-12") and len(rows("2026-11")) == 8  # 2 keys × 2 models × 2 days
    assert sum(r[0] for r in rows("2026-12").values()) == 30
    invoices = world.ok("POST", "/invoices/run", "operator", {"period": "2026-11"}) + \
        world.ok("POST", "/invoices/run", "operator", {"period": "2026-12"})
    assert [i["period"] for i in invoices] == ["2026-11", "2026-12"] and invoices[0]["total"] == invoices[1]["total"]


def test_the_summary_shows_each_budget_with_its_period_and_what_was_spent_in_it(world: Api, clock: Clock) -> None:
    """acme: a monthly money budget of 10.00; a new key k3: 3M tokens for all time; k2 (no budget) is listed
    only when asked about. It is 1 Dec: the monthly period holds only December's usage, the all-time one
    all of k3's."""
    _, k2, _ = scenario(world, clock)  # November usage; clock: 2026-12-01T01:00Z
    world.ok("PATCH", "/tenants/acme/limits", "operator", {"money_budget": "10.00", "budget_period": "monthly"})
    k3 = world.ok("POST", "/keys", "acme", {"name": "capped", "token_budget": 3_000_000,
                                            "budget_period": "none"})["key_id"]
    world.ok("POST", "/usage/token-events", "operator", {"events": [
        event("n1", k3, "qwen-7b", "2026-11-20T00:00:00Z", 1_000_000, 0),         # 2.00
        event("d1", k3, "qwen-7b", "2026-12-01T00:30:00Z", 1_000_000, 100_000),   # 2.00 + 0.60
        event("d2", k2, "smol", "2026-12-01T00:40:00Z", 2_000_000, 0)]})          # 1.00
    budgets = world.ok("GET", "/usage/summary", "acme", group_by="model")["budgets"]
    view = {(b["scope"], b["ref"]): (b["budget_period"], b["period"], b["end"], b["token_budget"], b["tokens_used"],
                                     b["money_budget"], b["money_used"]) for b in budgets}
    assert view == {
        ("tenant", "acme"): ("monthly", "2026-12", "2027-01-01T00:00:00Z", None, 3_100_000, "10.00", "3.60"),
        ("key", k3): ("none", "all", None, 3_000_000, 2_100_000, None, "4.60"),
    }, view
    asked = world.ok("GET", "/usage/summary", "operator", group_by="model", key=k2)["budgets"]
    assert [(b["scope"], b["ref"], b["tokens_used"], b["money_used"]) for b in asked] == [
        ("tenant", "acme", 3_100_000, "3.60"), ("key", k2, 2_000_000, "1.00")]
    assert world.ok("GET", "/usage/summary", "operator", group_by="tenant")["budgets"] == []  # not one tenant
