"""Placement inside one cycle: the gang pipeline on arrays built once, with failures remembered.

Capacity only shrinks within a cycle (admissions commit; preemptions free nothing until the victims
stop), so a demand shape that failed once fails again and its Rejection is reused::

    failed[(demand, workers, sites, topology)] = Rejection

A tenant that leases nodes has its own tenant code in the demand, which would give every such tenant
its own cache entries. Its feasible set is the shared one (``tenant = NO_CODE``: nodes nobody leases)
plus its own leased nodes, so when the shared shape has failed only the tenant's leased rows are
filtered; if none passes, the Rejection is the shared per-node stages with those rows patched in —
the same reasons a full evaluation gives. Work that may use leased nodes ignores the tenant.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable

import numpy as np

from zhisuan.core.placement.filters import first_failed_stage
from zhisuan.core.placement.fleet import NO_CODE, Demand, FleetArrays, demand_from_request
from zhisuan.core.placement.fragmentation import TargetWorkload
from zhisuan.core.placement.gang import GangPlacement, gang_rejection, place_gang
from zhisuan.core.placement.node_view import NodeView
from zhisuan.core.placement.policies import Policy
from zhisuan.core.placement.snapshot import Rejection
from zhisuan.core.queueing.model import QueuedJob


class CyclePlacer:
    """``place(job, demand)`` on the cycle's arrays (commits on success) with the caches described above."""

    def __init__(
        self,
        fleet: FleetArrays,
        policy: Policy,
        workload: TargetWorkload | None,
        rng: np.random.Generator,
        priority: np.ndarray,
    ) -> None:
        self.fleet, self.policy, self.workload, self.rng, self.priority = fleet, policy, workload, rng, priority
        self.failed: dict[Hashable, Rejection] = {}
        self.failed_stage: dict[Hashable, np.ndarray] = {}  # shared shapes: per-node stage when they failed
        self.site_rows: dict[frozenset[str] | None, np.ndarray] = {}
        self.base: dict[int, Demand] = {}

    def demand(self, job: QueuedJob, model: str | None, leased: bool) -> Demand:
        """The job's per-worker demand restricted to ``model`` (None: as requested), tenant normalised."""
        if job.job_id not in self.base:
            request = job.request
            if request.tenant != job.tenant:
                request = dataclasses.replace(request, tenant=job.tenant)
            self.base[job.job_id] = demand_from_request(self.fleet, request)
        base = self.base[job.job_id]
        allowed = base.allowed if model is None else frozenset({self.fleet.models.index(model)})
        # A tenant code < 0 (no lease) and work that may use any lease both see exactly the unleased nodes
        # plus nothing / everything: the tenant no longer matters.
        tenant = NO_CODE if leased or base.tenant < 0 else base.tenant
        return dataclasses.replace(base, allowed=allowed, may_use_leased=leased, tenant=tenant)

    def rows(self, sites: frozenset[str] | None) -> np.ndarray:
        if sites not in self.site_rows:
            every = np.arange(self.fleet.size)
            self.site_rows[sites] = every if sites is None else every[[s in sites for s in self.fleet.sites]]
        return self.site_rows[sites]

    def place(self, job: QueuedJob, demand: Demand) -> GangPlacement | Rejection:
        key = (demand, job.workers, job.sites, job.topology_keys)
        if key in self.failed:
            return self.failed[key]
        known = self.known_failure(job, demand)
        if known is not None:
            self.failed[key] = known
            return known
        result = place_gang(
            self.fleet,
            demand,
            job.workers,
            self.policy,
            sites=job.sites,
            topology_keys=job.topology_keys,
            workload=self.workload,
            rng=self.rng,
            priority=self.priority,
        )
        if isinstance(result, Rejection):
            self.failed[key] = result
            if demand.tenant == NO_CODE:
                self.failed_stage[key] = first_failed_stage(NodeView(self.fleet, demand, self.rows(job.sites)))
        return result

    def known_failure(self, job: QueuedJob, demand: Demand) -> Rejection | None:
        """The Rejection of a leasing tenant's demand when the shared shape failed and its own leases do not help."""
        if demand.tenant == NO_CODE:
            return None
        shared = dataclasses.replace(demand, tenant=NO_CODE)
        stage = self.failed_stage.get((shared, job.workers, job.sites, job.topology_keys))
        if stage is None:
            return None
        allowed = self.rows(job.sites)
        positions = np.flatnonzero(self.fleet.node_tenant[allowed] == demand.tenant)
        own = first_failed_stage(NodeView(self.fleet, demand, allowed[positions]))
        if (own == 0).any():
            return None
        patched = stage.copy()
        patched[positions] = own
        return gang_rejection(patched, self.fleet.size - len(allowed), job.workers)
