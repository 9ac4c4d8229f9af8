"""Cordons on nodes: applied from health reports, engine observations and lost agents; lifted by the
health check (``core.health.cordon``). A cordoned node's devices are unavailable, so no new placement
lands there; work already running is handled by the job scheduler (a fault restarts the job elsewhere)."""

from __future__ import annotations

from datetime import datetime, timedelta

from zhisuan.core.health.cordon import CordonState, NodeHealth, after_report, uncordon_check
from zhisuan.errors import Conflict
from zhisuan.inventory.models import Node


def health_of(node: Node, reachable: bool | None = None) -> NodeHealth:
    faults = tuple(f"device {d.index}: {d.health_detail or 'unhealthy'}" for d in node.devices
                   if d.health != "healthy")
    return NodeHealth(node.status == "ready" if reachable is None else reachable, faults)


def state_of(node: Node) -> CordonState:
    return CordonState(node.cordon_reason, node.cordoned_at, node.cordon_clean_since, node.cordon_manual)


def store(node: Node, state: CordonState) -> None:
    node.cordon_reason = state.reason[:500] if state.reason else None
    node.cordoned_at, node.cordon_clean_since = state.since, state.clean_since
    node.cordon_manual = state.manual if state.reason else False


def apply_health(node: Node, now: datetime, clear_after: timedelta, reachable: bool | None = None,
                 extra_faults: tuple[str, ...] = ()) -> None:
    """After a report (agent heartbeat, engine sync, lost agent): cordon, keep, or lift."""
    health = health_of(node, reachable)
    health = NodeHealth(health.reachable, health.faults + extra_faults)
    store(node, after_report(state_of(node), health, now, clear_after))


def cordon_by_operator(node: Node, reason: str, now: datetime) -> None:
    store(node, CordonState(f"operator: {reason}", now, None, True))


def uncordon_by_operator(node: Node) -> None:
    """Runs the health check on the node's latest report; refuses (409) while it fails."""
    why = uncordon_check(health_of(node))
    if why:
        raise Conflict(f"node {node.name} stays cordoned: {why}", field="node")
    store(node, CordonState(None))
