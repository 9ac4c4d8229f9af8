"""When a node or one device leaves placement for a fault, and when it may return.

A device is cordoned when it reports a fault (XID, ECC, NVLink, npu-smi alarm); its node is cordoned
too when the fault is node-scoped (``core.health.scope``: XID 79, NVLink, unknown faults, more than
half the devices faulty), when its engine says it failed (Slurm NODE_FAIL / DOWN / not responding) or
when its agent is lost. The reason is kept and shown. Either returns only after a health check passes
(the same rule for both; a device's "reachable" is its node's):

    automatic: every report has been clean for ``clear_after_s`` (the clock starts at the first clean
               report after the last fault, so one flapping report restarts it);
    operator:  ``zhisuan node uncordon [--device INDEX]`` — refused unless the node's latest report is clean and it is
               reachable (the check runs; the clean period is waived).

A cordon an operator set by hand (``manual``) never clears by itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class NodeHealth:
    """What is known about a node now (from its last report)."""

    reachable: bool
    faults: tuple[str, ...]  # e.g. ("device 3: XID 79 (GPU has fallen off the bus)",)


@dataclass(frozen=True)
class CordonState:
    reason: str | None  # None: not cordoned
    since: datetime | None = None
    clean_since: datetime | None = None  # first clean report since the last fault
    manual: bool = False


def after_report(state: CordonState, health: NodeHealth, now: datetime, clear_after: timedelta) -> CordonState:
    """The cordon after one health report."""
    if health.faults or not health.reachable:
        reason = "; ".join(health.faults) if health.faults else "agent lost: no heartbeat"
        if state.reason is None:
            return CordonState(reason, now, None, False)
        return CordonState(state.reason if state.manual else reason, state.since, None, state.manual)
    if state.reason is None:
        return state
    clean_since = state.clean_since or now
    if not state.manual and now - clean_since >= clear_after:
        return CordonState(None)
    return CordonState(state.reason, state.since, clean_since, state.manual)


def uncordon_check(health: NodeHealth) -> str:
    """Why an operator's uncordon is refused ("" when the check passes)."""
    if not health.reachable:
        return "the node is unreachable (no heartbeat); it cannot be checked"
    if health.faults:
        return "the node still reports faults: " + "; ".join(health.faults)
    return ""


def device_after_report(state: CordonState, faults: tuple[str, ...], now: datetime,
                        clear_after: timedelta) -> CordonState:
    """A device's cordon after its node's report: ``after_report`` with the device's own faults (a
    device is judged only on reports, so only while its node is reachable)."""
    return after_report(state, NodeHealth(True, faults), now, clear_after)


def device_uncordon_check(node_reachable: bool, faults: tuple[str, ...]) -> str:
    """Why an operator's uncordon of one device is refused ("" when the check passes)."""
    if not node_reachable:
        return "its node is unreachable (no heartbeat); the device cannot be checked"
    if faults:
        return "the device still reports faults: " + "; ".join(faults)
    return ""
