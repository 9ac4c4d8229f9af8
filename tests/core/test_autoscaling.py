"""The autoscaler's pure decision (core.autoscaling): a table of cases, and properties over any input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zhisuan.core.autoscaling import QUEUE_TIME_S, TARGET_KINDS, Decision, Policy, ReplicaLoad, Snapshot, decide

NOW = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
POLICY = Policy(min_replicas=1, max_replicas=4, target=0.5, out_cooldown=timedelta(seconds=30),
                in_cooldown=timedelta(seconds=120), tolerance=0.1)


def busy(*in_flight: int, slots: int = 4, ready: bool = True) -> tuple[ReplicaLoad, ...]:
    return tuple(ReplicaLoad(n, slots, ready) for n in in_flight)


def sent(*in_flight: int, slots: int = 4, wait_s: float = 0.0, waits: int = 10) -> tuple[ReplicaLoad, ...]:
    """Replicas whose engine reports every slot busy at most (llama.cpp) and whose gateways report
    ``in_flight`` sent (queued ones included) and a mean queue wait of ``wait_s`` over ``waits``."""
    return tuple(ReplicaLoad(min(n, slots), slots, True, n, wait_s, waits) for n in in_flight)


QUEUE = Policy(min_replicas=1, max_replicas=6, target=2.0, out_cooldown=timedelta(seconds=30),
               in_cooldown=timedelta(seconds=120), tolerance=0.1, target_kind=QUEUE_TIME_S)


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


CASES: list[tuple[str, Snapshot, int, str]] = [
    ("fixed size, all there", Snapshot(3, None, busy(4, 4, 4), NOW), 3, "none"),
    ("fixed size, one lost: replaced at once", Snapshot(3, None, busy(4, 4), NOW, last_scale_out=ago(1)), 3, "repair"),
    ("fixed size, repair capped by quota", Snapshot(3, None, busy(1), NOW, quota_room=1), 2, "repair"),
    ("below min: repaired despite cool-down", Snapshot(1, POLICY, (), NOW, last_scale_out=ago(1)), 1, "repair"),
    ("every slot busy: 4 in flight at 0.5/slot over 4 slots wants 2", Snapshot(1, POLICY, busy(4), NOW), 2,
     "scale_out"),
    ("8 in flight on one replica's 4 slots (queued at the gateway) wants 4", Snapshot(1, POLICY, busy(8), NOW), 4,
     "scale_out"),
    ("never above max", Snapshot(1, POLICY, busy(40), NOW), 4, "scale_out"),
    ("scale-out cool-down", Snapshot(1, POLICY, busy(4), NOW, last_scale_out=ago(10)), 1, "none"),
    ("scale-out after the cool-down", Snapshot(1, POLICY, busy(4), NOW, last_scale_out=ago(31)), 2, "scale_out"),
    ("scale-out capped by the quota room", Snapshot(1, POLICY, busy(8), NOW, quota_room=1), 2, "scale_out"),
    ("no quota room: no change", Snapshot(1, POLICY, busy(8), NOW, quota_room=0), 1, "none"),
    ("near target (tolerance)", Snapshot(2, POLICY, busy(2, 2), NOW), 2, "none"),
    ("idle: one fewer after the cool-down", Snapshot(3, POLICY, busy(0, 0, 0), NOW), 2, "scale_in"),
    ("idle: scale-in cool-down after a scale-out", Snapshot(3, POLICY, busy(0, 0, 0), NOW, last_scale_out=ago(60)),
     3, "none"),
    ("idle: scale-in cool-down after a scale-in", Snapshot(3, POLICY, busy(0, 0, 0), NOW, last_scale_in=ago(60)),
     3, "none"),
    ("no scale-in while a replica starts", Snapshot(2, POLICY, busy(0) + busy(0, ready=False), NOW), 2, "none"),
    ("never below min", Snapshot(1, POLICY, busy(0), NOW), 1, "none"),
    ("min 0: the last replica goes", Snapshot(1, Policy(0, 4, 0.5), busy(0), NOW), 0, "scale_in"),
    ("zero, no demand: stays zero", Snapshot(0, Policy(0, 4, 0.5), (), NOW), 0, "none"),
    ("zero, demand: cold start of one", Snapshot(0, Policy(0, 4, 0.5), (), NOW, demand=3), 1, "scale_out"),
    ("max lowered: down to it at once", Snapshot(4, Policy(1, 2, 0.5), busy(4, 4, 4, 4), NOW,
                                                 last_scale_out=ago(1)), 2, "scale_in"),
    # The gateways' count: busy slots stop at 4, the 12 requests sent (8 queued) do not.
    ("engine says 4/4 busy, gateways sent 12: 12 at 0.5/slot over 4 slots wants 6 (max 4)",
     Snapshot(1, POLICY, sent(12), NOW), 4, "scale_out"),
    ("gateways sent fewer than the engine reports: the engine's count", Snapshot(
        1, POLICY, (ReplicaLoad(4, 4, True, 1),), NOW), 2, "scale_out"),
    ("queue time 5 s over 2 s, 12 sent on 4 slots: ceil(1·5/2)=3 replicas", Snapshot(1, QUEUE, sent(12, wait_s=5), NOW),
     3, "scale_out"),
    ("queue time 20 s: no more replicas than slots for what is in flight (12 on 4 slots: 3)",
     Snapshot(1, QUEUE, sent(12, wait_s=20), NOW), 3, "scale_out"),
    ("queue time over target, at least one more replica", Snapshot(2, QUEUE, sent(6, 6, wait_s=2.4), NOW), 3,
     "scale_out"),
    ("queue time over target but every request has a slot: more replicas would not help",
     Snapshot(2, QUEUE, sent(4, 4, wait_s=9), NOW), 2, "none"),
    ("queue time near target (tolerance)", Snapshot(2, QUEUE, sent(6, 6, wait_s=2.1), NOW), 2, "none"),
    ("queue time under target, the others' slots hold all: one fewer", Snapshot(3, QUEUE, sent(2, 2, 2), NOW),
     2, "scale_in"),
    ("queue time under target but the others' slots would overflow: stays",
     Snapshot(3, QUEUE, sent(3, 3, 3), NOW), 3, "none"),
    ("queue time weighted by requests measured: (1·10 + 9·2)/(10+2) = 2.33 s > 2.2",
     Snapshot(2, QUEUE, sent(6, wait_s=1.0, waits=10) + sent(6, wait_s=9.0, waits=2), NOW), 3, "scale_out"),
    ("queue time: no gateway measured anything, idle: one fewer", Snapshot(2, QUEUE, busy(0, 0), NOW), 1,
     "scale_in"),
    ("queue time: scale-out cool-down", Snapshot(1, QUEUE, sent(12, wait_s=5), NOW, last_scale_out=ago(5)), 1,
     "none"),
]


@pytest.mark.parametrize(("why", "snap", "desired", "kind"), CASES, ids=[c[0] for c in CASES])
def test_decide(why: str, snap: Snapshot, desired: int, kind: str) -> None:
    decision = decide(snap)
    assert (decision.desired, decision.kind) == (desired, kind), decision.reason


@st.composite
def snapshots(draw: st.DrawFn) -> Snapshot:
    low = draw(st.integers(0, 4))
    policy = Policy(low, draw(st.integers(max(low, 1), 8)), draw(st.sampled_from([0.25, 0.5, 0.7, 1.0])),
                    timedelta(seconds=draw(st.integers(0, 60))), timedelta(seconds=draw(st.integers(0, 300))),
                    draw(st.sampled_from([0.0, 0.1, 0.2])))
    policy = Policy(policy.min_replicas, policy.max_replicas, policy.target * draw(st.sampled_from([1, 4])),
                    policy.out_cooldown, policy.in_cooldown, policy.tolerance, draw(st.sampled_from(TARGET_KINDS)))
    slots = draw(st.integers(1, 8))
    replicas = tuple(ReplicaLoad(draw(st.integers(0, slots)), slots, draw(st.booleans()),
                                 draw(st.integers(0, 4 * slots)), draw(st.floats(0, 30)), draw(st.integers(0, 50)))
                     for _ in range(draw(st.integers(0, 10))))
    when = st.none() | st.integers(0, 400).map(ago)
    return Snapshot(draw(st.integers(0, 8)), draw(st.none() | st.just(policy)), replicas, NOW,
                    draw(when), draw(when), draw(st.integers(0, 5)), draw(st.none() | st.integers(0, 6)))


@settings(max_examples=400, deadline=None)
@given(snapshots())
def test_bounds_quota_and_cool_downs_hold_for_any_input(snap: Snapshot) -> None:
    decision = decide(snap)
    current = len(snap.replicas)
    assert decision.desired >= 0
    if decision.desired > current and snap.quota_room is not None:
        assert decision.desired <= current + snap.quota_room  # never beyond the tenant's quota
    if decision.kind == "none":
        assert decision.desired == current
    policy = snap.policy
    if policy is None:
        assert decision.desired == max(current, min(snap.fixed, current + (snap.quota_room or 0)
                                                    if snap.quota_room is not None else snap.fixed))
        return
    assert decision.desired <= max(policy.max_replicas, 0)  # never above max
    if decision.desired < current:
        assert decision.desired >= policy.min_replicas  # never below min by scaling in
    if decision.kind == "scale_out" and current > 0:
        assert snap.last_scale_out is None or NOW - snap.last_scale_out >= policy.out_cooldown
    if decision.kind == "scale_in" and current <= policy.max_replicas:
        changes = [t for t in (snap.last_scale_out, snap.last_scale_in) if t is not None]
        assert not changes or NOW - max(changes) >= policy.in_cooldown
        assert decision.desired == current - 1 and all(r.ready for r in snap.replicas)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 60), st.integers(1, 8), st.sampled_from([0.25, 0.5, 0.7, 1.0]),
       st.lists(st.integers(1, 400), min_size=5, max_size=20), st.booleans())
def test_a_steady_load_never_flaps(demand: int, slots: int, target: float, steps: list[int], gateways: bool) -> None:
    """Under a constant demand the count only ever moves one way, whatever the timing of the passes
    (busy slots are capped by the slots that exist, as llama.cpp reports them; with ``gateways`` the
    gateways also report what they sent, queued requests included)."""
    policy = Policy(1, 12, target, timedelta(seconds=30), timedelta(seconds=120))
    count, now, last_out, last_in, counts = 1, NOW, None, None, [1]
    for step in steps:
        now += timedelta(seconds=step)
        per_replica = min(slots, -(-demand // count))
        sent = [min(-(-demand // count), max(0, demand - i * -(-demand // count))) for i in range(count)]
        spread = tuple(ReplicaLoad(min(per_replica, max(0, demand - i * per_replica)), slots, True,
                                   sent[i] if gateways else 0) for i in range(count))
        decision: Decision = decide(Snapshot(count, policy, spread, now, last_out, last_in))
        if decision.desired > count:
            last_out = now
        elif decision.desired < count:
            last_in = now
        count = decision.desired
        counts.append(count)
    assert_one_way(counts)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 60), st.integers(1, 8), st.sampled_from([0.5, 2.0, 10.0]),
       st.lists(st.tuples(st.integers(1, 400), st.floats(0, 60)), min_size=5, max_size=20))
def test_a_steady_load_never_flaps_by_queue_time(demand: int, slots: int, target: float,
                                                 steps: list[tuple[int, float]]) -> None:
    """``queue_time_s`` under a constant in-flight count (as the gateways report it, queued requests
    included) only ever moves one way, whatever queue times are measured — noise, spikes, lulls."""
    policy = Policy(1, 12, target, timedelta(seconds=30), timedelta(seconds=120), target_kind=QUEUE_TIME_S)
    count, now, last_out, last_in, counts = 1, NOW, None, None, [1]
    for step, wait_s in steps:
        now += timedelta(seconds=step)
        per_replica = -(-demand // count)
        spread = tuple(ReplicaLoad(min(slots, share), slots, True, share, wait_s, 5)
                       for share in (min(per_replica, max(0, demand - i * per_replica)) for i in range(count)))
        decision = decide(Snapshot(count, policy, spread, now, last_out, last_in))
        assert policy.min_replicas <= decision.desired <= policy.max_replicas
        if decision.desired > count:
            last_out = now
        elif decision.desired < count:
            last_in = now
        count = decision.desired
        counts.append(count)
    assert_one_way(counts)


def assert_one_way(counts: list[int]) -> None:
    """A replica count that went up never went down in the same run, and the other way round."""
    ups = any(b > a for a, b in zip(counts, counts[1:], strict=False))
    downs = any(b < a for a, b in zip(counts, counts[1:], strict=False))
    assert not (ups and downs), counts
