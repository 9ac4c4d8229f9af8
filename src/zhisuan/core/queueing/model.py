"""Frozen inputs and outputs of one admission cycle (the Kueue model): a snapshot in, decisions out.

Quota is per accelerator model ("flavor") in milli-devices (1000 = one whole device). The caller
computes each tenant's guarantee from its contracts and gives the cluster's free capacity *now*
(holds of running jobs already subtracted); ``schedule`` returns admissions, preemptions and, for
every other queued job, why it is pending.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from zhisuan.core.placement.gang import DEFAULT_TOPOLOGY_KEYS
from zhisuan.core.placement.snapshot import ClusterSnapshot, PlacementRequest

PRIORITY_CLASSES = ("spot", "elastic", "reserved")  # ascending rank: reserved > elastic > spot


def class_rank(priority_class: str) -> int:
    """0 spot, 1 elastic, 2 reserved; a job is never preempted for a job of a lower rank."""
    try:
        return PRIORITY_CLASSES.index(priority_class)
    except ValueError:
        raise ValueError(
            f"unknown priority class {priority_class!r}; choose one of {', '.join(PRIORITY_CLASSES)}"
        ) from None


@dataclass(frozen=True)
class QueuedJob:
    """A job waiting for admission; ``request`` is per worker and ``workers`` the gang size (nodes)."""

    job_id: int
    tenant: str
    priority_class: str  # "reserved" | "elastic" | "spot"
    priority: int  # higher first, within a tenant and class
    seq: int  # submission order (smaller = earlier)
    workers: int
    request: PlacementRequest
    sites: frozenset[str] | None = None  # allowed sites (None = any); regions resolved by the caller
    topology_keys: tuple[str, ...] = DEFAULT_TOPOLOGY_KEYS

    def __post_init__(self) -> None:
        class_rank(self.priority_class)
        if self.workers < 1:
            raise ValueError(f"job {self.job_id}: workers must be >= 1")
        if self.sites is not None:
            object.__setattr__(self, "sites", frozenset(self.sites))

    @property
    def milli_per_worker(self) -> int:
        """Device milli one worker holds: ``device_count · milli_per_device`` (0 for CPU-only)."""
        return self.request.device_count * self.request.milli_per_device if self.request.device_count else 0

    @property
    def need(self) -> int:
        """Quota the job consumes: ``workers · milli_per_worker`` milli-devices of its model."""
        return self.workers * self.milli_per_worker


@dataclass(frozen=True)
class WorkerPlace:
    """One worker of a running or admitted job: node (``site/name`` as in ClusterSnapshot) and its holds."""

    node: str
    device_indices: tuple[int, ...]
    milli_per_device: int
    cpu_milli: int
    memory_mib: int

    @property
    def device_milli(self) -> int:
        return len(self.device_indices) * self.milli_per_device


@dataclass(frozen=True)
class RunningJob:
    """An admitted job that holds capacity; ``within_guarantee`` jobs are never preempted."""

    job_id: int
    tenant: str
    priority_class: str
    seq: int  # admission order (newest borrower = largest)
    model: str | None  # accelerator model it holds (None: CPU only)
    workers: tuple[WorkerPlace, ...]
    within_guarantee: bool

    @property
    def device_milli(self) -> int:
        return sum(w.device_milli for w in self.workers)


@dataclass(frozen=True)
class QueueSnapshot:
    cluster: ClusterSnapshot  # free capacity NOW (running jobs' holds already subtracted)
    guarantees: Mapping[str, Mapping[str, int]]  # tenant -> model -> guaranteed milli-devices
    queued: tuple[QueuedJob, ...]
    running: tuple[RunningJob, ...]
    max_admissions: int = 256  # per cycle


@dataclass(frozen=True)
class Admission:
    job_id: int
    model: str | None
    workers: tuple[WorkerPlace, ...]
    within_guarantee: bool
    borrowing: bool  # beyond guarantee and beyond the unguaranteed pool: uses other tenants' idle guarantee
    reason: str


@dataclass(frozen=True)
class Preemption:
    job_id: int
    reason: str
    for_job: int


@dataclass(frozen=True)
class Pending:
    job_id: int
    reason: str  # human-readable: a quota reason or placement's per-node reasons


@dataclass(frozen=True)
class CycleResult:
    admissions: tuple[Admission, ...]
    preemptions: tuple[Preemption, ...]
    pending: tuple[Pending, ...]
