"""The utilisation sampler (utilisation.loop) over a real database, and who may read its history
(GET /api/v1/utilisation): operators every site, a provider its own, tenants nobody's."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from sqlalchemy import func, select

from tests.api.conftest import Api, Clock, h100_node
from zhisuan.billing.models import Settlement
from zhisuan.inventory.models import Provider
from zhisuan.store.base import transaction
from zhisuan.store.leases import acquire_lease
from zhisuan.utilisation.loop import LEASE, utilisation_pass
from zhisuan.utilisation.models import UtilisationBucket


def sample(world: Api) -> int | None:
    app = world.client.app
    return utilisation_pass(app.state.loop_sessions, app.state.ctx.clock(), holder="test")  # type: ignore[attr-defined]


def fleet(world: Api) -> None:
    """s1 (p1): 8 H100s, 2 held whole and one by two halves (3 devices allocated);
    s2 (p2): 2 H100s, none held."""
    world.ok("POST", "/agent/register", "agent1", h100_node("gpu-a", 8))
    world.ok("POST", "/agent/register", "agent2", h100_node("gpu-z", 2))
    world.ok("POST", "/allocations", "operator", {"tenant": "acme", "node": "s1/gpu-a", "devices": [0, 1]})
    for _ in range(2):
        world.ok("POST", "/allocations", "operator",
                 {"tenant": "beta", "node": "s1/gpu-a", "devices": [2], "milli": 500})


def rows(world: Api, resolution: str) -> int:
    with world.client.app.state.ctx.sessions() as session:  # type: ignore[attr-defined]
        return int(session.execute(select(func.count()).select_from(UtilisationBucket)
                                   .where(UtilisationBucket.resolution == resolution)).scalar_one())


def test_minutes_roll_up_into_the_hour_once_each(world: Api, clock: Clock) -> None:
    fleet(world)
    clock.now = clock.now.replace(minute=10, second=5)
    assert sample(world) == 6  # two series × minute, hour, day
    world.ok("POST", "/allocations", "operator", {"tenant": "acme", "node": "s1/gpu-a", "devices": [7]})
    assert sample(world) == 6  # the same minute again: its reading is replaced, not counted twice
    with world.client.app.state.ctx.sessions() as session:  # type: ignore[attr-defined]
        assert set(session.execute(select(UtilisationBucket.samples)).scalars()) == {1}
    clock.advance(minutes=1)
    assert sample(world) == 6
    hours = world.ok("GET", "/utilisation", "operator", resolution="hour", group="site")
    by_site = {s["name"]: s["points"] for s in hours["series"]}
    assert set(by_site) == {"s1", "s2"}
    [s1] = by_site["s1"]
    assert (s1["devices"], s1["allocated"], s1["utilisation"]) == ("8.00", "4.00", "0.5000")
    assert by_site["s2"][0]["utilisation"] == "0.0000"
    minutes = world.ok("GET", "/utilisation", "operator", group="model")
    [h100] = minutes["series"]
    assert h100["name"] == "h100-sxm" and len(h100["points"]) == 2
    assert [p["utilisation"] for p in h100["points"]] == ["0.4000", "0.4000"]  # 4 of 10 devices


def test_history_is_bounded_by_retention(world: Api, clock: Clock) -> None:
    fleet(world)
    sample(world)
    clock.advance(hours=47)
    sample(world)
    assert rows(world, "minute") == 4
    clock.advance(hours=2)  # the first minute is now past 48 h
    sample(world)
    assert rows(world, "minute") == 4 and rows(world, "hour") == 6


def test_another_holder_of_the_lease_stops_the_pass(world: Api, clock: Clock) -> None:
    fleet(world)
    with transaction(world.client.app.state.loop_sessions) as session:  # type: ignore[attr-defined]
        assert acquire_lease(session, LEASE, "another-process", clock.now, timedelta(minutes=3))
    assert sample(world) is None and rows(world, "minute") == 0
    clock.advance(minutes=4)  # its lease expired
    assert sample(world) == 6


def test_a_provider_sees_its_sites_and_a_tenant_none(world: Api, clock: Clock) -> None:
    fleet(world)
    sample(world)
    p1 = world.ok("GET", "/utilisation", "p1", group="site")
    assert [s["name"] for s in p1["series"]] == ["s1"]
    p2 = world.ok("GET", "/utilisation", "p2", group="model")
    assert p2["series"][0]["points"][0]["devices"] == "2.00"
    assert world.call("GET", "/utilisation", "acme").status_code == 403
    assert world.call("GET", "/utilisation", None).status_code == 401


def test_bad_windows_name_their_field(world: Api, clock: Clock) -> None:
    cases = [({"resolution": "week"}, "resolution"),
             ({"since": "2026-11-01T00:00:00Z", "until": "2026-10-01T00:00:00Z"}, "until"),
             ({"resolution": "minute", "since": "2026-10-01T00:00:00Z", "until": "2026-11-01T00:00:00Z"}, "since"),
             ({"since": "2026-10-01T00:00:00"}, "since")]
    for params, field in cases:
        response = world.call("GET", "/utilisation", "operator", **params)
        assert response.status_code == 422, (params, response.text)
        assert field in response.text, (params, response.text)


def test_yield_per_site_and_provider_from_the_hour_buckets(world: Api, clock: Clock) -> None:
    fleet(world)  # s1: 3 of 8 held; s2: 0 of 2
    clock.now = clock.now.replace(minute=0)
    for _ in range(3):  # three hours, one sample each
        sample(world)
        clock.advance(hours=1)
    with transaction(world.client.app.state.ctx.sessions) as session:  # type: ignore[attr-defined]
        p1 = session.execute(select(Provider.id).where(Provider.name == "p1")).scalar_one()
        session.add(Settlement(provider_id=p1, period="2026-11", currency="CNY", revenue=Decimal("120.00"),
                               share=Decimal("0.7"), payout=Decimal("84.00"), lines=[], computed_at=clock.now))
    report = world.ok("GET", "/economics/yield", "operator", period="2026-11")
    assert [(s["site"], s["device_hours"], s["allocated_hours"], s["idle_rate"]) for s in report["sites"]] == [
        ("s1", "24.00", "9.00", "0.6250"), ("s2", "6.00", "0.00", "1.0000")]
    by_provider = {p["provider"]: p for p in report["providers"]}
    assert by_provider["p1"]["revenue_per_device_hour"] == "5.00"  # 120 / 24
    assert by_provider["p2"]["revenue"] is None and by_provider["p2"]["revenue_per_device_hour"] is None
    assert [s["site"] for s in world.ok("GET", "/economics/yield", "p2", period="2026-11")["sites"]] == ["s2"]
    assert world.call("GET", "/economics/yield", "acme", period="2026-11").status_code == 403
    assert world.call("GET", "/economics/yield", "operator", period="2026-13").status_code == 422


def test_payback_through_the_api(world: Api) -> None:
    body = {"purchase_price": "2000000", "monthly_lease": "150000", "utilisation": "0.7", "provider_share": "0.85",
            "monthly_cost": "20000"}
    assert world.ok("POST", "/economics/payback", "p1", body) == {
        "monthly_revenue": "89250.00", "monthly_net": "69250.00", "months": "28.89", "yearly_return": "0.4155"}
    bad = world.call("POST", "/economics/payback", "operator", {**body, "utilisation": "1.5"})
    assert bad.status_code == 422 and "utilisation" in bad.text
    assert world.call("POST", "/economics/payback", "acme", body).status_code == 403
