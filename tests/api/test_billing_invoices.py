"""Ledger → usage records → invoices → settlements through the API, with the trace kept."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from tests.api.conftest import Api, Clock, h100_node
from tests.api.econ_setup import START, a800_node, price_book


def tokens(event_id: str, **extra: Any) -> dict[str, Any]:
    return {"event_id": event_id, "tenant": "acme", "provider": "p1", "model": "qwen-7b",
            "at": "2026-11-01T07:00:00Z", "input_tokens": 1_500_000, "output_tokens": 500_000, **extra}


def usage_count(api: Api) -> int:
    return len(api.ok("GET", "/usage", "operator"))


def test_invoice_lines_trace_to_usage_records_and_book_version(world: Api, clock: Clock) -> None:
    book = price_book(world)
    world.ok("POST", "/agent/register", "agent1", h100_node("gpu-a", 4))
    held = world.ok("POST", "/allocations", "operator", {
        "tenant": "acme", "node": "s1/gpu-a", "devices": [0, 1], "purpose": "job", "ref": "job:7",
        "start": "2026-11-01T08:00:00Z", "end": "2026-11-01T18:00:00Z"})
    assert [a["device_index"] for a in held] == [0, 1] and held[0]["billable"] is True
    spot = world.ok("POST", "/allocations", "operator", {
        "tenant": "beta", "node": "s1/gpu-a", "devices": [2], "milli": 500, "tier": "spot",
        "start": "2026-11-02T00:00:00Z", "end": "2026-11-02T04:00:00Z"})
    assert world.ok("POST", "/usage/token-events", "operator", {"events": [tokens("gw-1")]})["status"] == "accepted"

    assert world.call("POST", "/invoices/run", "operator", {"period": "2026-11"}).status_code == 409  # not over
    clock.now = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)
    invoices = {i["tenant"]: i for i in world.ok("POST", "/invoices/run", "operator", {"period": "2026-11"})}
    acme, beta = invoices["acme"], invoices["beta"]
    assert acme["number"] == "INV-acme-2026-11" and acme["book"] == "std"
    by_model = {(line["model"], line["pricing_model"]): line for line in acme["lines"]}
    hours = by_model[("h100-sxm", "device_hour")]
    assert hours["amount"] == "400.00" and hours["billable_quantity"] == "20"  # 2 devices × 10 h × 20.00
    assert hours["price_source"] == f"book:{book['id']}@v1"
    assert by_model[("qwen-7b", "input_tokens")]["amount"] == "3.00"
    assert by_model[("qwen-7b", "output_tokens")]["amount"] == "3.00"
    assert acme["total"] == "406.00"
    # beta: its tenant override (18.00) wins over the base rate — and carries no spot discount of its
    # own (discounts belong to the entry that matched): half a device for 4 h = 36.00
    assert [(line["list_price"], line["discount"], line["amount"]) for line in beta["lines"]] == [
        ("18.00", "0", "36.00")]

    # The trace: each line's keys are exactly the usage records of that allocation / event.
    usage = world.ok("GET", "/usage", "acme", period="2026-11")
    alloc_keys = {u["key"] for u in usage if u["source_kind"] == "allocation"}
    start_epoch = 1793520000  # 2026-11-01T08:00Z
    assert set(hours["usage_record_keys"]) == alloc_keys == {f"alloc:{a['id']}:{start_epoch}" for a in held}
    assert {u["source_id"] for u in usage if u["source_kind"] == "allocation"} == {str(a["id"]) for a in held}
    assert all(u["invoice_line_id"] is not None for u in usage)
    assert spot[0]["tenant"] == "beta"

    # Running the period again bills nothing twice; late usage goes on a supplement.
    assert world.ok("POST", "/invoices/run", "operator", {"period": "2026-11"}) == []
    world.ok("POST", "/usage/token-events", "operator", {"events": [tokens("gw-late", input_tokens=0)]})
    supplement = world.ok("POST", "/invoices/run", "operator", {"period": "2026-11"})
    assert [(i["number"], i["total"]) for i in supplement] == [("INV-acme-2026-11-2", "3.00")]

    # Exports
    exported = world.client.get(f"/api/v1/invoices/{acme['number']}/export", params={"format": "csv"},
                                headers={"Authorization": f"Bearer {world.keys['acme']}"})
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert rows[-1]["line_no"] == "TOTAL" and rows[-1]["amount"] == "406.00"
    assert {r["tenant_id"] for r in rows} == {"acme"} and "p1" in {r["provider_id"] for r in rows}
    as_json = world.ok("GET", f"/invoices/{acme['id']}/export", "acme", format="json")
    assert as_json["total"] == "406.00" and sum(len(li["usage_record_keys"]) for li in as_json["lines"]) == 4

    # Scoping: beta and providers cannot read acme's invoice.
    assert world.call("GET", f"/invoices/{acme['id']}", "beta").status_code == 404
    assert world.call("GET", f"/invoices/{acme['id']}", "p1").status_code == 403
    assert [i["number"] for i in world.ok("GET", "/invoices", "beta")] == ["INV-beta-2026-11"]

    # Settlement: p1 earns every line (all capacity and tokens are p1's); share 0.7.
    summary = world.ok("POST", "/settlements/run", "operator", {"period": "2026-11"})
    revenue = Decimal("406.00") + Decimal("36.00") + Decimal("3.00")
    assert summary["revenue"] == str(revenue)
    assert [(s["provider"], s["payout"]) for s in summary["settlements"]] == [("p1", "311.50")]
    assert Decimal(summary["margin"]) == revenue - Decimal("311.50")
    assert world.ok("GET", "/margin/2026-11", "operator")["margin"] == summary["margin"]
    assert world.ok("GET", "/settlements", "p2") == []
    assert world.ok("GET", "/settlements", "p1")[0]["payout"] == "311.50"


def test_contract_lease_bills_the_month_at_the_contract_price(world: Api, clock: Clock) -> None:
    price_book(world)
    a800_node(world)
    contract = world.ok("POST", "/contracts", "operator", {
        "tenant": "acme", "capacity": {"kind": "nodes", "nodes": ["s1/a800-1"]}, "pricing_model": "server_month",
        "unit_price": "75000", "start": START, "closed_months": 36, "open_months": 24})
    world.ok("POST", f"/contracts/{contract['id']}/activate", "operator", {})
    # acme's own job on its leased node is recorded in the ledger but billed by the contract
    job = world.ok("POST", "/allocations", "operator", {"tenant": "acme", "node": "s1/a800-1", "devices": [0]})
    assert job[0]["contract_id"] == contract["id"] and job[0]["billable"] is False
    clock.now = datetime(2026, 12, 3, tzinfo=UTC)
    metered = world.ok("POST", "/metering/run", "operator", {"until": "2026-12-01T00:00:00Z"})
    assert metered == {"until": "2026-12-01T00:00:00Z", "allocations": 8, "records": 8}
    again = world.ok("POST", "/metering/run", "operator", {"until": "2026-12-01T00:00:00Z"})
    assert again["records"] == 0  # idempotent: the watermark moved
    invoice = world.ok("POST", "/invoices/run", "operator", {"period": "2026-11"})[0]
    [line] = invoice["lines"]
    assert line["amount"] == "75000.00" and line["price_source"] == f"contract:{contract['id']}@a0"
    assert len(line["usage_record_keys"]) == 8 and line["unit"] == "server-month"


def test_book_version_in_force_prices_each_stretch(world: Api, clock: Clock) -> None:
    price_book(world)
    world.ok("POST", "/pricebooks/std/versions", "operator", {
        "effective_from": "2026-11-16T00:00:00Z",
        "rates": [{"model": "h100-sxm", "pricing_model": "device_hour", "unit_price": "30"}]})
    world.ok("POST", "/agent/register", "agent1", h100_node("gpu-a", 1))
    world.ok("POST", "/allocations", "operator", {"tenant": "acme", "node": "s1/gpu-a",
                                                  "start": "2026-11-15T23:00:00Z", "end": "2026-11-16T01:00:00Z"})
    clock.now = datetime(2026, 12, 2, tzinfo=UTC)
    [invoice] = world.ok("POST", "/invoices/run", "operator", {"period": "2026-11"})
    assert [(li["price_source"].split("@")[1], li["amount"]) for li in invoice["lines"]] == [
        ("v1", "20.00"), ("v2", "30.00")]


def test_token_ingestion_is_idempotent(world: Api) -> None:
    first = world.ok("POST", "/usage/token-events", "operator", {"events": [tokens("gw-9")]})
    assert first == {"status": "accepted", "accepted": ["tok:gw-9:in", "tok:gw-9:out"], "replayed": []}
    replay = world.call("POST", "/usage/token-events", "operator", {"events": [tokens("gw-9")]})
    assert replay.status_code == 200 and replay.json()["status"] == "replayed"
    assert usage_count(world) == 2
    audit = len(world.ok("GET", "/audit", "operator", limit=1000))
    clash = world.call("POST", "/usage/token-events", "operator",
                       {"events": [tokens("gw-10"), tokens("gw-9", output_tokens=7)]})
    assert clash.status_code == 409 and "tok:gw-9:out" in clash.json()["error"]["message"]
    assert usage_count(world) == 2 and len(world.ok("GET", "/audit", "operator", limit=1000)) == audit
    for event, field in [(tokens("x", tenant="nobody"), "events.0.tenant"),
                         (tokens("x", input_tokens=-1), "events.0.input_tokens"),
                         (tokens("x", input_tokens=0, output_tokens=0), "events.0.input_tokens"),
                         (tokens("bad id"), "events.0.event_id")]:
        response = world.call("POST", "/usage/token-events", "operator", {"events": [event]})
        assert response.status_code == 422 and response.json()["error"]["field"] == field, response.text
    assert usage_count(world) == 2
    assert world.call("POST", "/usage/token-events", "acme", {"events": [tokens("gw-11")]}).status_code == 403


def test_ledger_rules_and_placement_views(world: Api) -> None:
    from zhisuan.ledger.service import exclusive_node_tenants, held_shares

    world.ok("POST", "/agent/register", "agent1", h100_node("gpu-a", 2))
    a800_node(world)
    world.ok("POST", "/allocations", "operator", {"tenant": "acme", "node": "s1/gpu-a", "devices": [0], "milli": 600})
    before = len(world.ok("GET", "/allocations", "operator"))
    for body, status, field in [
        ({"tenant": "beta", "node": "s1/gpu-a", "devices": [0], "milli": 500}, 409, "devices.0"),
        ({"tenant": "beta", "node": "s1/gpu-a", "devices": [5]}, 422, "devices.0"),
        ({"tenant": "beta", "node": "s1/gpu-a", "milli": 0}, 422, "milli"),
        ({"tenant": "beta", "node": "s1/gpu-a", "start": "2026-11-02T00:00:00Z", "end": "2026-11-01T00:00:00Z"},
         422, "end"),
    ]:
        response = world.call("POST", "/allocations", "operator", body)
        assert response.status_code == status and response.json()["error"]["field"] == field, response.text
    assert len(world.ok("GET", "/allocations", "operator")) == before
    shared = world.ok("POST", "/allocations", "operator",
                      {"tenant": "beta", "node": "s1/gpu-a", "devices": [0], "milli": 400})
    contract = world.ok("POST", "/contracts", "operator", {
        "tenant": "beta", "capacity": {"kind": "nodes", "nodes": ["s1/a800-1"]}, "pricing_model": "server_month",
        "unit_price": "70000", "start": START, "closed_months": 12})
    world.ok("POST", f"/contracts/{contract['id']}/activate", "operator", {})
    at = datetime(2026, 11, 1, 9, tzinfo=UTC)
    with world.client.app.state.ctx.sessions() as session:  # type: ignore[attr-defined]
        shares = held_shares(session, at)
        leases = exclusive_node_tenants(session, at)
        tenants = {node["name"]: node["id"] for node in world.ok("GET", "/nodes", "operator")}
    assert sorted(shares.values()) == [1000]
    beta_id = world.ok("GET", "/tenants/beta", "beta")["id"]
    assert leases == {tenants["a800-1"]: beta_id}
    ended = world.ok("POST", f"/allocations/{shared[0]['id']}/end", "operator", {"at": "2026-11-01T09:00:00Z"})
    assert ended["end"] is not None
    assert world.call("POST", f"/allocations/{shared[0]['id']}/end", "operator",
                      {"at": "2030-01-01T00:00:00Z"}).status_code == 409


def test_an_early_termination_penalty_is_invoiced_in_its_period_and_settled(world: Api, clock: Clock) -> None:
    price_book(world)
    a800_node(world)
    contract = world.ok("POST", "/contracts", "operator", {
        "tenant": "acme", "capacity": {"kind": "nodes", "nodes": ["s1/a800-1"]}, "pricing_model": "server_month",
        "unit_price": "75000", "start": START, "closed_months": 36, "penalty_rate": "0.20", "deposit": "150000"})
    world.ok("POST", f"/contracts/{contract['id']}/activate", "operator", {})
    ended = world.ok("POST", f"/contracts/{contract['id']}/terminate", "acme",
                     {"notice_at": "2026-11-10T00:00:00Z", "effective_at": "2026-12-15T00:00:00Z"})
    penalty = Decimal(ended["transitions"][-1]["penalty"])
    assert penalty > 0
    clock.now = datetime(2027, 1, 2, tzinfo=UTC)
    november = world.ok("POST", "/invoices/run", "operator", {"period": "2026-11"})[0]
    assert {line["kind"] for line in november["lines"]} == {"usage"}
    december = world.ok("POST", "/invoices/run", "operator", {"period": "2026-12"})[0]
    [line] = [line for line in december["lines"] if line["kind"] == "penalty"]
    assert Decimal(line["amount"]) == penalty and line["contract_id"] == contract["id"]
    assert line["provider"] == "p1" and line["unit"] == "penalty" and line["usage_record_keys"] == []
    usage = sum(Decimal(x["amount"]) for x in december["lines"] if x["kind"] == "usage")
    assert Decimal(december["total"]) == usage + penalty
    assert world.ok("GET", f"/invoices/{december['number']}", "acme")["lines"][-1]["kind"] == "penalty"
    margin = world.ok("POST", "/settlements/run", "operator", {"period": "2026-12"})
    [p1] = margin["settlements"]
    assert Decimal(p1["revenue"]) == usage + penalty
    assert Decimal(p1["payout"]) == ((usage + penalty) * Decimal("0.7")).quantize(Decimal("0.01"))
    assert world.ok("POST", "/invoices/run", "operator", {"period": "2026-12"}) == []  # billed once
