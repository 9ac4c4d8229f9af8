"""Small builders for queueing tests: nodes named ``site/name``, jobs, running jobs whose holds are
subtracted from the cluster exactly as the control plane does before it calls ``schedule``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from zhisuan.core.placement import ClusterSnapshot, DeviceSnapshot, NodeSnapshot, PlacementRequest
from zhisuan.core.queueing import QueuedJob, QueueSnapshot, RunningJob, WorkerPlace


def node(
    name: str,
    site: str = "s1",
    model: str = "A800",
    devices: int = 8,
    cpu: int = 128_000,
    mem: int = 1_048_576,
    labels: Mapping[str, str] | None = None,
    leased: str | None = None,
) -> NodeSnapshot:
    """A node with every device and all CPU/memory free (holds are subtracted by ``snapshot``)."""
    devs = tuple(DeviceSnapshot(i, model, 81920, 1000) for i in range(devices))
    return NodeSnapshot(f"{site}/{name}", site, cpu, mem, devs, labels or {}, exclusive_tenant=leased)


def job(
    job_id: int,
    tenant: str,
    klass: str = "elastic",
    devices: int = 1,
    workers: int = 1,
    priority: int = 0,
    seq: int | None = None,
    milli: int = 1000,
    models: Iterable[str] | None = None,
    cpu: int = 1000,
    mem: int = 1024,
    sites: Iterable[str] | None = None,
) -> QueuedJob:
    request = PlacementRequest(
        cpu, mem, devices, milli, allowed_models=None if models is None else frozenset(models), tenant=tenant
    )
    return QueuedJob(
        job_id,
        tenant,
        klass,
        priority,
        job_id if seq is None else seq,
        workers,
        request,
        None if sites is None else frozenset(sites),
    )


def running(
    job_id: int,
    tenant: str,
    klass: str,
    at: str,
    devices: Iterable[int],
    within: bool = False,
    seq: int | None = None,
    model: str | None = "A800",
    milli: int = 1000,
    cpu: int = 1000,
    mem: int = 1024,
) -> RunningJob:
    """A single-worker running job on node ``at`` (``site/name``)."""
    worker = WorkerPlace(at, tuple(devices), milli, cpu, mem)
    return RunningJob(job_id, tenant, klass, job_id if seq is None else seq, model, (worker,), within)


def held(nodes: Iterable[NodeSnapshot], jobs: Iterable[RunningJob]) -> ClusterSnapshot:
    """The cluster as ``schedule`` sees it: running jobs' CPU, memory and device shares subtracted."""
    by_name = {n.name: n for n in nodes}
    order = list(by_name)
    for j in jobs:
        for w in j.workers:
            n = by_name[w.node]
            devs = tuple(
                DeviceSnapshot(d.index, d.model, d.memory_mib, d.free_milli - w.milli_per_device, d.healthy)
                if d.index in w.device_indices
                else d
                for d in n.devices
            )
            by_name[w.node] = NodeSnapshot(
                n.name,
                n.site,
                n.cpu_milli_free - w.cpu_milli,
                n.memory_mib_free - w.memory_mib,
                devs,
                n.labels,
                n.healthy,
                n.exclusive_tenant,
            )
    return ClusterSnapshot(tuple(by_name[name] for name in order))


def snapshot(
    nodes: Iterable[NodeSnapshot],
    queued: Iterable[QueuedJob],
    guarantees: Mapping[str, Mapping[str, int]] | None = None,
    run: Iterable[RunningJob] = (),
    max_admissions: int = 256,
) -> QueueSnapshot:
    run = tuple(run)
    return QueueSnapshot(held(nodes, run), guarantees or {}, tuple(queued), run, max_admissions)
