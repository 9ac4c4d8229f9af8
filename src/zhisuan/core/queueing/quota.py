"""Quota accounting of one cycle: guarantees, usage, the unguaranteed pool and dominant-resource shares.

Notation (all device amounts in milli-devices of one accelerator model ``m``)::

    G[t,m]  guarantee of tenant t (from its contracts; computed by the caller)
    U[t,m]  usage: milli held by t's running jobs on m, plus admissions made earlier in this cycle
    C[m]    capacity: 1000 · (devices of model m in the cluster, free or held)
    P[m]    unguaranteed pool = max(0, C[m] − Σ_t G[t,m])
    O[t,m]  overflow = max(0, U[t,m] − G[t,m])   (usage beyond the guarantee)

A job of tenant t asking ``need`` milli of m is

    within guarantee  iff U[t,m] + need ≤ G[t,m]              (never preempted)
    borrowing         iff not within and Σ_t O[t,m] + ΔO > P[m]  with ΔO = max(0, U+need−G) − O[t,m]
                      (the pool is used up: it runs on other tenants' idle guarantee and is reclaimed
                      when they need it), or when it must use a node leased to another tenant.

Fair sharing (DRF) over what tenants use beyond their guarantees::

    share(t) = max( max_m O[t,m] / C[m],  cpuO[t] / CPU,  memO[t] / MEM )

where ``cpuO``/``memO`` are CPU and memory held by t's jobs admitted beyond guarantee and CPU/MEM
the cluster totals (free + held). Among jobs beyond guarantee, the tenant with the lowest share goes
next; shares are recomputed after each admission.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field

from zhisuan.core.placement.snapshot import ClusterSnapshot
from zhisuan.core.queueing.model import RunningJob


@dataclass(frozen=True)
class QuotaVerdict:
    within: bool
    borrowing: bool


@dataclass
class QuotaBook:
    capacity: dict[str, int]  # C[m]
    guarantee: dict[tuple[str, str], int]  # G[t,m]
    usage: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))  # U[t,m]
    overflow_total: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # Σ_t O[t,m]
    cpu_over: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    mem_over: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    tenant_models: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    cpu_total: int = 1
    mem_total: int = 1
    pools: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        guaranteed: dict[str, int] = defaultdict(int)
        for (_, model), amount in self.guarantee.items():
            guaranteed[model] += amount
        self.pools = {m: max(0, c - guaranteed[m]) for m, c in self.capacity.items()}

    def pool(self, model: str) -> int:
        """P[m]: capacity nobody is guaranteed."""
        return self.pools.get(model, 0)

    def overflow(self, tenant: str, model: str) -> int:
        return max(0, self.usage[(tenant, model)] - self.guarantee.get((tenant, model), 0))

    def verdict(self, tenant: str, model: str, need: int) -> QuotaVerdict:
        used, guaranteed = self.usage[(tenant, model)], self.guarantee.get((tenant, model), 0)
        if used + need <= guaranteed:
            return QuotaVerdict(True, False)
        added = max(0, used + need - guaranteed) - self.overflow(tenant, model)
        return QuotaVerdict(False, self.overflow_total[model] + added > self.pool(model))

    def charge(self, tenant: str, model: str | None, need: int, cpu: int, mem: int, within: bool) -> None:
        """Account an admission (or a running job): usage, overflow and the CPU/memory beyond guarantee."""
        if model is not None:
            before = self.overflow(tenant, model)
            self.usage[(tenant, model)] += need
            self.overflow_total[model] += self.overflow(tenant, model) - before
            self.tenant_models[tenant].add(model)
        if not within:
            self.cpu_over[tenant] += cpu
            self.mem_over[tenant] += mem

    def share(self, tenant: str) -> float:
        """DRF dominant share of the module docstring."""
        parts = [self.cpu_over[tenant] / self.cpu_total, self.mem_over[tenant] / self.mem_total]
        for model in self.tenant_models[tenant]:
            parts.append(self.overflow(tenant, model) / max(1, self.capacity.get(model, 0)))
        return max(parts)

    def describe(self, tenant: str, model: str, need: int) -> str:
        used, guaranteed = self.usage[(tenant, model)], self.guarantee.get((tenant, model), 0)
        return f"{model}: needs {need} milli, tenant {tenant} uses {used} of {guaranteed} guaranteed"


def quota_book(
    cluster: ClusterSnapshot, guarantees: Mapping[str, Mapping[str, int]], running: tuple[RunningJob, ...]
) -> QuotaBook:
    """Capacity from the snapshot (every device counts, free or held), usage from the running jobs."""
    capacity: dict[str, int] = defaultdict(int)
    for node in cluster.nodes:
        for device in node.devices:
            capacity[device.model] += 1000
    book = QuotaBook(
        capacity=dict(capacity),
        guarantee={(t, m): int(g) for t, per_model in guarantees.items() for m, g in per_model.items()},
    )
    cpu_held = sum(w.cpu_milli for job in running for w in job.workers)
    mem_held = sum(w.memory_mib for job in running for w in job.workers)
    book.cpu_total = max(1, sum(n.cpu_milli_free for n in cluster.nodes) + cpu_held)
    book.mem_total = max(1, sum(n.memory_mib_free for n in cluster.nodes) + mem_held)
    for job in sorted(running, key=lambda j: j.job_id):
        cpu = sum(w.cpu_milli for w in job.workers)
        mem = sum(w.memory_mib for w in job.workers)
        book.charge(job.tenant, job.model, job.device_milli, cpu, mem, job.within_guarantee)
    return book
