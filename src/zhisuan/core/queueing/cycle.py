"""One admission cycle: ``schedule(snapshot) -> CycleResult`` (the Kueue model with one cohort).

Order of decisions (formulas of the quota terms in ``quota``)::

    each tenant's queue  = its jobs by (class rank desc, priority desc, seq asc)     reserved > elastic > spot
    pass 1 (guarantees)  = tenants by name; each job that is within guarantee on some allowed model
                           (U + need ≤ G) is placed there → Admission(within_guarantee=True); if it
                           cannot be placed, reclaim: preempt the fewest non-guaranteed jobs of a class
                           ≤ its own (spot first, newest first) and leave it Pending until they stop.
                           A reserved job that is not within guarantee stays Pending with a quota reason.
    pass 2 (fair share)  = elastic jobs left over, then spot ones; within each, the tenant with the lowest
                           DRF share first (recomputed after every admission); a job goes first where the unguaranteed
                           pool has room, then where it must borrow; placement first without, then with
                           ``may_use_leased`` (borrowing). A non-spot job that still does not fit may
                           preempt spot jobs beyond guarantee.
    CPU-only jobs          hold no accelerator quota: reserved ones are admitted (within guarantee) when
                           they fit; elastic and spot ones share fairly by their CPU and memory.
    preempted victims      keep their holds in this cycle; the caller stops them and a later cycle admits
                           the preemptor. A victim still stopping at the next cycle is still in
                           ``running`` and may be named again: a repeated Preemption is a no-op.

The fleet arrays are built once and every admission is committed into them, so later jobs see the
capacity earlier ones took. Capacity only shrinks within a cycle, so a placement that failed for a
demand shape (and a victim search that failed) is remembered and not tried again. Nothing depends on
dict or set order; randomness comes only from ``seed`` (the node tie-break order, as in ``place``).
"""

from __future__ import annotations

import dataclasses
import heapq
from collections import defaultdict
from collections.abc import Hashable, Sequence

import numpy as np

from zhisuan.core.placement.filters import first_failed_stage
from zhisuan.core.placement.fleet import Demand, FleetArrays, fleet_from_snapshot
from zhisuan.core.placement.fragmentation import TargetWorkload, target_workload, typical_shapes
from zhisuan.core.placement.gang import GangPlacement, place_gang
from zhisuan.core.placement.node_view import NodeView
from zhisuan.core.placement.policies import DEFAULT_POLICY, get_policy
from zhisuan.core.placement.snapshot import Rejection
from zhisuan.core.queueing.model import (
    Admission,
    CycleResult,
    Pending,
    Preemption,
    QueuedJob,
    QueueSnapshot,
    RunningJob,
    WorkerPlace,
    class_rank,
)
from zhisuan.core.queueing.placing import CyclePlacer
from zhisuan.core.queueing.preemption import Release, fewest_victims, reclaimable, release_of, victim_order
from zhisuan.core.queueing.quota import QuotaVerdict, quota_book

RESERVED, SPOT = class_rank("reserved"), class_rank("spot")
TRIAL_POLICY = "gpu-packing"
RECLAIMED = "reclaimed by tenant {tenant}'s job {job} (within its guarantee)"
SPOT_FIRST = "preempted by tenant {tenant}'s {klass} job {job} (spot work yields first)"
NOT_METERED = QuotaVerdict(within=False, borrowing=False)  # CPU-only work: no accelerator quota


def queue_workload(fleet: FleetArrays, queued: tuple[QueuedJob, ...]) -> TargetWorkload:
    """The fragmentation target of this cycle: the typical per-worker shapes of the queue (or a 1-device task)."""
    shapes = [
        (
            j.request.cpu_milli,
            j.request.milli_per_device if j.request.device_count else 0,
            j.request.device_count,
            "|".join(sorted(j.request.allowed_models or ())) if j.request.device_count else "",
        )
        for j in sorted(queued, key=lambda j: j.job_id)
    ]
    return target_workload(typical_shapes(shapes or [(1000, 1000, 1, "")]), fleet.models)


def queue_order(job: QueuedJob) -> tuple[int, int, int, int]:
    return (-class_rank(job.priority_class), -job.priority, job.seq, job.job_id)


class AdmissionCycle:
    """The mutable state of one cycle: arrays, quota book, failure caches and the decisions so far."""

    def __init__(self, snapshot: QueueSnapshot, policy: str, seed: int) -> None:
        self.snapshot = snapshot
        self.fleet = fleet_from_snapshot(snapshot.cluster)
        self.policy = get_policy(policy)
        rng = np.random.default_rng(seed)
        self.rng = rng
        self.priority = rng.permutation(self.fleet.size)
        self.workload = queue_workload(self.fleet, snapshot.queued) if self.policy.needs_workload else None
        self.book = quota_book(snapshot.cluster, snapshot.guarantees, snapshot.running)
        self.rows = {name: row for row, name in enumerate(self.fleet.names)}
        self.node_site = dict(zip(self.fleet.names, self.fleet.sites, strict=True))
        self.reclaimable = reclaimable(snapshot.running)
        self.taken: set[int] = set()
        self.placer = CyclePlacer(self.fleet, self.policy, self.workload, rng, self.priority)
        self.no_victims: set[Hashable] = set()
        self.releases: dict[int, Release] = {}
        # Victim searches only ask "does it fit?": a cheap score gives the same answer for one worker.
        self.trial_policy = get_policy(TRIAL_POLICY)
        self.admissions: list[Admission] = []
        self.preemptions: list[Preemption] = []
        self.pending: list[Pending] = []

    # -- building blocks -------------------------------------------------------------------------

    @property
    def full(self) -> bool:
        return len(self.admissions) >= self.snapshot.max_admissions

    def models_for(self, job: QueuedJob) -> list[str | None]:
        """Candidate flavors: the allowed models present in the fleet, by name (None: CPU-only job)."""
        if not job.request.device_count:
            return [None]
        allowed = job.request.allowed_models
        return [m for m in self.fleet.models if allowed is None or m in allowed]

    def demand(self, job: QueuedJob, model: str | None, leased: bool) -> Demand:
        return self.placer.demand(job, model, leased)

    def place(self, job: QueuedJob, demand: Demand) -> GangPlacement | Rejection:
        """Away from the job's avoid set when it fits so; back on those nodes when nothing else fits now
        (a restart waits for no one: the avoid set only chooses among what is free)."""
        placed = self.placer.place(job, demand)
        if isinstance(placed, Rejection) and demand.avoid:
            return self.placer.place(job, dataclasses.replace(demand, avoid=frozenset()))
        return placed

    def admit(
        self,
        job: QueuedJob,
        model: str | None,
        placed: GangPlacement,
        demand: Demand,
        verdict: QuotaVerdict,
        reason: str,
    ) -> None:
        workers = tuple(
            WorkerPlace(
                node=self.fleet.names[row],
                device_indices=tuple(int(self.fleet.device_index[row, s]) for s in slots),
                milli_per_device=demand.milli if demand.wants_devices else 0,
                cpu_milli=demand.cpu,
                memory_mib=demand.mem,
            )
            for row, slots in zip(placed.rows, placed.slots, strict=True)
        )
        self.book.charge(
            job.tenant, model, job.need, demand.cpu * job.workers, demand.mem * job.workers, verdict.within
        )
        if demand.avoid:
            back = sorted(self.fleet.names[row] for row in set(placed.rows) & demand.avoid)
            reason += (f"; back on {', '.join(back)} where it failed before: no other node fits now" if back
                       else f"; away from the {len(demand.avoid)} node(s) it failed on")
        self.admissions.append(Admission(job.job_id, model, workers, verdict.within, verdict.borrowing, reason))

    def wait(self, job: QueuedJob, reason: str) -> None:
        self.pending.append(Pending(job.job_id, reason))

    def preempt_for(self, job: QueuedJob, model: str | None, max_rank: int, why: str) -> bool:
        """Preempt the fewest victims (see ``preemption``) that let ``job`` fit; True if any were chosen.

        ``why`` is the victims' reason, formatted with the preemptor's ``tenant``, ``job`` and ``klass``."""
        demand = self.demand(job, model, leased=False)
        key = (demand, job.workers, job.sites, job.topology_keys, max_rank)
        if key in self.no_victims:
            return False
        candidates = victim_order(self.reclaimable.get(model, []), max_rank, job.sites, self.node_site, self.taken)

        def fits(trial: FleetArrays, released: Sequence[Release]) -> bool:
            if job.workers == 1:  # only rows the victims give back on can have become feasible
                rows = np.unique(np.concatenate([r.rows for r in released]))
                if job.sites is not None:
                    rows = rows[[self.fleet.sites[r] in job.sites for r in rows]]
                return bool(len(rows)) and bool((first_failed_stage(NodeView(trial, demand, rows)) == 0).any())
            placed = place_gang(
                trial,
                demand,
                job.workers,
                self.trial_policy,
                sites=job.sites,
                topology_keys=job.topology_keys,
                priority=self.priority,
            )
            return isinstance(placed, GangPlacement)

        releases = [self.release(victim) for victim in candidates]
        count = fewest_victims(self.fleet, releases, fits)
        if not count:
            self.no_victims.add(key)
            return False
        victims = candidates[:count]
        for victim in victims:
            self.taken.add(victim.job_id)
            self.preemptions.append(
                Preemption(
                    victim.job_id, why.format(tenant=job.tenant, job=job.job_id, klass=job.priority_class), job.job_id
                )
            )
        ids = ", ".join(str(v.job_id) for v in victims)
        plural = "job" if len(victims) == 1 else "jobs"
        self.wait(job, f"waiting for {len(victims)} preempted {plural} to stop ({ids})")
        return True

    def release(self, job: RunningJob) -> Release:
        if job.job_id not in self.releases:
            self.releases[job.job_id] = release_of(self.fleet, self.rows, job)
        return self.releases[job.job_id]

    def rejection_text(self, rejections: list[tuple[str | None, Rejection]]) -> str:
        if len(rejections) == 1:
            return rejections[0][1].message
        return "; ".join(f"{model or 'CPU'}: {r.message}" for model, r in rejections)

    # -- the two passes --------------------------------------------------------------------------

    def within_guarantee(self, job: QueuedJob) -> bool:
        """Pass 1 for one job; False hands an elastic/spot job over to the fair-share pass."""
        rank, models = class_rank(job.priority_class), self.models_for(job)
        if models == [None]:
            if rank != RESERVED:
                return False
            placed = self.place(job, self.demand(job, None, leased=False))
            if isinstance(placed, GangPlacement):
                self.admit(
                    job,
                    None,
                    placed,
                    self.demand(job, None, False),
                    QuotaVerdict(True, False),
                    "CPU-only reserved job (no accelerator quota)",
                )
            else:
                self.wait(job, placed.message)
            return True
        named = [m for m in models if m is not None]
        inside = [m for m in named if self.book.verdict(job.tenant, m, job.need).within]
        if not inside:
            if rank == RESERVED:
                self.wait(job, self.quota_reason(job, named))
            return rank == RESERVED
        rejections: list[tuple[str | None, Rejection]] = []
        for model in inside:
            demand = self.demand(job, model, leased=False)
            placed = self.place(job, demand)
            if isinstance(placed, GangPlacement):
                used = self.book.usage[(job.tenant, model)] + job.need
                guaranteed = self.book.guarantee.get((job.tenant, model), 0)
                self.admit(
                    job,
                    model,
                    placed,
                    demand,
                    QuotaVerdict(True, False),
                    f"within guarantee: {model} {used} of {guaranteed} milli",
                )
                return True
            rejections.append((model, placed))
        for model in inside:
            if self.preempt_for(job, model, rank, RECLAIMED):
                return True
        if rank == RESERVED:
            self.wait(job, self.rejection_text(rejections))
            return True
        return False

    def quota_reason(self, job: QueuedJob, models: list[str]) -> str:
        if not models:
            return self.place(job, self.demand(job, None, leased=False)).message  # type: ignore[union-attr]
        parts = "; ".join(self.book.describe(job.tenant, m, job.need) for m in models)
        return f"quota: reserved jobs run only within the guarantee ({parts})"

    def beyond_guarantee(self, job: QueuedJob) -> None:
        """Pass 2 for one elastic or spot job (see the module docstring)."""
        models = self.models_for(job)
        verdicts = {m: NOT_METERED if m is None else self.book.verdict(job.tenant, m, job.need) for m in models}
        ordered = sorted(models, key=lambda m: verdicts[m].borrowing)  # stable: by name within each kind
        rejections: list[tuple[str | None, Rejection]] = []
        for model in ordered:
            demand = self.demand(job, model, leased=False)
            placed = self.place(job, demand)
            if isinstance(placed, GangPlacement):
                self.admit(job, model, placed, demand, verdicts[model], self.beyond_reason(model, verdicts[model]))
                return
            rejections.append((model, placed))
        for model in ordered:
            demand = self.demand(job, model, leased=True)
            placed = self.place(job, demand)
            if isinstance(placed, GangPlacement):
                verdict = QuotaVerdict(False, True)
                self.admit(
                    job, model, placed, demand, verdict, self.beyond_reason(model, verdict) + " on a leased node"
                )
                return
        if class_rank(job.priority_class) > SPOT:
            for model in ordered:
                if self.preempt_for(job, model, SPOT, SPOT_FIRST):
                    return
        if not models:
            self.wait(job, self.place(job, self.demand(job, None, leased=False)).message)  # type: ignore[union-attr]
            return
        self.wait(job, self.rejection_text(rejections))

    @staticmethod
    def beyond_reason(model: str | None, verdict: QuotaVerdict) -> str:
        if model is None:
            return "CPU-only job (no accelerator quota), fair share"
        if verdict.within:
            return f"within guarantee: {model}"
        if verdict.borrowing:
            return f"borrowing other tenants' idle guarantee of {model} (reclaimable)"
        return f"beyond guarantee on unguaranteed {model} capacity (fair share)"


def schedule(snapshot: QueueSnapshot, policy: str = DEFAULT_POLICY, seed: int = 0) -> CycleResult:
    """Decide one cycle; the same snapshot, policy and seed always give the same result."""
    cycle = AdmissionCycle(snapshot, policy, seed)
    queues: dict[str, list[QueuedJob]] = defaultdict(list)
    for job in sorted(snapshot.queued, key=queue_order):
        queues[job.tenant].append(job)
    limit = f"admission limit of {snapshot.max_admissions} per cycle reached; considered in the next cycle"
    leftover: dict[str, list[QueuedJob]] = {}
    for tenant in sorted(queues):
        rest = []
        for job in queues[tenant]:
            if cycle.full:
                cycle.wait(job, limit)
            elif not cycle.within_guarantee(job):
                rest.append(job)
        leftover[tenant] = rest[::-1]  # popped from the end: queue order
    # Elastic work of every tenant before anyone's spot work, then the lowest DRF share first: otherwise
    # a preempted spot job of an earlier-named tenant would take back the room its preemptor freed,
    # cycle after cycle.
    def key(tenant: str) -> tuple[bool, float, str]:
        return class_rank(leftover[tenant][-1].priority_class) == SPOT, cycle.book.share(tenant), tenant

    heap = [key(t) for t in sorted(leftover) if leftover[t]]
    heapq.heapify(heap)
    while heap:
        *_, tenant = heapq.heappop(heap)
        job = leftover[tenant].pop()
        if cycle.full:
            cycle.wait(job, limit)
        else:
            cycle.beyond_guarantee(job)
        if leftover[tenant]:
            heapq.heappush(heap, key(tenant))
    pending = tuple(sorted(cycle.pending, key=lambda p: p.job_id))
    return CycleResult(tuple(cycle.admissions), tuple(cycle.preemptions), pending)
