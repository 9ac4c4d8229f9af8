"""A discrete-event simulation of one long training run on a fleet: faults, checkpoints, restarts.

The run is watched over a wall-time window (``horizon_s``, e.g. Llama 3's 54 days) and every second of
it lands in exactly one bucket of a ``TimeBreakdown`` (queueing stays 0: the run holds its nodes, and a
replacement node comes from the spare pool or, through a re-queue, from the rest of the cluster):

- running, an attempt alternates τ seconds of compute with a checkpoint that blocks training for
  ``blocking_s`` and becomes complete ``lag_s`` later (0 for a synchronous write; the background write
  or replication of an asynchronous / in-memory one). τ is fixed, Young/Daly, or re-planned at every
  (re)start from the observed failure rate (adaptive; ``core.goodput.interval``).
- a failure (Poisson per component, ``core.goodput.faults``) loses the compute since the last
  *complete* checkpoint (lost), then costs detection (a hang waits for the hang timeout), the delay
  ``core.goodput.restart.decide_restart`` asks for, a replacement for the nodes it says to avoid — a
  hot spare if the pool has one (``spare_swap_s``), else a re-queue (``requeue_s``) — start-up and
  loading the checkpoint (all restart). A failure during a restart starts the restart over.
- when ``decide_restart`` refuses (``max_restarts`` failures without progress, or a user error), a
  person looks into it (``human_fix_s``, restart time) and resubmits: that is how a long run continues.
  Its ``earlier`` failures are those since the last checkpoint completed: a run that keeps making
  progress between faults is not looping.
- a planned interruption (maintenance) is announced: the run checkpoints on demand (nothing lost),
  swaps the node and restarts without detection.
- a failed node is out for ``repair_s`` (exponential), a hung one for ``health_check_s``, and returns to
  the spare pool; a program failure's node is healthy and returns at once.

Exact at event times: within an attempt the schedule is periodic, so where a failure falls in it is
arithmetic — the simulation costs O(failures), not O(steps). With attempt start t₀, cycle c = τ + δ and a
failure after e = t − t₀: k = ⌊e/c⌋ cycles finished, compute = k·τ + min(e − k·c, τ), blocked = e − compute,
and checkpoints complete j = min(k, ⌊(e − L)/c⌋) (0 if e < L), so lost = compute − j·τ.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from zhisuan.core.goodput.breakdown import TimeBreakdown
from zhisuan.core.goodput.faults import Component, FaultModel
from zhisuan.core.goodput.interval import daly_interval, estimated_mtbf
from zhisuan.core.goodput.restart import Failure, RestartPolicy, decide_restart

DAY_S = 86_400.0
INTERVAL_RULES = ("fixed", "young_daly", "adaptive")


@dataclass(frozen=True)
class Scenario:
    """The fleet and its fault process: what every policy faces."""

    gpus: int = 16_384
    gpus_per_node: int = 8
    horizon_s: float = 54 * DAY_S
    faults: FaultModel = field(default_factory=FaultModel)
    # 10 restarts without a checkpoint in between: at a 3-hour MTBF, 5 happen by chance about once a run
    restart_policy: RestartPolicy = field(default_factory=lambda: RestartPolicy(max_restarts=10))
    repair_s: float = 3 * DAY_S
    health_check_s: float = 1800.0
    maintenance_s: float = 4 * 3600.0
    human_fix_s: float = 4 * 3600.0
    assumed_rate_scale: float = 1.0  # the policies plan with rates × this (1: they know the true rates)

    def __post_init__(self) -> None:
        positive = {"gpus": self.gpus, "gpus_per_node": self.gpus_per_node, "horizon_s": self.horizon_s,
                    "assumed_rate_scale": self.assumed_rate_scale}
        for name, value in positive.items():
            if not value > 0:
                raise ValueError(f"{name} must be > 0 (got {value})")
        for name in ("repair_s", "health_check_s", "maintenance_s", "human_fix_s"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be ≥ 0 (got {getattr(self, name)})")

    @property
    def nodes(self) -> int:
        return math.ceil(self.gpus / self.gpus_per_node)

    @property
    def mtbf_s(self) -> float:
        return self.faults.job_mtbf_s(self.gpus)

    @property
    def assumed_mtbf_s(self) -> float:
        """The MTBF the policies plan with (the true one unless ``assumed_rate_scale`` says otherwise)."""
        return self.mtbf_s / self.assumed_rate_scale


@dataclass(frozen=True)
class Policy:
    """How the run checkpoints and restarts (and how fast its platform detects and replaces)."""

    name: str
    interval: str = "fixed"  # fixed | young_daly | adaptive
    fixed_interval_s: float = 3600.0
    blocking_s: float = 60.0
    lag_s: float = 0.0
    load_s: float = 120.0
    detection_s: float = 60.0
    hang_detection_s: float = 600.0
    requeue_s: float = 600.0
    spare_swap_s: float = 30.0
    startup_s: float = 180.0
    spares: int = 0
    prior_weight: float = 3.0  # adaptive: the prior MTBF counts as this many failures' worth of evidence

    def __post_init__(self) -> None:
        if self.interval not in INTERVAL_RULES:
            raise ValueError(f"interval must be one of {', '.join(INTERVAL_RULES)} (got {self.interval!r})")
        if not self.blocking_s > 0:
            raise ValueError(f"blocking_s must be > 0 (got {self.blocking_s})")
        if not self.fixed_interval_s > 0:
            raise ValueError(f"fixed_interval_s must be > 0 (got {self.fixed_interval_s})")
        for name in ("lag_s", "load_s", "detection_s", "hang_detection_s", "requeue_s", "spare_swap_s",
                     "startup_s"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be ≥ 0 (got {getattr(self, name)})")
        if self.spares < 0:
            raise ValueError(f"spares must be ≥ 0 (got {self.spares})")
        if not self.prior_weight > 0:
            raise ValueError(f"prior_weight must be > 0 (got {self.prior_weight})")

    def planned_interval(self, assumed_mtbf_s: float, failures: int, exposure_s: float) -> float:
        """τ for an attempt starting now (after ``failures`` in ``exposure_s``), never shorter than the lag
        (one checkpoint in flight at a time)."""
        if self.interval == "fixed":
            tau = self.fixed_interval_s
        else:
            mtbf = assumed_mtbf_s
            if self.interval == "adaptive":
                mtbf = estimated_mtbf(mtbf, self.prior_weight, failures, exposure_s)
            tau = daly_interval(self.blocking_s, mtbf) if self.blocking_s < mtbf else mtbf
        return max(tau, self.lag_s, 1.0)


def check_feasible(scenario: Scenario, policy: Policy) -> None:
    """Refuse a checkpoint that blocks for longer than the job's MTBF: it can never be amortised."""
    if policy.blocking_s >= scenario.mtbf_s:
        raise ValueError(f"blocking_s: a checkpoint blocking {policy.blocking_s:g} s is not shorter than the job's "
                         f"MTBF of {scenario.mtbf_s:g} s ({scenario.gpus} GPUs at the given rates)")


@dataclass(frozen=True)
class RunResult:
    breakdown: TimeBreakdown
    failures: int
    planned: int
    spare_swaps: int
    requeues: int
    human_interventions: int
    checkpoints: int
    mean_interval_s: float
    by_component: dict[str, int]


@dataclass
class _Run:
    """The mutable state of one simulated run (private to ``simulate``)."""

    scenario: Scenario
    policy: Policy
    rng: np.random.Generator
    assumed_mtbf_s: float
    now: float = 0.0
    productive: float = 0.0
    checkpoint: float = 0.0
    lost: float = 0.0
    restart: float = 0.0
    streak: list[Failure] = field(default_factory=list)
    failures: int = 0
    planned: int = 0
    spares_free: int = 0
    returning: list[float] = field(default_factory=list)  # heap of times nodes rejoin the spare pool
    spare_swaps: int = 0
    requeues: int = 0
    human: int = 0
    checkpoints: int = 0
    intervals: list[float] = field(default_factory=list)
    by_component: dict[str, int] = field(default_factory=dict)

    def replacement_s(self, at: float, out_for_s: float) -> float:
        """Replace one node at ``at``: a hot spare if one is free (the replaced node rejoins the pool after
        ``out_for_s``), else a re-queue through the scheduler."""
        while self.returning and self.returning[0] <= at:
            heapq.heappop(self.returning)
            self.spares_free += 1
        if self.spares_free > 0:
            self.spares_free -= 1
            heapq.heappush(self.returning, at + out_for_s)
            self.spare_swaps += 1
            return self.policy.spare_swap_s
        self.requeues += 1
        return self.policy.requeue_s


def simulate(scenario: Scenario, policy: Policy, seed: int) -> RunResult:
    """Simulate one run with a ``numpy`` generator seeded by ``seed`` (same seed, same result)."""
    check_feasible(scenario, policy)
    run = _Run(scenario, policy, np.random.default_rng(seed), scenario.assumed_mtbf_s, spares_free=policy.spares)
    components, shares = scenario.faults.mix()
    weights = tuple(itertools.accumulate(shares))  # cumulative, for drawing a component by bisection
    failure_rate = scenario.faults.job_rate_per_s(scenario.gpus)
    planned_rate = scenario.faults.planned_per_day / DAY_S
    next_failure = _next(run.rng, 0.0, failure_rate)
    next_planned = _next(run.rng, 0.0, planned_rate)
    horizon = scenario.horizon_s
    while run.now < horizon:
        event = min(next_failure, next_planned, horizon)
        pending = _run_attempt(run, event, failure=event == next_failure and event < horizon)
        if event >= horizon:
            break
        if event == next_failure:
            segments = _after_failure(run, _draw(run.rng, components, weights))
            next_failure = _next(run.rng, event, failure_rate)
        else:
            segments = _after_planned(run, pending)
            next_planned = _next(run.rng, event, planned_rate)
        next_failure = _down(run, segments, next_failure, components, weights, failure_rate)
        if next_planned <= run.now:  # maintenance due while the run was down happened during the downtime
            next_planned = _next(run.rng, run.now, planned_rate)
    breakdown = TimeBreakdown(0.0, run.productive, run.checkpoint, run.lost, run.restart)
    mean_interval = float(np.mean(run.intervals)) if run.intervals else 0.0
    return RunResult(breakdown, run.failures, run.planned, run.spare_swaps, run.requeues, run.human, run.checkpoints,
                     mean_interval, dict(sorted(run.by_component.items())))


def _draw(rng: np.random.Generator, components: tuple[Component, ...], cumulative: tuple[float, ...]) -> Component:
    """The failed component, drawn by its share of the failure rate."""
    return components[min(bisect.bisect_right(cumulative, rng.random() * cumulative[-1]), len(components) - 1)]


def _next(rng: np.random.Generator, after: float, rate: float) -> float:
    return after + float(rng.exponential(1.0 / rate)) if rate > 0 else math.inf


def _run_attempt(run: _Run, until: float, failure: bool) -> float:
    """Account the running attempt from ``run.now`` to ``until`` in closed form (module docstring).
    On a failure the compute since the last complete checkpoint is lost; otherwise it is returned as
    pending (kept by an on-demand checkpoint, or productive at the horizon)."""
    policy = run.policy
    tau = policy.planned_interval(run.assumed_mtbf_s, run.failures, run.now)
    run.intervals.append(tau)
    cycle = tau + policy.blocking_s
    elapsed = until - run.now
    finished = math.floor(elapsed / cycle)
    compute = finished * tau + min(max(0.0, elapsed - finished * cycle), tau)
    complete = min(finished, math.floor((elapsed - policy.lag_s) / cycle)) if elapsed >= policy.lag_s else 0
    run.checkpoint += elapsed - compute
    run.checkpoints += complete
    saved = complete * tau
    run.productive += saved
    if complete > 0:
        run.streak.clear()  # progress was made: earlier failures no longer count against max_restarts
    run.now = until
    if failure:
        run.lost += compute - saved
        return 0.0
    if until >= run.scenario.horizon_s:
        run.productive += compute - saved  # the run goes on past the window: this work is not lost
        return 0.0
    return compute - saved


Segment = tuple[str, float, float]  # (bucket, seconds, compute kept if this segment completes)


def _after_failure(run: _Run, component: Component) -> list[Segment]:
    """Decide with ``decide_restart`` and lay out the restart: detection, (a person,) delay, replacement,
    start-up, load."""
    scenario, policy = run.scenario, run.policy
    run.failures += 1
    run.by_component[component.name] = run.by_component.get(component.name, 0) + 1
    node = f"node-{run.failures}"
    signature = f"{component.name}-{run.failures}" if component.kind == "exit_nonzero" else ""
    failure = Failure(component.kind, frozenset({node}), signature)
    decision = decide_restart(scenario.restart_policy, run.streak, failure)
    run.streak.append(failure)
    detect = policy.hang_detection_s if component.kind == "hang" else policy.detection_s
    segments: list[Segment] = [("restart", detect, 0.0)]
    if not decision.restart:
        run.human += 1
        run.streak.clear()
        segments.append(("restart", scenario.human_fix_s, 0.0))
    out_for = {"repair": float(run.rng.exponential(scenario.repair_s)) if scenario.repair_s > 0 else 0.0,
               "check": scenario.health_check_s, "healthy": 0.0}[component.node_fate]
    swap_at = run.now + detect + decision.delay_s + (0.0 if decision.restart else scenario.human_fix_s)
    replace = run.replacement_s(swap_at, out_for) if decision.avoid_nodes or not decision.restart else 0.0
    segments += [("restart", decision.delay_s + replace + policy.startup_s + policy.load_s, 0.0)]
    return segments


def _after_planned(run: _Run, pending: float) -> list[Segment]:
    """An announced interruption: checkpoint on demand (keeping ``pending``), swap the node, restart."""
    run.planned += 1
    policy = run.policy
    replace = run.replacement_s(run.now + policy.blocking_s + policy.lag_s, run.scenario.maintenance_s)
    return [("checkpoint", policy.blocking_s + policy.lag_s, pending),
            ("restart", replace + policy.startup_s + policy.load_s, 0.0)]


def _down(run: _Run, segments: Sequence[Segment], next_failure: float, components: tuple[Component, ...],
          weights: tuple[float, ...], failure_rate: float) -> float:
    """Walk the segments of a restart; a failure inside one starts a new restart (what it loses is the
    compute an unfinished on-demand checkpoint would have kept). Returns the next failure's time."""
    queue = list(segments)
    while queue:
        bucket, seconds, kept = queue.pop(0)
        end = run.now + seconds
        stop = min(end, next_failure, run.scenario.horizon_s)
        setattr(run, bucket, getattr(run, bucket) + (stop - run.now))
        run.now = stop
        if stop == end:
            if kept:
                run.productive += kept
                run.checkpoints += 1
                run.streak.clear()
            continue
        if stop >= run.scenario.horizon_s:
            run.productive += kept
            return next_failure
        run.lost += kept
        queue = _after_failure(run, _draw(run.rng, components, weights))
        next_failure = _next(run.rng, run.now, failure_rate)
    return next_failure
