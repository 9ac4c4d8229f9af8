"""The model registry and deployments through the API, on SQLite and PostgreSQL.

The fleet: s1/gpu-a with 8 H100 (provider p1, 128 cores). A vLLM model asks for 4 devices per
replica: two replicas fill the node exactly, a third cannot fit anywhere.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import Api, Clock, h100_node
from zhisuan.serving.runtime import Observed, finish_drain, plan_replica_changes, record_replica
from zhisuan.store.base import transaction

VLLM = {"name": "qwen2.5-7b-instruct", "source": "/models/qwen2.5-7b-instruct", "engine": "vllm",
        "context_length": 32768}
GGUF = {"name": "smol", "source": "/models/smol.gguf", "engine": "llama.cpp"}


@pytest.fixture
def fleet(world: Api) -> Api:
    world.ok("POST", "/agent/register", "agent1", h100_node("gpu-a", 8))
    world.ok("POST", "/models", "operator", VLLM)
    world.ok("POST", "/models", "operator", GGUF)
    return world


def service_allocations(api: Api, active: bool = True, cpu: bool = False) -> list[dict[str, Any]]:
    """Replicas' device holds (or, with ``cpu``, their CPU/memory holds: one per replica)."""
    rows = api.ok("GET", "/allocations", "operator")
    return [r for r in rows if r["purpose"] == "service" and (r["end"] is None or not active)
            and (r["device_index"] is None) == cpu]


# --------------------------------------------------------------------------- registry


@pytest.mark.parametrize(("change", "status", "field"), [
    ({"engine": "tgi"}, 422, "engine"),
    ({"engine": "llama.cpp"}, 422, "source"),            # llama.cpp needs a .gguf file
    ({"stacks": ["CANN"]}, 422, "stacks.0"),             # vLLM runs on CUDA
    ({"name": "bad name"}, 422, "name"),
    ({"context_length": 0}, 422, "context_length"),
    ({"name": "smol"}, 409, "name"),                     # already registered
])
def test_bad_model_registrations_are_refused_and_write_nothing(fleet: Api, change: dict[str, Any], status: int,
                                                               field: str) -> None:
    before = fleet.ok("GET", "/models", "operator")
    response = fleet.call("POST", "/models", "operator", {**VLLM, "name": "other", **change})
    assert response.status_code == status, response.text
    assert response.json()["error"]["field"] == field
    assert fleet.ok("GET", "/models", "operator") == before


def test_registry_is_read_by_all_and_written_by_operators(fleet: Api) -> None:
    assert {m["name"] for m in fleet.ok("GET", "/models", "acme")} == {"qwen2.5-7b-instruct", "smol"}
    assert fleet.ok("GET", "/models/smol", "acme")["stacks"] == ["cpu"]
    assert fleet.ok("GET", "/models/qwen2.5-7b-instruct", "operator")["stacks"] == ["CUDA"]
    assert fleet.call("POST", "/models", "acme", {**GGUF, "name": "mine"}).status_code == 403
    assert fleet.call("DELETE", "/models/smol", "acme").status_code == 403


# --------------------------------------------------------------------------- deploying


def test_replicas_are_placed_by_the_engine_and_hold_their_devices(fleet: Api) -> None:
    out = fleet.ok("POST", "/deployments", "operator",
                   {"model": "qwen2.5-7b-instruct", "replicas": 2, "devices_per_replica": 4, "cpu_cores": 8})
    assert out["status"] == "deploying" and out["tenant"] is None and out["name"] == "qwen2-5-7b-instruct"
    replicas = out["replica_states"]
    assert [r["node"] for r in replicas] == ["s1/gpu-a", "s1/gpu-a"]
    assert all(r["state"] == "pending" for r in replicas)
    devices = [d for r in replicas for d in r["devices"]]
    assert sorted(devices) == list(range(8))  # disjoint: together exactly the node's 8 devices
    held = service_allocations(fleet)
    # The public MaaS holds them for the reserved tenant, not billable (tokens pay for it).
    assert len(held) == 8 and {r["tenant"] for r in held} == {"platform-maas"}
    assert not any(r["billable"] for r in held) and {r["milli"] for r in held} == {1000}
    assert {r["ref"] for r in held} == {f"deployment:{out['id']}/0", f"deployment:{out['id']}/1"}
    # The placement preview sees the node as full now.
    preview = fleet.ok("POST", "/placement/preview", "operator", {"devices": 1})
    assert preview["placed"] is False


def test_a_deployment_that_does_not_fit_is_refused_whole_with_reasons(fleet: Api) -> None:
    response = fleet.call("POST", "/deployments", "operator",
                          {"model": "qwen2.5-7b-instruct", "replicas": 3, "devices_per_replica": 4})
    assert response.status_code == 409, response.text
    error = response.json()["error"]
    assert error["field"] == "replicas"
    assert "replica 3 of 3 does not fit" in error["message"] and "1 node" in error["message"]
    # All or nothing: the first two replicas' placements were rolled back with it.
    assert fleet.ok("GET", "/deployments", "operator", all="true") == []
    assert service_allocations(fleet, active=False) == []


@pytest.mark.parametrize(("body", "field"), [
    ({"model": "qwen2.5-7b-instruct", "devices_per_replica": 0}, "devices_per_replica"),   # vLLM needs GPUs
    ({"model": "smol", "devices_per_replica": 2}, "devices_per_replica"),                  # llama.cpp is CPU
    ({"model": "qwen2.5-7b-instruct", "devices_per_replica": 2, "milli_per_device": 500}, "milli_per_device"),
    ({"model": "nope"}, "model"),
    ({"model": "smol", "site": "mars"}, "site"),
    ({"model": "smol", "tenant": "nobody"}, "tenant"),
    ({"model": "smol", "replicas": 0}, "replicas"),
])
def test_bad_deployments_are_refused_and_write_nothing(fleet: Api, body: dict[str, Any], field: str) -> None:
    response = fleet.call("POST", "/deployments", "operator", body)
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["error"]["field"] == field
    assert fleet.ok("GET", "/deployments", "operator", all="true") == []


def test_cpu_replicas_count_against_the_nodes_cores(fleet: Api) -> None:
    # gpu-a has 128 cores: two 60-core replicas fit, a third does not.
    fleet.ok("POST", "/deployments", "operator", {"model": "smol", "replicas": 2, "cpu_cores": 60})
    response = fleet.call("POST", "/deployments", "operator", {"model": "smol", "cpu_cores": 60})
    assert response.status_code == 409 and "not enough free CPU" in response.json()["error"]["message"]
    assert service_allocations(fleet) == []  # CPU replicas hold no accelerator


def test_a_tenant_deploys_for_itself_and_pays_for_the_devices(fleet: Api) -> None:
    out = fleet.ok("POST", "/deployments", "acme",
                   {"model": "qwen2.5-7b-instruct", "devices_per_replica": 1, "milli_per_device": 500})
    assert out["tenant"] == "acme"
    held = service_allocations(fleet)
    assert [(r["tenant"], r["milli"], r["billable"]) for r in held] == [("acme", 500, True)]
    # beta cannot see acme's deployment, nor deploy in acme's name.
    assert fleet.call("GET", f"/deployments/{out['name']}", "beta").status_code == 404
    assert fleet.ok("GET", "/deployments", "beta") == []
    assert fleet.call("POST", "/deployments", "beta", {"model": "smol", "tenant": "acme"}).status_code == 403
    # Providers do not read deployments.
    assert fleet.call("GET", "/deployments", "p1").status_code == 403


def test_tenants_see_the_public_maas_but_cannot_undeploy_it(fleet: Api) -> None:
    fleet.ok("POST", "/deployments", "operator", {"model": "smol", "name": "public-smol"})
    assert [d["name"] for d in fleet.ok("GET", "/deployments", "beta")] == ["public-smol"]
    assert fleet.call("DELETE", "/deployments/public-smol", "beta").status_code == 403


def test_undeploying_a_never_started_deployment_stops_it_and_frees_its_devices(fleet: Api, clock: Clock) -> None:
    first = fleet.ok("POST", "/deployments", "operator",
                     {"model": "qwen2.5-7b-instruct", "replicas": 2, "devices_per_replica": 4})
    clock.advance(minutes=10)
    out = fleet.ok("DELETE", f"/deployments/{first['name']}", "operator")
    assert out["status"] == "stopped" and {r["state"] for r in out["replica_states"]} == {"stopped"}
    assert service_allocations(fleet) == []
    ended = service_allocations(fleet, active=False)
    assert len(ended) == 8 and {r["end"] for r in ended} == {clock.now.isoformat().replace("+00:00", "Z")}
    assert fleet.call("DELETE", f"/deployments/{first['name']}", "operator").status_code == 409
    assert fleet.call("DELETE", "/models/qwen2.5-7b-instruct", "operator").status_code == 409  # history refers
    again = fleet.ok("POST", "/deployments", "operator",
                     {"model": "qwen2.5-7b-instruct", "replicas": 2, "devices_per_replica": 4})
    assert again["name"] == "qwen2-5-7b-instruct-2"  # the stopped one keeps its name in the history


def test_a_model_with_an_active_deployment_cannot_be_removed(fleet: Api) -> None:
    fleet.ok("POST", "/deployments", "operator", {"model": "smol"})
    response = fleet.call("DELETE", "/models/smol", "operator")
    assert response.status_code == 409 and "undeploy it first" in response.json()["error"]["message"]


# --------------------------------------------------------------------------- what a runtime reports


def test_runtime_reports_drive_status_and_draining_ends_the_allocations(fleet: Api, clock: Clock) -> None:
    out = fleet.ok("POST", "/deployments", "operator",
                   {"model": "qwen2.5-7b-instruct", "replicas": 2, "devices_per_replica": 4})
    sessions = fleet.client.app.state.ctx.sessions  # type: ignore[attr-defined]
    node_id = fleet.ok("GET", "/nodes/s1/gpu-a", "operator")["id"]

    def report(index: int, state: str) -> None:
        with transaction(sessions) as session:
            record_replica(session, Observed(out["id"], index, state, 4000 + index, 0, in_flight=index, slots=2),
                           clock.now)

    report(0, "healthy")
    report(1, "starting")
    assert fleet.ok("GET", f"/deployments/{out['id']}", "operator")["status"] == "deploying"
    report(1, "healthy")
    running = fleet.ok("GET", f"/deployments/{out['id']}", "operator")
    assert running["status"] == "running"
    assert [(r["in_flight"], r["load"]) for r in running["replica_states"]] == [(0, 0.0), (1, 0.5)]
    report(1, "unhealthy")
    assert fleet.ok("GET", f"/deployments/{out['id']}", "operator")["status"] == "degraded"

    clock.advance(hours=1)
    fleet.ok("DELETE", f"/deployments/{out['id']}", "operator")
    report(0, "healthy")  # a stale report must not undo the drain
    draining = fleet.ok("GET", f"/deployments/{out['id']}", "operator")
    assert draining["status"] == "draining" and {r["state"] for r in draining["replica_states"]} == {"draining"}
    assert len(service_allocations(fleet)) == 8  # still held while requests finish
    clock.advance(seconds=30)
    with transaction(sessions) as session:
        finish_drain(session, out["id"], node_id, clock.now)
    done = fleet.ok("GET", f"/deployments/{out['id']}", "operator")
    assert done["status"] == "stopped" and service_allocations(fleet) == []


def test_plan_changes_starts_new_and_drains_unwanted() -> None:
    from zhisuan.engines.spec import DeviceAssignment, ModelSpec
    from zhisuan.serving.runtime import Desired, LocalReplica

    spec = ModelSpec(name="m", source="/m.gguf", engine="llama.cpp")
    replica = LocalReplica(0, DeviceAssignment(port=0), draining=False)
    a = Desired(1, "a", spec, (replica,))
    b = Desired(2, "b", spec, (replica,))
    c_draining = Desired(3, "c", spec, (LocalReplica(0, DeviceAssignment(port=0), draining=True),))
    start, drain = plan_replica_changes([a, b, c_draining], running={(2, 0), (3, 0), (4, 0)})
    assert [(d.deployment_id, r.index) for d, r in start] == [(1, 0)]
    assert drain == [(3, 0), (4, 0)]
    # Scaled on this node: only the difference starts or drains.
    scaled = Desired(2, "b", spec, (LocalReplica(0, DeviceAssignment(port=0), draining=True),
                                    LocalReplica(1, DeviceAssignment(port=0), draining=False)))
    start, drain = plan_replica_changes([scaled], running={(2, 0)})
    assert [(d.deployment_id, r.index) for d, r in start] == [(2, 1)] and drain == [(2, 0)]
