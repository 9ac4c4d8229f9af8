"""The agent's replica host with a clearly fake engine (benchmarks/gateway/fake_upstream.py): what it
starts, reports, drains and stops for the assignments it gets, and the leftovers it kills at start.
The real llama.cpp engine on two agents is tests/e2e/test_fleet_replicas.py."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.gateway.conftest import FAKE_UPSTREAM

from zhisuan.agent.replicas import ReplicaHost, ReplicaSync
from zhisuan.engines.leftovers import process_start
from zhisuan.engines.spec import DeviceAssignment, LaunchPlan, ModelSpec
from zhisuan.engines.supervisor import SupervisorPolicy

FAST = SupervisorPolicy(health_interval_s=0.1, backoff_initial_s=0.2, start_timeout_s=20, drain_timeout_s=5,
                        kill_timeout_s=3)


def fake_plan(spec: ModelSpec, a: DeviceAssignment, secret: str | None = None) -> LaunchPlan:
    """A fake engine on the assigned port; the environment shows what a real profile would get."""
    return LaunchPlan(argv=(sys.executable, str(FAKE_UPSTREAM), "--port", str(a.port)), env={},
                      base_url=f"http://{a.host}:{a.port}", secret=secret, secret_env="FAKE_KEY")


def item(index: int, source: Path, desired: str = "run") -> dict[str, Any]:
    return {"deployment_id": 7, "index": index, "name": "smol@7", "desired": desired, "stack": "cpu",
            "model": {"name": "smol", "source": str(source), "engine": "llama.cpp", "context_length": 512,
                      "stacks": ["cpu"]},
            "device_indices": [], "visible_devices_env": None, "threads": 1, "parallel": 2}


@pytest.fixture
def hosts(tmp_path: Path) -> Iterator[Callable[[], ReplicaHost]]:
    made: list[ReplicaHost] = []

    def make() -> ReplicaHost:
        made.append(ReplicaHost(tmp_path / "replicas", "127.0.0.1", policy=FAST, drain_grace_s=0.2, plan=fake_plan))
        return made[-1]

    yield make
    for host in made:
        host.close()


def wait_for(host: ReplicaHost, check: Callable[[list[dict[str, Any]]], bool], timeout_s: float = 60) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        host.sample()
        reports = host.reports()
        if check(reports):
            return reports
        time.sleep(0.1)
    raise AssertionError(f"not reached: {host.reports()}")


def states(reports: list[dict[str, Any]]) -> dict[int, str]:
    return {r["index"]: r["state"] for r in reports}


def test_runs_what_is_assigned_reports_it_and_drains_on_request(hosts: Any, tmp_path: Path) -> None:
    weights = tmp_path / "smol.gguf"
    weights.write_bytes(b"GGUF")
    host = hosts()
    host.apply([item(0, weights), item(1, tmp_path / "missing.gguf")])
    reports = wait_for(host, lambda r: states(r) == {0: "healthy", 1: "failed"})
    healthy = next(r for r in reports if r["index"] == 0)
    assert healthy["port"] and len(healthy["secret"]) >= 32 and healthy["slots"] == 2
    failed = next(r for r in reports if r["index"] == 1)
    assert failed["message"] == "the model's weights are not on this node"  # no path: tenants read it
    pid = host.running[(7, 0)].supervisor.replica.pid
    assert pid is not None

    host.apply([item(0, weights, "drain")])  # the failed one is no longer assigned: forgotten
    wait_for(host, lambda r: states(r) == {0: "stopped"})
    assert process_start(pid) is None
    host.apply([])  # the control plane took the stop: nothing left to report
    assert host.reports() == []


def test_a_replica_no_longer_assigned_is_stopped_without_a_report(hosts: Any, tmp_path: Path) -> None:
    weights = tmp_path / "smol.gguf"
    weights.write_bytes(b"GGUF")
    host = hosts()
    host.apply([item(0, weights)])
    wait_for(host, lambda r: states(r) == {0: "healthy"})
    host.apply([])
    wait_for(host, lambda r: r == [] and not host.running)


def test_a_restarted_agent_kills_the_engines_its_predecessor_left(hosts: Any, tmp_path: Path) -> None:
    weights = tmp_path / "smol.gguf"
    weights.write_bytes(b"GGUF")
    first = hosts()
    first.apply([item(0, weights)])
    wait_for(first, lambda r: states(r) == {0: "healthy"})
    pid = first.running[(7, 0)].supervisor.replica.pid
    assert pid is not None and process_start(pid) is not None
    hosts()  # same replicas directory: its pid files name the engine
    assert process_start(pid) is None


def test_sync_reports_then_applies_the_answer_and_survives_an_unreachable_control_plane(
        hosts: Any, tmp_path: Path) -> None:
    weights = tmp_path / "smol.gguf"
    weights.write_bytes(b"GGUF")
    host = hosts()
    sent: list[dict[str, Any]] = []
    down = [False]

    def exchange(body: dict[str, Any]) -> dict[str, Any]:
        sent.append(body)
        if down[0]:
            raise RuntimeError("control plane: HTTP 503")
        return {"replicas": [item(0, weights)], "refused": []}

    sync = ReplicaSync(host, "node-a", exchange)
    sync.step()
    assert sent[0] == {"node": "node-a", "address": "127.0.0.1", "replicas": []}
    wait_for(host, lambda r: states(r) == {0: "healthy"})
    down[0] = True
    sync.step()  # nothing changes: the engine keeps serving
    assert states(sent[-1]["replicas"]) == {0: "healthy"} and states(host.reports()) == {0: "healthy"}
