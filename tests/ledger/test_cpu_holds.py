"""CPU-only holds (a llama.cpp replica on CPU): never more than the node declares, metered in
core-hours, priced by the book's ``cpu``/``core_hour`` rate — and left uninvoiced without one."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.api.conftest import Api, Clock, h100_node
from tests.api.econ_setup import START, clock_at
from zhisuan.errors import Conflict
from zhisuan.identity.models import Tenant
from zhisuan.inventory.models import Node
from zhisuan.ledger import service as ledger
from zhisuan.store.base import transaction


def hold_cpu(api: Api, tenant: str, cores: int, memory_mib: int, at: datetime) -> int:
    with transaction(api.client.app.state.ctx.sessions) as session:  # type: ignore[attr-defined]
        node = session.query(Node).filter_by(name="cpu-a").one()
        tenant_id = session.query(Tenant).filter_by(name=tenant).one().id
        row = ledger.hold_cpu(session, tenant_id, node, cores * 1000, memory_mib, ledger.Window(at),
                              purpose="service", ref=f"deployment:{tenant}/0")
        return row.id


def test_cpu_holds_are_bounded_by_the_node_and_billed_in_core_hours(world: Api, clock: Clock) -> None:
    world.ok("POST", "/agent/register", "agent1", h100_node("cpu-a", 0))  # 128 cores, 2,048,000 MiB
    with clock_at(world, START):
        world.ok("POST", "/pricebooks", "operator", {"name": "cpu", "effective_from": START, "rates": [
            {"model": "cpu", "pricing_model": "core_hour", "unit_price": "0.50", "tenant": "acme"}]})
    acme = hold_cpu(world, "acme", 100, 1_000_000, clock.now)
    for cores, memory, field in [(40, 1, "cpu_cores"), (8, 1_100_000, "memory_gib")]:
        with pytest.raises(Conflict) as refused:
            hold_cpu(world, "beta", cores, memory, clock.now)
        assert refused.value.field == field and "s1/cpu-a" in refused.value.message
    beta = hold_cpu(world, "beta", 28, 1_048_000, clock.now)  # exactly what is left
    with transaction(world.client.app.state.ctx.sessions) as session:  # type: ignore[attr-defined]
        assert list(ledger.held_node_resources(session, clock.now).values()) == [(128_000, 2_048_000)]
    rows = {r["id"]: r for r in world.ok("GET", "/allocations", "operator")}
    assert (rows[acme]["cpu_milli"], rows[acme]["memory_mib"], rows[acme]["device_index"]) == (100_000, 1_000_000, None)
    assert rows[acme]["model"] == "cpu" and rows[acme]["pricing_model"] == "core_hour" and rows[acme]["billable"]
    clock.now = datetime(2026, 12, 2, tzinfo=UTC)
    [invoice] = world.ok("POST", "/invoices/run", "operator", {"period": "2026-11", "book": "cpu"})
    [line] = invoice["lines"]
    core_hours = 100 * (30 * 24 - 8)  # from 08:00 on 1 November to the month's end
    assert invoice["tenant"] == "acme" and line["unit"] == "core-hour"
    assert line["billable_quantity"] == str(core_hours) and line["amount"] == f"{core_hours * 0.5:.2f}"
    # beta's CPU time has no rate in the book: recorded, visible, not invoiced
    usage = [u for u in world.ok("GET", "/usage", "beta") if u["source_id"] == str(beta)]
    assert usage and all(u["invoice_line_id"] is None for u in usage)
    assert sum(u["quantity"] for u in usage) == 28_000 * core_hours * 3600 // 100
