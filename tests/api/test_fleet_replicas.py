"""Replicas on agent nodes through the API (serving.fleet), on SQLite and PostgreSQL: what an agent
is assigned and may report, and what gateways discover. The agent here is the test itself."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.api.conftest import Api, Clock, h100_node
from tests.api.test_serving import VLLM, service_allocations
from zhisuan.serving.fleet import endpoints_fetch

SECRET = "s" * 43


@pytest.fixture
def fleet(world: Api) -> Api:
    world.ok("POST", "/agent/register", "agent1", h100_node("gpu-a", 8))
    world.ok("POST", "/agent/register", "agent2", h100_node("gpu-b", 8))
    world.ok("POST", "/models", "operator", VLLM)
    return world


def report(deployment_id: int, index: int, state: str = "healthy", port: int | None = 9000,
           **extra: Any) -> dict[str, Any]:
    return {"deployment_id": deployment_id, "index": index, "state": state, "port": port, "slots": 4,
            "secret": f"{SECRET}{index}", **extra}


def exchange(api: Api, who: str, node: str, replicas: list[dict[str, Any]], address: str = "10.0.0.7") -> Any:
    return api.call("POST", "/agent/replicas", who, {"node": node, "address": address, "replicas": replicas})


def audit_actions(api: Api) -> list[tuple[str, str]]:
    return [(e["action"], e["object_ref"]) for e in api.ok("GET", "/audit", "operator")]


def test_an_agent_runs_what_placement_put_on_its_node_and_gateways_find_it(fleet: Api, clock: Clock) -> None:
    out = fleet.ok("POST", "/deployments", "operator",
                   {"model": VLLM["name"], "replicas": 2, "devices_per_replica": 4, "site": "s1"})
    assigned = exchange(fleet, "agent1", "gpu-a", []).json()
    assert [(a["index"], a["desired"], a["stack"], a["visible_devices_env"]) for a in assigned["replicas"]] == [
        (0, "run", "CUDA", "CUDA_VISIBLE_DEVICES"), (1, "run", "CUDA", "CUDA_VISIBLE_DEVICES")]
    assert sorted(assigned["replicas"][0]["device_indices"] + assigned["replicas"][1]["device_indices"]) == \
        list(range(8))
    assert assigned["replicas"][0]["model"]["source"] == VLLM["source"]
    assert exchange(fleet, "agent2", "gpu-b", []).json()["replicas"] == []  # nothing placed there

    found = fleet.ok("GET", "/serving/endpoints", "operator")
    assert found["replicas"] == [] and found["models"] == [VLLM["name"]]  # registered, nothing runs yet

    answer = exchange(fleet, "agent1", "gpu-a", [report(out["id"], 0, port=9000), report(out["id"], 1, port=9001)])
    assert answer.status_code == 200 and answer.json()["refused"] == []
    shown = fleet.ok("GET", f"/deployments/{out['id']}", "operator")
    assert shown["status"] == "running" and [r["port"] for r in shown["replica_states"]] == [9000, 9001]

    response = fleet.call("GET", "/serving/endpoints", "operator")
    found = response.json()
    assert [(r["id"], r["host"], r["port"], r["secret"], r["draining"]) for r in found["replicas"]] == [
        (f"{out['name']}@{out['id']}-0", "10.0.0.7", 9000, f"{SECRET}0", False),
        (f"{out['name']}@{out['id']}-1", "10.0.0.7", 9001, f"{SECRET}1", False)]
    assert [r["slots"] for r in found["replicas"]] == [4, 4]  # the agent's report: gateways send at most that
    etag = response.headers["etag"]
    unchanged = fleet.client.get("/api/v1/serving/endpoints", headers={
        "Authorization": f"Bearer {fleet.keys['operator']}", "If-None-Match": etag})
    assert unchanged.status_code == 304
    # Engine keys go to operators only (gateways run with an operator key).
    assert fleet.call("GET", "/serving/endpoints", "acme").status_code == 403
    assert fleet.call("GET", "/serving/endpoints", "agent1").status_code == 403

    assert all(r["reported_at"] for r in shown["replica_states"])
    # A replica whose agent stops reporting drops out of discovery within seconds.
    clock.advance(seconds=11)
    assert fleet.ok("GET", "/serving/endpoints", "operator")["replicas"] == []
    exchange(fleet, "agent1", "gpu-a", [report(out["id"], 0, port=9000), report(out["id"], 1, port=9002)])
    ports = [r["port"] for r in fleet.ok("GET", "/serving/endpoints", "operator")["replicas"]]
    assert ports == [9000, 9002]  # relaunched on another port: the new port, with its new key

    # Undeploy: the agent is told to drain; once it reports them stopped, the devices are released.
    fleet.ok("DELETE", f"/deployments/{out['id']}", "operator")
    assert {a["desired"] for a in exchange(fleet, "agent1", "gpu-a", []).json()["replicas"]} == {"drain"}
    assert [r["draining"] for r in fleet.ok("GET", "/serving/endpoints", "operator")["replicas"]] == [True, True]
    assert len(service_allocations(fleet)) == 8
    left = exchange(fleet, "agent1", "gpu-a", [report(out["id"], 0, "stopped", None),
                                               report(out["id"], 1, "stopped", None)]).json()
    assert left["replicas"] == [] and service_allocations(fleet) == []
    assert fleet.ok("GET", f"/deployments/{out['id']}", "operator")["status"] == "stopped"
    assert fleet.ok("GET", "/serving/endpoints", "operator")["replicas"] == []


def test_reports_about_replicas_not_on_the_agents_node_are_refused_and_audited(fleet: Api) -> None:
    out = fleet.ok("POST", "/deployments", "operator",
                   {"model": VLLM["name"], "replicas": 1, "devices_per_replica": 4, "site": "s1"})
    # gpu-b's agent (site s2) reports gpu-a's replica under its own node: refused, the rest applied.
    answer = exchange(fleet, "agent2", "gpu-b", [report(out["id"], 0), report(4242, 0)])
    assert answer.status_code == 200 and answer.json()["refused"] == [f"{out['id']}/0", "4242/0"]
    assert fleet.ok("GET", f"/deployments/{out['id']}", "operator")["replica_states"][0]["state"] == "pending"
    assert ("replica.report_refused", f"deployment:{out['id']}/0") in audit_actions(fleet)
    assert ("replica.report_refused", "deployment:4242/0") in audit_actions(fleet)
    assert fleet.ok("GET", "/serving/endpoints", "operator")["replicas"] == []

    # A node of another site: refused whole (403, naming the node) and audited.
    answer = exchange(fleet, "agent2", "gpu-a", [report(out["id"], 0)])
    assert answer.status_code == 403 and answer.json()["error"]["field"] == "node"
    assert ("replica.report_refused", "gpu-a") in audit_actions(fleet)
    assert fleet.ok("GET", f"/deployments/{out['id']}", "operator")["replica_states"][0]["state"] == "pending"
    # An unknown node is not an attack: register first (404, not audited).
    assert exchange(fleet, "agent1", "gpu-zz", []).status_code == 404
    # Bad input is a 422 naming the field.
    bad = exchange(fleet, "agent1", "gpu-a", [report(out["id"], 0, port=70000)])
    assert bad.status_code == 422 and "port" in bad.text
    assert exchange(fleet, "agent1", "gpu-a", [], address="bad address").status_code == 422
    assert exchange(fleet, "operator", "gpu-a", []).status_code == 403  # agent keys only


def test_the_in_process_gateway_reads_the_same_endpoints(fleet: Api) -> None:
    out = fleet.ok("POST", "/deployments", "operator",
                   {"model": VLLM["name"], "replicas": 1, "devices_per_replica": 4, "site": "s1"})
    exchange(fleet, "agent1", "gpu-a", [report(out["id"], 0)])
    app = fleet.client.app
    ctx = app.state.ctx  # type: ignore[attr-defined]
    fetch = endpoints_fetch(ctx.sessions, app.state.replica_keys, ctx.clock)  # type: ignore[attr-defined]
    first = asyncio.run(fetch(None))
    assert first is not None and [r["port"] for r in first["replicas"]] == [9000]
    assert asyncio.run(fetch(first["version"])) is None  # unchanged
    node_id = fleet.ok("GET", "/nodes/s1/gpu-a", "operator")["id"]
    mine = endpoints_fetch(ctx.sessions, app.state.replica_keys, ctx.clock, exclude_node_id=node_id)
    assert asyncio.run(mine(None))["replicas"] == []  # type: ignore[index]  # its own runtime routes those


def test_a_llamacpp_model_on_nvidia_gets_its_gpus_made_visible(fleet: Api) -> None:
    fleet.ok("POST", "/models", "operator", {"name": "smol-gpu", "source": "/models/smol.gguf",
                                             "engine": "llama.cpp", "stacks": ["cpu", "CUDA"]})
    refused = fleet.call("POST", "/models", "operator", {"name": "smol-npu", "source": "/models/smol.gguf",
                                                         "engine": "llama.cpp", "stacks": ["CANN"]})
    assert refused.status_code == 422 and refused.json()["error"]["field"] == "stacks.0"
    on_gpu = fleet.ok("POST", "/deployments", "operator", {"model": "smol-gpu", "devices_per_replica": 1,
                                                           "site": "s1"})
    on_cpu = fleet.ok("POST", "/deployments", "operator", {"model": "smol-gpu", "name": "smol-cpu", "site": "s1"})
    assigned = {a["deployment_id"]: a for a in exchange(fleet, "agent1", "gpu-a", []).json()["replicas"]}
    gpu = assigned[on_gpu["id"]]
    assert (gpu["stack"], gpu["visible_devices_env"], len(gpu["device_indices"])) == \
        ("CUDA", "CUDA_VISIBLE_DEVICES", 1)
    assert (assigned[on_cpu["id"]]["stack"], assigned[on_cpu["id"]]["device_indices"]) == ("cpu", [])
