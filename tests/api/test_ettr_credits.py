"""ETTR service levels end to end, on a local site for real (processes run, the scheduler admits, the
ledger holds): a job on the tenant's leased nodes suffers a device fault (an XID in the agent's
heartbeat, the fault-injection path of the issue-10 tests), restarts on the other leased node, and the
period's invoice carries the exact ``ettr_credit`` line; its provider's settlement falls by it. A job
without a fault leaves the SLA met: no line. Bad SLAs are refused naming the field."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import Api, cli_against
from tests.api.econ_setup import price_book
from tests.workloads.conftest import LocalSite, add_local_node, jobs_root, local_site
from zhisuan.cli.main import app as cli_app

__all__ = ["jobs_root", "local_site"]  # fixtures

SLA = {"target": "0.95", "tiers": [{"below": "0.95", "percent": "10"}, {"below": "0.8", "percent": "25"}],
       "cap_percent": "20"}
FIRST_ATTEMPT_HANGS_ON = ["sh", "-c", 'if [ "$ZHISUAN_JOB_ATTEMPT" = 1 ]; then sleep 60; else sleep 1; fi']


def lease(site: LocalSite, root: Path, **extra: Any) -> dict[str, Any]:
    """acme leases loc/n1 and loc/n2 (16 H100) for a month from now, with the SLA; activated now."""
    world = site.world
    site.agents["n2"] = add_local_node(world, "n2", root)
    now = world.client.app.state.ctx.clock()  # type: ignore[attr-defined]
    body = {"tenant": "acme", "capacity": {"kind": "nodes", "nodes": ["loc/n1", "loc/n2"]},
            "pricing_model": "device_hour", "unit_price": "12.5", "start": now.isoformat(), "closed_months": 1,
            "ettr_sla": SLA, **extra}
    contract = world.ok("POST", "/contracts", "operator", body)
    assert contract["ettr_sla"] == SLA
    return world.ok("POST", f"/contracts/{contract['id']}/activate", "operator", {})  # type: ignore[no-any-return]


def at(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(event["at"])


def close_november(world: Api) -> dict[str, Any]:
    world.client.app.state.ctx.clock.now = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)  # type: ignore[attr-defined]
    invoices = {i["tenant"]: i for i in world.ok("POST", "/invoices/run", "operator", {"period": "2026-11"})}
    return invoices["acme"]


def test_a_platform_fault_under_an_sla_puts_the_exact_credit_on_the_invoice(local_site: LocalSite,
                                                                          jobs_root: Path) -> None:
    site, world = local_site, local_site.world
    price_book(world)
    contract = lease(site, jobs_root)
    clock = world.client.app.state.ctx.clock  # type: ignore[attr-defined]
    job = site.submit("acme", command=FIRST_ATTEMPT_HANGS_ON, devices_per_worker=8, max_restarts=2)
    running = site.until_state(job["id"], "running")
    clock.advance(hours=1)  # an hour of work, lost to the fault (no checkpoint)
    node = running["placement"][0]["node"].split("/")[1]
    world.ok("POST", "/agent/heartbeat", f"agent-{node}",  # fault injection: the device reports an XID
             {"node": node, "devices": [{"index": 3, "healthy": False, "health_detail": "XID 79 (fell off the bus)"}]})
    site.until(lambda: site.job(job["id"])["attempt"] == 2 and site.job(job["id"])["state"] == "running")
    clock.advance(hours=8)  # the restarted attempt runs on the other leased node
    done = site.until_state(job["id"], "succeeded", "failed")
    assert done["state"] == "succeeded" and done["placement"][0]["node"] != f"loc/{node}"

    # expected, from the job's events alone: the first attempt's run and the re-queue are the platform's loss
    events = world.ok("GET", f"/jobs/{job['id']}/events", "acme")
    admitted = [at(e) for e in events if e["state"] == "admitted"]
    failed = next(at(e) for e in events if e["state"] == "failed")
    ended = next(at(e) for e in events if e["state"] == "succeeded")
    counted = (ended - admitted[0]).total_seconds()
    loss = (failed - admitted[0]).total_seconds() + (admitted[1] - failed).total_seconds()
    ettr = (Decimal(counted - loss) / Decimal(counted)).quantize(Decimal("0.0001"), ROUND_HALF_UP)
    assert Decimal("0.8") <= ettr < Decimal("0.95")  # tier 1: 10%

    shown = world.ok("GET", f"/contracts/{contract['id']}", "acme", period="2026-11")
    assert shown["ettr"]["measured"] == str(ettr) and shown["ettr"]["tier"] == 1 and not shown["ettr"]["met"]
    assert shown["ettr"]["attempts"] == 2 and shown["ettr"]["platform_loss_s"] == loss

    invoice = close_november(world)
    usage = [line for line in invoice["lines"] if line["contract_id"] == contract["id"] and line["kind"] == "usage"]
    charge = sum((Decimal(line["amount"]) for line in usage), Decimal(0))
    assert charge > 0
    credits = [line for line in invoice["lines"] if line["kind"] == "ettr_credit"]
    assert len(credits) == 1 and credits[0]["contract_id"] == contract["id"] and credits[0]["provider"] == "p1"
    assert Decimal(credits[0]["amount"]) == -(charge * Decimal("0.10")).quantize(Decimal("0.01"), ROUND_HALF_UP)
    assert f"measured ETTR {ettr} below target 0.95; tier 1 (ETTR < 0.95) credits 10%" in credits[0]["description"]
    assert Decimal(invoice["total"]) == sum((Decimal(line["amount"]) for line in invoice["lines"]), Decimal(0))
    exported = world.ok("GET", f"/invoices/{invoice['number']}/export", "acme", format="json")
    assert [line["description"] for line in exported["lines"] if "description" in line] == [credits[0]["description"]]

    margin = world.ok("POST", "/settlements/run", "operator", {"period": "2026-11"})
    (p1,) = [st for st in margin["settlements"] if st["provider"] == "p1"]
    assert Decimal(p1["revenue"]) == charge + Decimal(credits[0]["amount"])
    assert Decimal(p1["payout"]) == (Decimal(p1["revenue"]) * Decimal("0.7")).quantize(Decimal("0.01"), ROUND_HALF_UP)
    assert Decimal(margin["payouts"]) + Decimal(margin["margin"]) == Decimal(margin["revenue"])

    again = world.ok("POST", "/invoices/run", "operator", {"period": "2026-11"})  # a re-run credits nothing twice
    assert all(line["kind"] != "ettr_credit" for inv in again for line in inv["lines"])


def test_a_met_sla_adds_no_credit_line(local_site: LocalSite, jobs_root: Path) -> None:
    site, world = local_site, local_site.world
    price_book(world)
    contract = lease(site, jobs_root)
    job = site.submit("acme", command=["sleep", "1"], devices_per_worker=8)
    assert site.until_state(job["id"], "succeeded", "failed")["state"] == "succeeded"
    shown = world.ok("GET", f"/contracts/{contract['id']}", "acme")
    assert shown["ettr"] == {**shown["ettr"], "period": "2026-11", "measured": "1.0000", "met": True, "tier": None,
                             "attempts": 1, "platform_loss_s": 0.0}
    invoice = close_november(world)
    assert [line["kind"] for line in invoice["lines"]] and all(line["kind"] == "usage" for line in invoice["lines"])


@pytest.mark.parametrize(("sla", "field"), [
    ({**SLA, "target": "0"}, "ettr_sla.target"),
    ({**SLA, "target": "1.5"}, "ettr_sla.target"),
    ({**SLA, "tiers": []}, "ettr_sla.tiers"),
    ({**SLA, "tiers": [{"below": "0.9", "percent": "10"}]}, "ettr_sla.tiers.0.below"),
    ({**SLA, "tiers": [{"below": "0.95", "percent": "10"}, {"below": "0.96", "percent": "20"}]},
     "ettr_sla.tiers.1.below"),
    ({**SLA, "tiers": [{"below": "0.95", "percent": "30"}, {"below": "0.9", "percent": "20"}]},
     "ettr_sla.tiers.1.percent"),
    ({**SLA, "tiers": [{"below": "0.95", "percent": "101"}]}, "ettr_sla.tiers.0.percent"),
    ({**SLA, "cap_percent": "-1"}, "ettr_sla.cap_percent"),
])
def test_a_bad_sla_is_refused_naming_the_field(world: Api, sla: dict[str, Any], field: str) -> None:
    world.ok("POST", "/nodes", "operator", {"site": "s1", "name": "a8", "cpu_cores": 64, "memory_mib": 512_000,
                                            "accelerators": [{"model": "a800", "count": 8}]})
    body = {"tenant": "acme", "capacity": {"kind": "nodes", "nodes": ["s1/a8"]}, "pricing_model": "device_hour",
            "unit_price": "10", "start": "2026-11-01T00:00:00Z", "closed_months": 1, "ettr_sla": sla}
    answer = world.call("POST", "/contracts", "operator", body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["field"] == field, answer.text


def test_an_sla_needs_a_node_lease_and_an_amendment_sets_a_new_one(world: Api) -> None:
    body = {"tenant": "acme", "providers": ["p1"], "capacity": {"kind": "quota", "model": "h100-sxm", "quota": 4},
            "pricing_model": "device_hour", "unit_price": "15", "start": "2026-11-01T00:00:00Z", "closed_months": 12}
    answer = world.call("POST", "/contracts", "operator", {**body, "ettr_sla": SLA})
    assert answer.status_code == 422 and answer.json()["error"]["field"] == "ettr_sla"
    world.ok("POST", "/nodes", "operator", {"site": "s1", "name": "a8", "cpu_cores": 64, "memory_mib": 512_000,
                                            "accelerators": [{"model": "a800", "count": 8}]})
    leased = world.ok("POST", "/contracts", "operator", {
        **body, "providers": [], "capacity": {"kind": "nodes", "nodes": ["s1/a8"]}, "ettr_sla": SLA})
    stricter = {**SLA, "target": "0.97", "tiers": [{"below": "0.97", "percent": "15"}]}
    world.ok("POST", f"/contracts/{leased['id']}/amendments", "operator",
             {"effective_at": "2026-12-01T00:00:00Z", "ettr_sla": stricter})
    november = world.ok("GET", f"/contracts/{leased['id']}", "operator", period="2026-11")
    december = world.ok("GET", f"/contracts/{leased['id']}", "operator", period="2026-12")
    assert november["ettr_sla"] == SLA and december["ettr_sla"] == stricter
    assert november["ettr"]["measured"] is None and november["ettr"]["target"] == "0.95"
    assert december["ettr"]["target"] == "0.97"


def test_the_sla_from_the_command_line(world: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    world.ok("POST", "/nodes", "operator", {"site": "s1", "name": "a8", "cpu_cores": 64, "memory_mib": 512_000,
                                            "accelerators": [{"model": "a800", "count": 8}]})
    runner = cli_against(world, monkeypatch)
    made = runner.invoke(cli_app, [
        "contract", "create", "--tenant", "acme", "--node", "s1/a8", "--pricing-model", "device_hour",
        "--unit-price", "10", "--start", "2026-11-01T00:00:00Z", "--closed-months", "1", "--ettr-target", "0.95",
        "--ettr-tier", "0.95:10", "--ettr-tier", "0.8:25", "--ettr-cap", "20", "--json"])
    assert made.exit_code == 0, made.output
    assert json.loads(made.output)["ettr_sla"] == SLA
    shown = runner.invoke(cli_app, ["contract", "show", str(json.loads(made.output)["id"]), "--period", "2026-11"])
    assert shown.exit_code == 0, shown.output
    assert "ETTR SLA: target 0.95; credits ETTR < 0.95 → 10%, ETTR < 0.8 → 25%; cap 20%" in shown.output
    assert "ETTR 2026-11: not measured yet" in shown.output
    bad = runner.invoke(cli_app, ["contract", "create", "--tenant", "acme", "--node", "s1/a8", "--pricing-model",
                                  "device_hour", "--unit-price", "10", "--start", "2026-11-01T00:00:00Z",
                                  "--closed-months", "1", "--ettr-target", "0.95", "--ettr-tier", "10%"])
    assert bad.exit_code != 0 and "BELOW:PERCENT" in str(bad.exception)
