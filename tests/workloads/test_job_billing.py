"""Jobs are billed from their ledger holds at the price book in force; a platform fault is not billed;
job usage shows useful, cancelled and platform-fault time apart."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from tests.api.econ_setup import price_book
from tests.workloads.conftest import LocalSite


def report_lost(site: LocalSite, job_id: int) -> None:
    """Fault injection: the node's agent reports that the worker's process vanished (no exit status)."""
    key = f"zs-{job_id}-1-r0"
    site.world.ok("POST", "/agent/workers", "agent-n1", {"node": "n1", "workers": [
        {"key": key, "state": "lost", "reason": "process vanished (fault injected by the test)"}]})


def test_useful_time_is_billed_and_a_platform_fault_is_not(local_site: LocalSite) -> None:
    world = local_site.world
    price_book(world)  # h100-sxm device_hour 20.00
    clock = world.client.app.state.ctx.clock  # type: ignore[attr-defined]
    useful = local_site.submit("acme", devices_per_worker=2, command=["sleep", "600"])
    local_site.until_state(useful["id"], "running")
    clock.advance(hours=2)
    world.ok("POST", f"/jobs/{useful['id']}/cancel", "acme", {})
    assert local_site.until_state(useful["id"], "cancelled")["state"] == "cancelled"

    faulty = local_site.submit("acme", devices_per_worker=1, command=["sleep", "600"])
    local_site.until_state(faulty["id"], "running")
    clock.advance(hours=1)
    world.ok("POST", "/metering/run", "operator", {})  # metered while running: withdrawn at the fault
    local_site.agents["n1"].runner.stop(f"zs-{faulty['id']}-1-r0", 0.5)
    del local_site.agents["n1"]  # the agent is gone; its last word was the fault
    report_lost(local_site, faulty["id"])
    failed = local_site.until_state(faulty["id"], "failed")
    assert failed["platform_fault"] and "not billed" in failed["reason"]

    usage = {(u["model"], u["outcome"]): u for u in world.ok("GET", "/jobs/usage", "acme")}
    cancelled = usage[("h100-sxm", "cancelled")]
    assert 4.0 <= cancelled["hours"] < 4.1 and cancelled["billable_hours"] == cancelled["hours"]
    fault = usage[("h100-sxm", "platform fault")]
    assert 1.0 <= fault["hours"] < 1.1 and fault["billable_hours"] == 0

    clock.now = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)
    invoices = {i["tenant"]: i for i in world.ok("POST", "/invoices/run", "operator", {"period": "2026-11"})}
    lines = [line for line in invoices["acme"]["lines"] if line["model"] == "h100-sxm"]
    assert len(lines) == 1
    amount = Decimal(lines[0]["amount"])
    # 2 devices × ~2 h × 20.00 (a few scheduler seconds more); the faulty hour is not on it
    assert Decimal("80.00") <= amount < Decimal("82.00"), lines
