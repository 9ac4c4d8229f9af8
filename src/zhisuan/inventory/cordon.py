"""Cordons on nodes and devices: applied from health reports, engine observations and lost agents;
lifted by the health check (``core.health.cordon``). A faulty device is cordoned on its own; its node
only when the fault is node-scoped (``core.health.scope``). A cordoned device is unavailable, and so
are all devices of a cordoned node, so no new placement lands there; work already running is handled
by the job scheduler (``workloads.faults``: a fault restarts the work holding it elsewhere)."""

from __future__ import annotations

from datetime import datetime, timedelta

from zhisuan.core.health.cordon import (
    CordonState,
    NodeHealth,
    after_report,
    device_after_report,
    device_uncordon_check,
    uncordon_check,
)
from zhisuan.core.health.scope import DeviceFault, node_faults
from zhisuan.errors import Conflict, NotFound
from zhisuan.inventory.models import Device, Node


def device_faults(node: Node) -> list[DeviceFault]:
    return [DeviceFault(d.index, d.health_detail) for d in node.devices if d.health != "healthy"]


def health_of(node: Node, reachable: bool | None = None) -> NodeHealth:
    """The node's own health: reachability and its node-scoped faults (device-scoped ones are its
    devices' business)."""
    return NodeHealth(node.status == "ready" if reachable is None else reachable,
                      node_faults(device_faults(node), len(node.devices)))


def state_of(node: Node) -> CordonState:
    return CordonState(node.cordon_reason, node.cordoned_at, node.cordon_clean_since, node.cordon_manual)


def store(node: Node, state: CordonState) -> None:
    node.cordon_reason = state.reason[:500] if state.reason else None
    node.cordoned_at, node.cordon_clean_since = state.since, state.clean_since
    node.cordon_manual = state.manual if state.reason else False


def faults_of_device(device: Device) -> tuple[str, ...]:
    return () if device.health == "healthy" else (DeviceFault(device.index, device.health_detail).reason,)


def device_state_of(device: Device) -> CordonState:
    return CordonState(device.cordon_reason, device.cordoned_at, device.cordon_clean_since)


def store_device(device: Device, state: CordonState) -> None:
    device.cordon_reason = state.reason[:500] if state.reason else None
    device.cordoned_at, device.cordon_clean_since = state.since, state.clean_since


def apply_health(node: Node, now: datetime, clear_after: timedelta, reachable: bool | None = None,
                 extra_faults: tuple[str, ...] = ()) -> None:
    """After a report (agent heartbeat, engine sync, lost agent): cordon, keep, or lift the node and
    each device. A lost agent reports nothing about its devices: their cordons stay as they are."""
    health = health_of(node, reachable)
    health = NodeHealth(health.reachable, health.faults + extra_faults)
    store(node, after_report(state_of(node), health, now, clear_after))
    if health.reachable:
        for device in node.devices:
            store_device(device, device_after_report(device_state_of(device), faults_of_device(device), now,
                                                     clear_after))


def has_device_cordon(node: Node) -> bool:
    return any(device.cordon_reason is not None for device in node.devices)


def cordon_by_operator(node: Node, reason: str, now: datetime) -> None:
    store(node, CordonState(f"operator: {reason}", now, None, True))


def uncordon_by_operator(node: Node) -> None:
    """Runs the health check on the node's latest report; refuses (409) while it fails. The check
    covers its devices too: a cordoned device that reports no fault returns with the node, one that
    still does stays cordoned on its own."""
    why = uncordon_check(health_of(node))
    if why:
        raise Conflict(f"node {node.name} stays cordoned: {why}", field="node")
    store(node, CordonState(None))
    for device in node.devices:
        if not faults_of_device(device):
            store_device(device, CordonState(None))


def uncordon_device_by_operator(node: Node, index: int) -> Device:
    """Runs the health check on the device's latest report; refuses (409) while it fails."""
    device = next((d for d in node.devices if d.index == index), None)
    if device is None:
        raise NotFound(f"node {node.name} has no device {index}", field="device")
    why = device_uncordon_check(node.status == "ready", faults_of_device(device))
    if why:
        raise Conflict(f"device {index} of node {node.name} stays cordoned: {why}", field="device")
    store_device(device, CordonState(None))
    return device
