"""Scaling a deployment through the API (serving.scaling) and the serving loop (serving.autoscaler),
on SQLite and PostgreSQL: by hand, by load, to zero and back, and replacing replicas lost with their
node. Two nodes of 8 H100; the vLLM model asks for 4 devices a replica (at most 4 replicas fit).
The agent is the test itself (its reports carry the load), as in test_fleet_replicas."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import update

from tests.api.conftest import Api, Clock, h100_node
from tests.api.test_fleet_replicas import exchange, report
from tests.api.test_serving import VLLM, service_allocations
from zhisuan.inventory.models import Node
from zhisuan.serving.autoscaler import autoscale_pass
from zhisuan.store.base import transaction

AUTOSCALE = {"min": 1, "max": 3, "target": 0.5, "scale_out_cooldown_s": 10, "scale_in_cooldown_s": 60}


@pytest.fixture
def fleet(world: Api) -> Api:
    world.ok("POST", "/agent/register", "agent1", h100_node("gpu-a", 8))
    world.ok("POST", "/agent/register", "agent2", h100_node("gpu-b", 8))
    world.ok("POST", "/models", "operator", VLLM)
    return world


def deploy(api: Api, who: str = "operator", **extra: Any) -> Any:
    return api.ok("POST", "/deployments", who, {"model": VLLM["name"], "devices_per_replica": 4, "replicas": 1,
                                                **extra})


def run_pass(api: Api, clock: Clock) -> list[str]:
    app = api.client.app
    return autoscale_pass(app.state.loop_sessions, app.state.catalog, clock(), "test")  # type: ignore[attr-defined]


def live(out: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in out["replica_states"] if r["state"] not in ("stopped", "lost")]


def report_all(api: Api, deployment_id: int, in_flight: int = 0) -> None:
    """Each agent reports the replicas placed on its node healthy with ``in_flight`` of 4 slots busy."""
    for who, node in (("agent1", "gpu-a"), ("agent2", "gpu-b")):
        mine = [a for a in exchange(api, who, node, []).json()["replicas"] if a["deployment_id"] == deployment_id]
        exchange(api, who, node, [report(deployment_id, a["index"], "stopped" if a["desired"] == "drain" else
                                          "healthy", port=9000 + a["index"], in_flight=in_flight) for a in mine])


def events(api: Api, deployment_id: int) -> list[tuple[str, int, int]]:
    shown = api.ok("GET", f"/deployments/{deployment_id}", "operator")["events"]
    return [(e["kind"], e["replicas_from"], e["replicas_to"]) for e in shown]


def test_scaling_by_hand_places_out_drains_in_and_records_each_change(fleet: Api, clock: Clock) -> None:
    out = deploy(fleet)
    report_all(fleet, out["id"])
    scaled = fleet.ok("PATCH", f"/deployments/{out['id']}", "operator", {"replicas": 3})
    assert scaled["replicas"] == 3 and len(live(scaled)) == 3 and len(service_allocations(fleet)) == 12
    assert {r["node"] for r in live(scaled)} == {"s1/gpu-a", "s2/gpu-b"}  # placement spreads what one node cannot hold
    report_all(fleet, out["id"])
    # Beyond the fleet: the fifth replica does not fit; nothing changes (409 naming the field).
    refused = fleet.call("PATCH", f"/deployments/{out['id']}", "operator", {"replicas": 5})
    assert refused.status_code == 409 and refused.json()["error"]["field"] == "replicas"
    assert len(service_allocations(fleet)) == 12

    clock.advance(seconds=1)
    down = fleet.ok("PATCH", f"/deployments/{out['id']}", "operator", {"replicas": 1})
    assert [r["state"] for r in down["replica_states"]] == ["healthy", "draining", "draining"]  # newest first
    assert len(service_allocations(fleet)) == 12  # held until their runtime has drained them
    assert [r["draining"] for r in fleet.ok("GET", "/serving/endpoints", "operator")["replicas"]] == \
        [False, True, True]
    report_all(fleet, out["id"])  # the agents drain them and report them stopped
    assert len(service_allocations(fleet)) == 4
    shown = fleet.ok("GET", f"/deployments/{out['id']}", "operator")
    assert shown["status"] == "running" and shown["autoscale"] is None
    assert events(fleet, out["id"]) == [("scaled", 1, 3), ("scaled", 3, 1)]


@pytest.mark.parametrize(("body", "status", "field"), [
    ({"replicas": 0}, 422, "replicas"),  # zero only with autoscaling of min 0
    ({"replicas": 65}, 422, "replicas"),
    ({"autoscale": {**AUTOSCALE, "min": 3, "max": 2}}, 422, "autoscale.min"),
    ({"autoscale": {**AUTOSCALE, "target": 0}}, 422, "autoscale.target"),
    ({"autoscale": {**AUTOSCALE, "target": 17}}, 422, "autoscale.target"),  # per slot: at most 16
    ({"autoscale": {**AUTOSCALE, "target_kind": "queue_time_s", "target": 3601}}, 422, "autoscale.target"),
    ({"autoscale": {**AUTOSCALE, "target_kind": "latency"}}, 422, "autoscale.target_kind"),
    ({"autoscale": {**AUTOSCALE, "target_kind": "queue_time_s", "target": -1}}, 422, "autoscale.target"),
    ({"autoscale": AUTOSCALE, "replicas": 4}, 422, "replicas"),  # outside the policy's bounds
    ({"size": 2}, 422, "size"),
])
def test_bad_scaling_is_refused_naming_the_field(fleet: Api, body: dict[str, Any], status: int, field: str) -> None:
    out = deploy(fleet)
    response = fleet.call("PATCH", f"/deployments/{out['id']}", "operator", body)
    assert response.status_code == status, response.text
    assert field in (response.json()["error"].get("field") or response.text)
    shown = fleet.ok("GET", f"/deployments/{out['id']}", "operator")
    assert shown["replicas"] == 1 and shown["autoscale"] is None and shown["events"] == []


def test_a_tenant_scales_its_own_within_its_quota(fleet: Api) -> None:
    fleet.ok("PUT", "/deployment-quotas", "operator", {"tenant": "acme", "max_replicas": 2})
    mine = deploy(fleet, "acme")
    public = deploy(fleet, name="public")
    assert fleet.ok("PATCH", f"/deployments/{mine['id']}", "acme", {"replicas": 2})["replicas"] == 2
    over = fleet.call("PATCH", f"/deployments/{mine['id']}", "acme", {"replicas": 3})
    assert over.status_code == 409 and over.json()["error"]["field"] == "replicas"
    over = fleet.call("PATCH", f"/deployments/{mine['id']}", "acme", {"autoscale": {**AUTOSCALE, "max": 3}})
    assert over.status_code == 409 and over.json()["error"]["field"] == "autoscale.max"
    assert fleet.call("PATCH", f"/deployments/{public['id']}", "acme", {"replicas": 2}).status_code == 403
    assert fleet.call("PATCH", f"/deployments/{mine['id']}", "beta", {"replicas": 1}).status_code == 404
    assert fleet.ok("PATCH", f"/deployments/{mine['id']}", "acme",
                    {"autoscale": {**AUTOSCALE, "max": 2}})["autoscale"]["max"] == 2


def test_load_scales_out_then_in_after_the_cool_down(fleet: Api, clock: Clock) -> None:
    out = deploy(fleet)
    set_ = fleet.ok("PATCH", f"/deployments/{out['id']}", "operator", {"autoscale": AUTOSCALE})
    assert set_["autoscale"]["target"] == 0.5 and set_["replicas"] == 1
    report_all(fleet, out["id"], in_flight=0)
    assert run_pass(fleet, clock) == []  # idle at the minimum: nothing to do

    report_all(fleet, out["id"], in_flight=4)  # every slot busy: 4 / (0.5 × 4) = 2 replicas
    assert len(run_pass(fleet, clock)) == 1
    shown = fleet.ok("GET", f"/deployments/{out['id']}", "operator")
    assert shown["replicas"] == 2 and len(service_allocations(fleet)) == 8
    report_all(fleet, out["id"], in_flight=4)  # still busy: 8 over 8 slots wants 4, capped at 3 — after 10 s
    assert run_pass(fleet, clock) == []
    clock.advance(seconds=11)
    report_all(fleet, out["id"], in_flight=4)
    run_pass(fleet, clock)
    assert fleet.ok("GET", f"/deployments/{out['id']}", "operator")["replicas"] == 3  # never above max

    clock.advance(seconds=30)
    report_all(fleet, out["id"], in_flight=0)  # idle, but within 60 s of the last change
    assert run_pass(fleet, clock) == []
    clock.advance(seconds=31)
    report_all(fleet, out["id"], in_flight=0)
    run_pass(fleet, clock)
    shown = fleet.ok("GET", f"/deployments/{out['id']}", "operator")
    assert shown["replicas"] == 2 and [r["state"] for r in shown["replica_states"]].count("draining") == 1
    report_all(fleet, out["id"], in_flight=0)
    assert len(service_allocations(fleet)) == 8
    assert [k for k, *_ in events(fleet, out["id"])] == ["autoscale", "scale_out", "scale_out", "scale_in"]


def test_scale_to_zero_and_a_request_brings_one_back(fleet: Api, clock: Clock) -> None:
    out = deploy(fleet)
    fleet.ok("PATCH", f"/deployments/{out['id']}", "operator", {"autoscale": {**AUTOSCALE, "min": 0}})
    clock.advance(seconds=61)
    report_all(fleet, out["id"])
    run_pass(fleet, clock)
    report_all(fleet, out["id"])  # drained
    shown = fleet.ok("GET", f"/deployments/{out['id']}", "operator")
    assert (shown["replicas"], shown["status"], service_allocations(fleet)) == (0, "running", [])
    assert run_pass(fleet, clock) == []  # no demand: stays at zero

    # A gateway found no replica for two requests (beta's: the public deployment counts them).
    assert fleet.call("POST", "/serving/demand", "acme", {"demand": []}).status_code == 403
    fleet.ok("POST", "/serving/demand", "operator",
             {"demand": [{"model": VLLM["name"], "tenant_id": 2, "requests": 2}]})
    assert len(run_pass(fleet, clock)) == 1
    shown = fleet.ok("GET", f"/deployments/{out['id']}", "operator")
    assert shown["replicas"] == 1 and len(live(shown)) == 1 and len(service_allocations(fleet)) == 4
    assert events(fleet, out["id"])[-2:] == [("scale_in", 1, 0), ("scale_out", 0, 1)]
    assert run_pass(fleet, clock) == []  # the demand was consumed


def gateway_load(api: Api, gateway: str, *loads: tuple[str, int, int, float, int]) -> None:
    """A gateway's report: per replica id (in flight, queued, mean queue wait, requests measured)."""
    api.ok("POST", "/serving/demand", "operator", {"load": {"gateway": gateway, "replicas": [
        {"replica": rid, "in_flight": n, "queued": q, "queue_wait_s": wait, "waits": waits}
        for rid, n, q, wait, waits in loads]}})


def test_queue_time_from_the_gateways_scales_out_and_stale_reports_are_ignored(fleet: Api, clock: Clock) -> None:
    out = deploy(fleet)
    report_all(fleet, out["id"], in_flight=4)  # the engine: every one of its 4 slots busy, no more to say
    policy = {**AUTOSCALE, "target_kind": "queue_time_s", "target": 2.0}
    shown = fleet.ok("PATCH", f"/deployments/{out['id']}", "operator", {"autoscale": policy})
    assert (shown["autoscale"]["target_kind"], shown["autoscale"]["target"]) == ("queue_time_s", 2.0)
    shown = fleet.ok("GET", f"/deployments/{out['id']}", "operator")
    assert shown["events"][-1]["reason"] == "autoscaling 1..3 at 2s queue wait"
    [rid] = [r["id"] for r in fleet.ok("GET", "/serving/endpoints", "operator")["replicas"]]
    assert run_pass(fleet, clock) == []  # no gateway reported: no queue time measured
    # Two gateways: 10 requests sent to 4 slots, a mean queue wait of (5·10 + 3·10)/20 = 4 s over 2 s target.
    gateway_load(fleet, "gw-a", (rid, 6, 4, 5.0, 10), ("no-such-replica-0", 9, 9, 9.0, 9))
    gateway_load(fleet, "gw-b", (rid, 4, 2, 3.0, 10))
    gateway_load(fleet, "gw-b", (rid, 4, 2, 3.0, 10))  # a report replaces that gateway's last one
    assert [c.split(" (")[0] for c in run_pass(fleet, clock)] == [f"{out['name']}: 1 → 2"]
    shown = fleet.ok("GET", f"/deployments/{out['id']}", "operator")
    assert shown["replicas"] == 2 and "4.00s queue wait over target 2" in shown["events"][-1]["reason"]
    # The reports go stale after 10 s: the same queue time then counts for nothing (no scale-out).
    report_all(fleet, out["id"], in_flight=4)
    clock.advance(seconds=11)
    report_all(fleet, out["id"], in_flight=4)
    assert run_pass(fleet, clock) == []


def mark_unreachable(api: Api, name: str) -> None:
    """What the heartbeat monitor does to a node whose agent went quiet."""
    with transaction(api.client.app.state.ctx.sessions) as session:  # type: ignore[attr-defined]
        session.execute(update(Node).where(Node.name == name).values(status="unreachable"))


def test_replicas_of_a_dead_node_are_lost_and_replaced_elsewhere(fleet: Api, clock: Clock) -> None:
    out = deploy(fleet, replicas=2)
    assert {r["node"] for r in out["replica_states"]} == {"s1/gpu-a"}
    report_all(fleet, out["id"])
    mark_unreachable(fleet, "gpu-a")
    assert len(run_pass(fleet, clock)) == 3  # two lost, one repair
    shown = fleet.ok("GET", f"/deployments/{out['id']}", "operator")
    assert [(r["index"], r["state"], r["node"]) for r in shown["replica_states"]] == [
        (0, "lost", "s1/gpu-a"), (1, "lost", "s1/gpu-a"), (2, "pending", "s2/gpu-b"), (3, "pending", "s2/gpu-b")]
    held = service_allocations(fleet)
    assert len(held) == 8 and {r["node"] for r in held} == {"gpu-b"}  # the dead node's holds ended
    assert events(fleet, out["id"]) == [("replica_lost", 2, 2), ("replica_lost", 2, 2), ("repair", 0, 2)]
    assert fleet.ok("GET", "/serving/endpoints", "operator")["replicas"] == []
    # The agent comes back: it is no longer assigned the lost replicas (it stops what it left running),
    # and a late report of one cannot revive it.
    assert exchange(fleet, "agent1", "gpu-a", []).json()["replicas"] == []
    exchange(fleet, "agent1", "gpu-a", [report(out["id"], 0)])
    assert fleet.ok("GET", f"/deployments/{out['id']}", "operator")["replica_states"][0]["state"] == "lost"


def test_undeploying_replicas_of_a_dead_node_completes(fleet: Api, clock: Clock) -> None:
    out = deploy(fleet, replicas=1)
    report_all(fleet, out["id"])
    mark_unreachable(fleet, "gpu-a")
    gone = fleet.ok("DELETE", f"/deployments/{out['id']}", "operator")
    assert gone["status"] == "stopped" and [r["state"] for r in gone["replica_states"]] == ["lost"]
    assert service_allocations(fleet) == []
    # Draining when its node died: the loop finishes it.
    other = deploy(fleet, replicas=1, name="other")
    report_all(fleet, other["id"])
    fleet.ok("DELETE", f"/deployments/{other['id']}", "operator")
    mark_unreachable(fleet, "gpu-b")
    run_pass(fleet, clock)
    assert fleet.ok("GET", f"/deployments/{other['id']}", "operator")["status"] == "stopped"
    assert service_allocations(fleet) == []


def test_the_heartbeat_monitor_can_mark_a_nodes_replicas_lost_at_once(fleet: Api, clock: Clock) -> None:
    from zhisuan.serving.autoscaler import mark_node_replicas_lost

    out = deploy(fleet, replicas=2)
    report_all(fleet, out["id"])
    node_id = fleet.ok("GET", "/nodes/s1/gpu-a", "operator")["id"]
    sessions = fleet.client.app.state.ctx.sessions  # type: ignore[attr-defined]
    with transaction(sessions) as session:
        assert mark_node_replicas_lost(session, [node_id], clock()) == []  # still reachable: nothing
    mark_unreachable(fleet, "gpu-a")
    with transaction(sessions) as session:
        assert len(mark_node_replicas_lost(session, [node_id], clock())) == 2
    shown = fleet.ok("GET", f"/deployments/{out['id']}", "operator")
    assert [r["state"] for r in shown["replica_states"]] == ["lost", "lost"] and shown["status"] == "degraded"
    assert len(run_pass(fleet, clock)) == 1  # the loop places the replacements
