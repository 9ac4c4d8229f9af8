"""A node from agent registration through heartbeats to unreachable and back."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

from sqlalchemy import event

from tests.api.conftest import Api, Clock, h100_node
from zhisuan.loops.heartbeat_monitor import LEASE, monitor_pass
from zhisuan.store.base import transaction
from zhisuan.store.leases import acquire_lease


def run_monitor(api: Api, clock: Clock, holder: str = "test") -> list[int]:
    return monitor_pass(api.client.app.state.ctx.sessions, clock(), timedelta(seconds=30), holder)  # type: ignore[attr-defined]


def test_register_heartbeat_unreachable_and_back(world: Api, clock: Clock) -> None:
    ack = world.ok("POST", "/agent/register", "agent1", h100_node("gpu-a"))
    assert ack["status"] == "ready"
    node = world.ok("GET", "/nodes/s1/gpu-a", "operator")
    assert [d["model"] for d in node["devices"]] == ["h100-sxm"] * 8
    assert all(d["available"] for d in node["devices"])

    clock.advance(seconds=20)
    world.ok("POST", "/agent/heartbeat", "agent1", {"node": "gpu-a", "devices": [
        {"index": 3, "healthy": False, "health_detail": "XID 79: fallen off the bus"}]})
    node = world.ok("GET", "/nodes/s1/gpu-a", "operator")
    assert node["devices"][3]["health"] == "unhealthy" and not node["devices"][3]["available"]
    # A device fault cordons its node (a GPU reset or reboot needs the node empty), with the reason.
    assert node["cordon_reason"] == "device 3: XID 79: fallen off the bus"
    assert sum(d["available"] for d in node["devices"]) == 0

    clock.advance(seconds=25)
    assert run_monitor(world, clock) == []  # 25 s since the last beat: within the 30 s timeout
    clock.advance(seconds=10)
    assert run_monitor(world, clock) == [node["id"]]
    node = world.ok("GET", "/nodes/s1/gpu-a", "operator")
    assert node["status"] == "unreachable"
    assert not any(d["available"] for d in node["devices"])
    assert world.ok("GET", "/fleet/summary", "operator")["accelerators_available"] == 0
    assert run_monitor(world, clock) == []  # idempotent

    world.ok("POST", "/agent/heartbeat", "agent1", {"node": "gpu-a", "devices": [
        {"index": 3, "healthy": True}]})
    node = world.ok("GET", "/nodes/s1/gpu-a", "operator")
    # Reachable and clean again, but it returns only after clean reports for the clear period (300 s).
    assert node["status"] == "ready" and node["cordon_reason"] is not None
    assert not any(d["available"] for d in node["devices"])
    clock.advance(seconds=300)
    world.ok("POST", "/agent/heartbeat", "agent1", {"node": "gpu-a", "devices": [{"index": 3, "healthy": True}]})
    node = world.ok("GET", "/nodes/s1/gpu-a", "operator")
    assert node["cordon_reason"] is None and all(d["available"] for d in node["devices"])


def test_uncordon_runs_the_health_check(world: Api, clock: Clock) -> None:
    world.ok("POST", "/agent/register", "agent1", h100_node("gpu-a", 2))
    # A node-scoped fault (an ECC error would cordon only its device: tests/api/test_device_cordon.py).
    bad = {"node": "gpu-a", "devices": [{"index": 1, "healthy": False, "health_detail": "NVLink: link 2 inactive"}]}
    world.ok("POST", "/agent/heartbeat", "agent1", bad)
    refused = world.call("POST", "/nodes/s1/gpu-a/uncordon", "operator")
    assert refused.status_code == 409 and "still reports faults: device 1: NVLink" in refused.text
    world.ok("POST", "/agent/heartbeat", "agent1", {"node": "gpu-a", "devices": [{"index": 1, "healthy": True}]})
    node = world.ok("POST", "/nodes/s1/gpu-a/uncordon", "operator")
    assert node["cordon_reason"] is None and all(d["available"] for d in node["devices"])
    # An operator's own cordon keeps the node out however clean it reports, until uncordoned.
    node = world.ok("POST", "/nodes/s1/gpu-a/cordon", "operator", {"reason": "maintenance"})
    assert node["cordon_reason"] == "operator: maintenance"
    clock.advance(hours=1)
    world.ok("POST", "/agent/heartbeat", "agent1", {"node": "gpu-a", "devices": []})
    assert world.ok("GET", "/nodes/s1/gpu-a", "operator")["cordon_reason"] == "operator: maintenance"


def test_second_monitor_process_does_not_apply_while_lease_held(world: Api, clock: Clock) -> None:
    world.ok("POST", "/agent/register", "agent1", h100_node("gpu-a"))
    clock.advance(seconds=31)
    sessions = world.client.app.state.ctx.sessions  # type: ignore[attr-defined]
    with transaction(sessions) as session:
        assert acquire_lease(session, LEASE, "a", clock(), timedelta(seconds=30)) is not None
    assert run_monitor(world, clock, holder="b") == []  # the node is stale, but "a" holds the lease
    assert world.ok("GET", "/nodes/s1/gpu-a", "operator")["status"] == "ready"
    assert len(run_monitor(world, clock, holder="a")) == 1


def test_a_beat_committed_while_the_monitor_applies_keeps_the_node_ready(world: Api, clock: Clock) -> None:
    """The race an outside measurement found (issue 15): the monitor decided from a stale read, and a
    heartbeat committed before its write — the node was marked unreachable 21–23 ms after its beat.
    Here the beat is committed at the worst moment: just before the monitor's write reaches the database."""
    world.ok("POST", "/agent/register", "agent1", h100_node("gpu-a", 2))
    clock.advance(seconds=31)
    engine = world.client.app.state.engine  # type: ignore[attr-defined]
    fired: list[bool] = []

    def beat_first(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if not fired and statement.lstrip().upper().startswith("UPDATE NODES"):
            fired.append(True)
            world.ok("POST", "/agent/heartbeat", "agent1", {"node": "gpu-a", "devices": []})

    event.listen(engine, "before_cursor_execute", beat_first)
    try:
        assert run_monitor(world, clock) == []
    finally:
        event.remove(engine, "before_cursor_execute", beat_first)
    assert fired
    node = world.ok("GET", "/nodes/s1/gpu-a", "operator")
    assert node["status"] == "ready" and all(d["available"] for d in node["devices"])


def test_a_monitor_pass_during_a_beat_leaves_the_node_ready(world: Api, clock: Clock) -> None:
    """The mirror race (found by benchmarks/controlplane): a beat read its node while still ``ready``,
    the monitor then marked it unreachable, and the beat wrote only its time — the node stayed
    unreachable after an acknowledged beat. Here the monitor runs just before the beat's write; the beat
    holds its node's row, so the monitor waits and then sees the fresh beat."""
    world.ok("POST", "/agent/register", "agent1", h100_node("gpu-a", 2))
    clock.advance(seconds=31)
    engine = world.client.app.state.engine  # type: ignore[attr-defined]
    marked: list[list[int]] = []
    monitor = threading.Thread(target=lambda: marked.append(run_monitor(world, clock)))

    def monitor_first(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if not monitor.is_alive() and not marked and "SET last_heartbeat_at" in statement.replace('"', ""):
            monitor.start()
            monitor.join(timeout=2)  # done at once without the beat's lock; else it waits for our commit

    event.listen(engine, "before_cursor_execute", monitor_first)
    try:
        world.ok("POST", "/agent/heartbeat", "agent1", {"node": "gpu-a", "devices": []})
    finally:
        event.remove(engine, "before_cursor_execute", monitor_first)
    monitor.join(timeout=30)
    assert marked == [[]]
    node = world.ok("GET", "/nodes/s1/gpu-a", "operator")
    assert node["status"] == "ready" and all(d["available"] for d in node["devices"])


def test_drain_is_kept_across_unreachable(world: Api, clock: Clock) -> None:
    world.ok("POST", "/agent/register", "agent1", h100_node("gpu-a", 2))
    world.ok("PATCH", "/nodes/s1/gpu-a", "operator", {"drained": True})
    clock.advance(seconds=31)
    run_monitor(world, clock)
    world.ok("POST", "/agent/heartbeat", "agent1", {"node": "gpu-a", "devices": []})
    node = world.ok("GET", "/nodes/s1/gpu-a", "operator")
    assert node["status"] == "ready" and node["drained"] and not any(d["available"] for d in node["devices"])


def test_reregistration_replaces_devices(world: Api) -> None:
    world.ok("POST", "/agent/register", "agent1", h100_node("gpu-a", 8))
    world.ok("POST", "/agent/register", "agent1", h100_node("gpu-a", 4))
    assert len(world.ok("GET", "/nodes/s1/gpu-a", "operator")["devices"]) == 4
    assert len(world.ok("GET", "/nodes", "operator")) == 1


def test_declared_nodes_are_not_marked_unreachable(world: Api, clock: Clock) -> None:
    world.ok("POST", "/nodes", "p1", {"site": "s1", "name": "slurm-01", "cpu_cores": 64, "memory_mib": 512_000,
                                      "accelerators": [{"model": "Ascend910B3", "count": 8}]})
    clock.advance(hours=1)
    assert run_monitor(world, clock) == []
    node = world.ok("GET", "/nodes/s1/slurm-01", "p1")
    assert node["status"] == "ready" and len(node["devices"]) == 8
    assert node["devices"][0]["model"] == "ascend-910b3"
    assert all(d["available"] and d["health"] == "healthy" for d in node["devices"])
