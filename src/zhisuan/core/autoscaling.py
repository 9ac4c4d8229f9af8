"""How many replicas a model deployment should have: the autoscaler's decision, pure.

Inputs are a frozen snapshot of one deployment (its policy, the load its replicas last reported,
when it last scaled, how much quota room its tenant has); the output is the replica count to move
to and why. No I/O: the control plane's loop (``serving.autoscaler``) loads the snapshot, calls
``decide``, and applies the answer through placement (out) or by draining (in).

A replica's in-flight requests are the larger of what its engine reports (busy slots, at most its
``slots``: llama.cpp; vLLM and MindIE report none) and what the gateways report they have sent it
and not yet had answered (``gateway_in_flight``: counts requests queued in the engine too, so a load
above 1.0 per slot is visible). The policy's ``target_kind`` chooses the measure:

``in_flight_per_slot`` (the default): load = in-flight over the slots of the ready replicas. For
``current`` replicas with ``slots`` each and ``in_flight`` requests in all, the count that would
put every replica at the target load is::

    wanted = ceil(in_flight / (target * slots))

``queue_time_s``: the gateways' mean queue wait ``q`` (arrival at a gateway to the replica's first
response byte; requests still waiting count at their age so far), weighted by the requests each
measured, against the target ``T`` seconds. Queue time does not fall linearly with replicas, so
the count is bounded by what more slots can help with: with ``need = ceil(in_flight / slots)``
(replicas that hold every in-flight request in a slot)::

    scale out when q > T·(1 + tolerance) and need > current:
        wanted = min(need, max(current + 1, ceil(current · q / T)))
    scale in (one replica) when q < T·(1 − tolerance) and need <= current − 1

so a scale-out never goes past the slots the in-flight requests fill, and a scale-in never leaves
fewer slots than requests in flight: on a steady load (fixed in-flight), a move out can never be
followed by a move in, nor the reverse, whatever the measured queue time does.

Rules, in order (each is a property the tests check):

1. *Repair*: fewer replicas than the floor (``min``, or the fixed size of a deployment without a
   policy) → up to the floor at once, no cool-down (a lost replica is replaced, not "scaled").
2. *Bounds*: the answer is never above ``max`` nor below ``min``, and never adds more replicas than
   the tenant's quota room (above the current count).
3. *Tolerance*: while ``|load / target - 1| <= tolerance`` nothing changes (no flapping on noise);
   for ``queue_time_s`` ``load`` is ``q``.
4. *Cool-downs*: a scale-out only ``out_cooldown`` after the last scale-out; a scale-in only
   ``in_cooldown`` after the last change of either kind; and no scale-in while a replica is still
   starting (its slots are not yet measured).
5. *Step*: a scale-in removes one replica per decision (the next waits a cool-down), so a short
   lull cannot empty a busy deployment; a scale-out goes to ``wanted`` in one step, and a lowered
   ``max`` is obeyed at once.
6. *Zero*: with ``min == 0`` and no load, the last replica goes after the scale-in cool-down; with
   zero replicas, requests that found none (``demand``, reported by gateways) bring back ``max(1, min)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

IN_FLIGHT_PER_SLOT = "in_flight_per_slot"
QUEUE_TIME_S = "queue_time_s"
TARGET_KINDS = (IN_FLIGHT_PER_SLOT, QUEUE_TIME_S)


@dataclass(frozen=True)
class Policy:
    """A deployment's autoscaling: bounds, target (of ``target_kind``), hysteresis and cool-downs."""

    min_replicas: int
    max_replicas: int
    target: float  # in-flight requests per slot, or seconds of queue wait; > 0
    out_cooldown: timedelta = timedelta(seconds=30)
    in_cooldown: timedelta = timedelta(seconds=300)
    tolerance: float = 0.1
    target_kind: str = IN_FLIGHT_PER_SLOT


@dataclass(frozen=True)
class ReplicaLoad:
    in_flight: int  # busy slots as its engine reports them (at most ``slots``)
    slots: int
    ready: bool  # healthy: its load is measured; False while starting
    gateway_in_flight: int = 0  # sent by the gateways, not yet answered (queued in the engine included)
    queue_wait_s: float = 0.0  # the gateways' mean queue wait of its requests…
    waits: int = 0  # …over this many requests (the weight of ``queue_wait_s``)

    @property
    def requests(self) -> int:
        """Its in-flight requests: the larger of the engine's and the gateways' count."""
        return max(self.in_flight, self.gateway_in_flight)


@dataclass(frozen=True)
class Snapshot:
    """One deployment as the loop sees it. ``replicas``: those it counts (not draining, not gone)."""

    fixed: int  # the deployment's replica count (the floor of a deployment without a policy)
    policy: Policy | None
    replicas: tuple[ReplicaLoad, ...]
    now: datetime
    last_scale_out: datetime | None = None
    last_scale_in: datetime | None = None
    demand: int = 0  # requests gateways saw with no replica to route to, since the last decision
    quota_room: int | None = None  # more replicas the tenant may hold (None: no quota)


@dataclass(frozen=True)
class Decision:
    desired: int
    reason: str
    kind: str  # "none" | "repair" | "scale_out" | "scale_in"


def load_per_slot(replicas: tuple[ReplicaLoad, ...]) -> float:
    """In-flight requests over the slots of the ready replicas (0.0 when none is ready)."""
    slots = sum(r.slots for r in replicas if r.ready)
    return sum(r.requests for r in replicas if r.ready) / slots if slots else 0.0


def queue_wait(replicas: tuple[ReplicaLoad, ...]) -> float:
    """The gateways' mean queue wait over the ready replicas, weighted by requests measured (0.0: none)."""
    waits = sum(r.waits for r in replicas if r.ready)
    return sum(r.queue_wait_s * r.waits for r in replicas if r.ready) / waits if waits else 0.0


def wanted_replicas(replicas: tuple[ReplicaLoad, ...], target: float) -> int:
    """``ceil(in_flight / (target * slots per replica))`` over the ready replicas."""
    ready = [r for r in replicas if r.ready]
    if not ready:
        return 0
    per_replica = sum(r.slots for r in ready) / len(ready)
    # Rounded first: 0.7 * 10 / 7 is 1.0000000000000002 in floating point, not 1.
    return math.ceil(round(sum(r.requests for r in ready) / (target * per_replica), 9))


def wanted_for_queue(replicas: tuple[ReplicaLoad, ...], current: int, q: float, policy: Policy) -> int:
    """The count ``queue_time_s`` asks for (module docstring): out only up to the slots in-flight
    requests fill, in by one only when the others' slots hold every in-flight request."""
    need = wanted_replicas(replicas, 1.0)
    if q > policy.target * (1 + policy.tolerance) and need > current:
        return min(need, max(current + 1, math.ceil(round(current * q / policy.target, 9))))
    if q < policy.target * (1 - policy.tolerance) and need <= current - 1:
        return current - 1
    return current


def cap_out(desired: int, current: int, quota_room: int | None) -> int:
    return desired if quota_room is None else min(desired, current + max(0, quota_room))


def since(now: datetime, then: datetime | None) -> timedelta:
    return timedelta.max if then is None else now - then


def decide(snap: Snapshot) -> Decision:
    current, policy = len(snap.replicas), snap.policy
    if policy is None:
        if current < snap.fixed:
            return Decision(cap_out(snap.fixed, current, snap.quota_room),
                            f"{current} of {snap.fixed} replicas: replacing the missing", "repair")
        return Decision(current, "fixed size", "none")
    if current < policy.min_replicas:
        return Decision(cap_out(policy.min_replicas, current, snap.quota_room),
                        f"{current} replicas, below the minimum {policy.min_replicas}", "repair")
    if current == 0:
        if snap.demand > 0 and policy.max_replicas > 0:
            return Decision(cap_out(max(1, policy.min_replicas), current, snap.quota_room),
                            f"{snap.demand} request(s) found no replica: cold start", "scale_out")
        return Decision(0, "scaled to zero, no demand", "none")
    if current > policy.max_replicas:  # the maximum was lowered (or replicas set by hand): obey at once
        return Decision(policy.max_replicas, f"above the maximum {policy.max_replicas}", "scale_in")
    return by_load(snap, policy, current)


def by_load(snap: Snapshot, policy: Policy, current: int) -> Decision:
    """Rules 3–5 for a deployment with replicas within its bounds."""
    if policy.target_kind == QUEUE_TIME_S:
        load, unit = queue_wait(snap.replicas), "s queue wait"
        raw = wanted_for_queue(snap.replicas, current, load, policy)
    else:
        load, unit = load_per_slot(snap.replicas), "/slot"
        raw = wanted_replicas(snap.replicas, policy.target)
    what = f"load {load:.2f}{unit}"
    wanted = max(policy.min_replicas, min(policy.max_replicas, raw))
    near_target = abs(load / policy.target - 1) <= policy.tolerance
    if wanted > current and not near_target:
        if since(snap.now, snap.last_scale_out) < policy.out_cooldown:
            return Decision(current, f"{what} wants {wanted}: scale-out cool-down", "none")
        desired = cap_out(wanted, current, snap.quota_room)
        if desired <= current:
            return Decision(current, f"{what} wants {wanted}: no quota room", "none")
        return Decision(desired, f"{what} over target {policy.target:g}", "scale_out")
    if wanted < current and not near_target:
        last_change = max((t for t in (snap.last_scale_out, snap.last_scale_in) if t is not None), default=None)
        if since(snap.now, last_change) < policy.in_cooldown:
            return Decision(current, f"{what} wants {wanted}: scale-in cool-down", "none")
        if not all(r.ready for r in snap.replicas):
            return Decision(current, "a replica is still starting: no scale-in", "none")
        return Decision(current - 1, f"{what} under target {policy.target:g}", "scale_in")
    return Decision(current, f"{what} near target {policy.target:g}", "none")
