"""Revenue per device-hour per site (GET /api/v1/economics/yield) from a real month: ledger holds at two
sites of one provider and its token usage, metered, invoiced and settled by the platform; the sites'
revenue sums to the provider's settlement to the fen. A month older than the hour buckets' 90 days
is answered from the day buckets, and says so."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from tests.api.conftest import Api, Clock, h100_node
from tests.api.econ_setup import price_book
from tests.console.test_utilisation_history import sample


def two_sites_of_p1(world: Api) -> None:
    """p1: s1 (4 H100s, acme holds 2 whole) and s3 (4 H100s, beta holds half of one), 08:00–11:00;
    acme's tokens on p1's models (priced per provider: no site earned them alone)."""
    world.ok("POST", "/sites", "operator", {"name": "s3", "engine": "slurm", "region": "cn-east-1", "provider": "p1"})
    agent3 = world.ok("POST", "/sites/s3/agent-keys", "p1", {})["key"]
    world.ok("POST", "/agent/register", "agent1", h100_node("gpu-a", 4))
    world.keys["agent3"] = agent3
    world.ok("POST", "/agent/register", "agent3", h100_node("gpu-c", 4))
    window = {"start": "2026-11-01T08:00:00Z", "end": "2026-11-01T11:00:00Z"}
    world.ok("POST", "/allocations", "operator", {"tenant": "acme", "node": "s1/gpu-a", "devices": [0, 1], **window})
    world.ok("POST", "/allocations", "operator", {"tenant": "beta", "node": "s3/gpu-c", "devices": [0], "milli": 500,
                                                  **window})
    world.ok("POST", "/usage/token-events", "operator", {"events": [{
        "event_id": "gw-1", "tenant": "acme", "provider": "p1", "model": "qwen-7b", "at": "2026-11-01T07:00:00Z",
        "input_tokens": 1_500_000, "output_tokens": 500_000}]})


def test_site_revenue_sums_to_the_providers_settlement(world: Api, clock: Clock) -> None:
    price_book(world)
    two_sites_of_p1(world)
    for hour in (8, 9, 10):
        clock.now = datetime(2026, 11, 1, hour, 0, tzinfo=UTC)
        sample(world)
    clock.now = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)
    world.ok("POST", "/invoices/run", "operator", {"period": "2026-11"})
    settled = {s["provider"]: s for s in world.ok("POST", "/settlements/run", "operator", {"period": "2026-11"})
               ["settlements"]}
    # s1: 2 × 3 h × 20.00 = 120.00; s3: beta's 18.00 × 0.5 × 3 h = 27.00; tokens 3.00 + 3.00, unbound.
    assert settled["p1"]["revenue"] == "153.00"
    report = world.ok("GET", "/economics/yield", "operator", period="2026-11")
    assert report["resolution"] == "hour"
    sites = {s["site"]: s for s in report["sites"] if s["provider"] == "p1"}
    # The 6.00 of tokens shared by allocated device-hours, 6 : 1.5 → 4.80 and 1.20.
    assert [(s, r["device_hours"], r["allocated_hours"], r["site_bound_revenue"], r["revenue"],
             r["revenue_per_device_hour"]) for s, r in sorted(sites.items())] == [
        ("s1", "12.00", "6.00", "120.00", "124.80", "10.40"), ("s3", "12.00", "1.50", "27.00", "28.20", "2.35")]
    [p1] = [p for p in report["providers"] if p["provider"] == "p1"]
    assert sum(Decimal(r["revenue"]) for r in sites.values()) == Decimal(p1["revenue"]) == Decimal("153.00")
    assert p1["revenue_per_device_hour"] == "6.38"  # 153 / 24
    own = world.ok("GET", "/economics/yield", "p1", period="2026-11")
    assert sorted(s["site"] for s in own["sites"]) == ["s1", "s3"]
    assert [p["provider"] for p in own["providers"]] == ["p1"]
    assert world.ok("GET", "/economics/yield", "p2", period="2026-11")["providers"] == []

    # 120 days on the month's hours are past retention: the day buckets answer (each day's mean × 24 h).
    clock.now = datetime(2027, 3, 31, tzinfo=UTC)
    old = world.ok("GET", "/economics/yield", "operator", period="2026-11")
    assert old["resolution"] == "day"
    days = {s["site"]: s for s in old["sites"]}
    assert [(days[s]["device_hours"], days[s]["allocated_hours"], days[s]["revenue"]) for s in ("s1", "s3")] == [
        ("96.00", "48.00", "124.80"), ("96.00", "12.00", "28.20")]
    assert days["s1"]["revenue_per_device_hour"] == "1.30"


def test_a_settled_provider_without_history_still_has_its_revenue_on_its_sites(world: Api, clock: Clock) -> None:
    """Token revenue only, no utilisation sampled: p1's one site gets all of it (no hours to divide by)."""
    price_book(world)
    world.ok("POST", "/usage/token-events", "operator", {"events": [{
        "event_id": "gw-1", "tenant": "acme", "provider": "p1", "model": "qwen-7b", "at": "2026-11-01T07:00:00Z",
        "input_tokens": 1_500_000, "output_tokens": 500_000}]})
    clock.now = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)
    world.ok("POST", "/invoices/run", "operator", {"period": "2026-11"})
    world.ok("POST", "/settlements/run", "operator", {"period": "2026-11"})
    report = world.ok("GET", "/economics/yield", "operator", period="2026-11")
    assert [(s["site"], s["device_hours"], s["idle_rate"], s["site_bound_revenue"], s["revenue"],
             s["revenue_per_device_hour"]) for s in report["sites"]] == [("s1", "0.00", None, "0.00", "6.00", None)]
    assert [(p["provider"], p["revenue"]) for p in report["providers"]] == [("p1", "6.00")]
