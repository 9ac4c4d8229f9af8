"""Model services under an untrusted tenant: sizes from the engine and the weights, a replica
quota, names that reveal nothing across tenants, views that keep the platform's internals.

The fleet of test_serving: s1/gpu-a (8 H100, 128 cores, provider p1); tenants acme and beta.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import Api, Clock
from tests.api.test_serving import GGUF, VLLM
from zhisuan.serving.runtime import Observed, record_replica
from zhisuan.store.base import transaction

SMOL = {"model": "smol", "cpu_cores": 0.01, "memory_gib": 0.01}


@pytest.fixture
def fleet(world: Api) -> Api:
    from tests.api.conftest import h100_node

    world.ok("POST", "/agent/register", "agent1", h100_node("gpu-a", 8))
    world.ok("POST", "/models", "operator", {**VLLM, "extra_args": ["--lora-modules", "a=/secret/lora"]})
    world.ok("POST", "/models", "operator", GGUF)
    return world


# --------------------------------------------------------------------------- sizes


def test_declared_sizes_never_go_below_the_engines_floor(fleet: Api, tmp_path: Path) -> None:
    weights = tmp_path / "tiny.gguf"
    weights.write_bytes(b"\0" * (5 * 1024 * 1024 + 1))  # 5 MiB and a byte: 6 MiB rounded up
    fleet.ok("POST", "/models", "operator", {"name": "tiny", "source": str(weights), "engine": "llama.cpp"})
    out = fleet.ok("POST", "/deployments", "acme", {**SMOL, "model": "tiny", "replicas": 2})
    expected_mib = math.ceil(6 * 6 / 5) + 256
    assert out["cpu_cores"] == 1.0 and out["memory_gib"] == expected_mib / 1024
    # Each replica row holds its size (what the ledger bills for a CPU-only replica).
    assert [(r["cpu_cores"], r["memory_gib"]) for r in out["replica_states"]] == [(1.0, expected_mib / 1024)] * 2
    # Declared values above the floor are kept.
    bigger = fleet.ok("POST", "/deployments", "acme", {"model": "tiny", "cpu_cores": 3, "memory_gib": 2})
    assert (bigger["cpu_cores"], bigger["memory_gib"]) == (3.0, 2.0)
    # A declared weight size counts when the file is not on the control plane's machine.
    fleet.ok("POST", "/models", "operator", {"name": "far", "source": "/elsewhere/far.gguf", "engine": "llama.cpp",
                                             "weights_bytes": 1024 * 1024 * 1024})
    far = fleet.ok("POST", "/deployments", "operator", {**SMOL, "model": "far"})
    assert far["memory_gib"] == (math.ceil(1024 * 6 / 5) + 256) / 1024


def test_sized_replicas_fill_the_nodes_cores(fleet: Api) -> None:
    fleet.ok("PUT", "/deployment-quotas", "operator", {"tenant": "acme", "max_replicas": 200})
    # 0.01 cores each would fit 12800 replicas on 128 cores; sized at 1 core, 128 fit and no more.
    fleet.ok("POST", "/deployments", "acme", {**SMOL, "replicas": 64})
    fleet.ok("POST", "/deployments", "acme", {**SMOL, "replicas": 64})
    refused = fleet.call("POST", "/deployments", "acme", SMOL)
    assert refused.status_code == 409 and "not enough free CPU" in refused.json()["error"]["message"]


# --------------------------------------------------------------------------- quota


def test_a_tenant_holds_at_most_its_quota_of_replicas(fleet: Api, clock: Clock) -> None:
    assert fleet.ok("GET", "/deployment-quotas", "acme") == {"tenant": "acme", "max_replicas": 8, "held": 0}
    response = fleet.call("POST", "/deployments", "acme", {**SMOL, "replicas": 64})
    assert response.status_code == 409 and response.json()["error"]["field"] == "replicas"
    assert "may hold 8 replicas" in response.json()["error"]["message"]
    first = fleet.ok("POST", "/deployments", "acme", {**SMOL, "replicas": 6})
    assert fleet.call("POST", "/deployments", "acme", {**SMOL, "replicas": 3}).status_code == 409
    fleet.ok("POST", "/deployments", "acme", {**SMOL, "replicas": 2})
    # Operators deploying in the tenant's name are bound by the same quota.
    assert fleet.call("POST", "/deployments", "operator", {**SMOL, "tenant": "acme"}).status_code == 409
    # Stopped replicas no longer count.
    fleet.ok("DELETE", f"/deployments/{first['id']}", "acme")
    fleet.ok("POST", "/deployments", "acme", {**SMOL, "replicas": 6})
    # The operator raises acme's quota; the platform-wide default applies to everyone else.
    assert fleet.call("PUT", "/deployment-quotas", "acme", {"tenant": "acme", "max_replicas": 99}).status_code == 403
    fleet.ok("PUT", "/deployment-quotas", "operator", {"tenant": "acme", "max_replicas": 10})
    fleet.ok("POST", "/deployments", "acme", {**SMOL, "replicas": 2})
    fleet.ok("PUT", "/deployment-quotas", "operator", {"max_replicas": 1})
    assert fleet.call("POST", "/deployments", "beta", {**SMOL, "replicas": 2}).status_code == 409
    assert fleet.ok("GET", "/deployment-quotas", "beta") == {"tenant": "beta", "max_replicas": 1, "held": 0}
    assert fleet.ok("GET", "/deployment-quotas", "acme")["held"] == 10
    # The public MaaS has no quota.
    fleet.ok("POST", "/deployments", "operator", {**SMOL, "replicas": 12})


# --------------------------------------------------------------------------- names


def test_a_name_clash_reveals_no_other_tenants_deployment(fleet: Api) -> None:
    mine = fleet.ok("POST", "/deployments", "acme", {**SMOL, "name": "chatbot"})
    # beta picks the same name: its own namespace, so nothing tells it that acme has one.
    theirs = fleet.ok("POST", "/deployments", "beta", {**SMOL, "name": "chatbot"})
    assert theirs["id"] != mine["id"] and theirs["tenant"] == "beta"
    assert fleet.ok("GET", "/deployments/chatbot", "beta")["id"] == theirs["id"]
    assert fleet.ok("GET", "/deployments/chatbot", "acme")["id"] == mine["id"]
    # Its own name clashes, and the message speaks of its own deployment only.
    again = fleet.call("POST", "/deployments", "beta", {**SMOL, "name": "chatbot"})
    assert again.status_code == 409 and "you already have" in again.json()["error"]["message"]
    # A tenant's own deployment wins over a public one of the same name.
    public = fleet.ok("POST", "/deployments", "operator", {**SMOL, "name": "chatbot"})
    assert fleet.ok("GET", "/deployments/chatbot", "acme")["id"] == mine["id"]
    # An operator sees three: the name alone is ambiguous, the id is not.
    ambiguous = fleet.call("GET", "/deployments/chatbot", "operator")
    assert ambiguous.status_code == 409 and ambiguous.json()["error"]["field"] == "deployment"
    assert fleet.ok("GET", f"/deployments/{public['id']}", "operator")["tenant"] is None


# --------------------------------------------------------------------------- views


def test_tenants_do_not_see_weight_paths_or_engine_flags(fleet: Api) -> None:
    for who in ("acme", "p1"):
        seen = fleet.ok("GET", f"/models/{VLLM['name']}", who)
        assert seen["source"] is None and seen["extra_args"] == []
        assert all(m["source"] is None for m in fleet.ok("GET", "/models", who))
    seen = fleet.ok("GET", f"/models/{VLLM['name']}", "operator")
    assert seen["source"] == VLLM["source"] and seen["extra_args"] == ["--lora-modules", "a=/secret/lora"]


def view_of(api: Api, who: str, ref: int) -> dict[str, Any]:
    return api.ok("GET", f"/deployments/{ref}", who)


def test_tenants_see_their_replicas_state_and_load_but_not_where_they_run(fleet: Api, clock: Clock) -> None:
    own = fleet.ok("POST", "/deployments", "acme", {**SMOL, "site": "s1"})
    public = fleet.ok("POST", "/deployments", "operator",
                      {"model": VLLM["name"], "devices_per_replica": 1, "site": "s1"})
    sessions = fleet.client.app.state.ctx.sessions  # type: ignore[attr-defined]
    with transaction(sessions) as session:
        for out in (own, public):
            record_replica(session, Observed(out["id"], 0, "healthy", 41234, 0, in_flight=1, slots=2), clock.now)
    for ref, site in ((own["id"], "s1"), (public["id"], None)):
        replica = view_of(fleet, "acme", ref)["replica_states"][0]
        assert (replica["state"], replica["load"], replica["in_flight"]) == ("healthy", 0.5, 1)
        assert replica["node"] is None and replica["port"] is None and replica["devices"] == []
        assert view_of(fleet, "acme", ref)["site"] == site  # the site it chose itself, not the platform's
        assert "41234" not in str(fleet.ok("GET", "/deployments", "acme"))
    for ref in (own["id"], public["id"]):
        replica = view_of(fleet, "operator", ref)["replica_states"][0]
        assert replica["node"] == "s1/gpu-a" and replica["port"] == 41234
    assert view_of(fleet, "operator", public["id"])["site"] == "s1"


# --------------------------------------------------------------------------- the runtime


def test_the_runtime_kills_leftovers_first_and_runs_replicas_for_their_owner(fleet: Api, clock: Clock,
                                                                             tmp_path: Path) -> None:
    import asyncio
    import subprocess
    import sys

    from zhisuan.engines import leftovers
    from zhisuan.gateway.router import Router
    from zhisuan.serving.runtime import ServingRuntime

    out = fleet.ok("POST", "/deployments", "acme", {**SMOL, "name": "mine"})
    app = fleet.client.app
    node_id = fleet.ok("GET", "/nodes/s1/gpu-a", "operator")["id"]
    logs = tmp_path / "logs"
    # An engine a previous control plane of this machine left running.
    leftover = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        leftovers.write_pid_file(logs / "mine@99-0.pid", leftover.pid)
        runtime = ServingRuntime(app.state.ctx.sessions, app.state.catalog, Router(), logs,  # type: ignore[attr-defined]
                                 node_id, clock=clock)
        desired, token = runtime.load()
        assert token is not None
        # Owner and a machine-unique name (deployment names are unique per owner only).
        assert [(d.tenant_id is not None, d.process_name) for d in desired] == [(True, f"mine@{out['id']}")]
        asyncio.run(runtime.reconcile())
        assert leftover.wait(5) == -9 and list(logs.glob("*.pid")) == []
    finally:
        leftover.kill()
        leftover.wait()
    # The weights are not on this machine: failed, and the reason names no path.
    replica = fleet.ok("GET", f"/deployments/{out['id']}", "acme")["replica_states"][0]
    assert replica["state"] == "failed" and GGUF["source"] not in replica["message"]
