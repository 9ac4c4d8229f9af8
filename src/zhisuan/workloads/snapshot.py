"""Loading the queue's snapshot for one admission cycle (one short read) and the guarantees behind it.

Guarantee of a tenant on a model = what its live contracts hold in the ledger: leased nodes' devices
(1000 milli each) plus quota and PFLOPS entitlements (milli of the model), at the cycle's time.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from zhisuan.catalog.loader import Catalog
from zhisuan.core.placement import ClusterSnapshot, NodeSnapshot, PlacementRequest
from zhisuan.core.queueing import QueuedJob, QueueSnapshot, RunningJob, WorkerPlace
from zhisuan.identity.models import Tenant
from zhisuan.inventory.models import Site
from zhisuan.ledger.models import CPU_MODEL, Allocation
from zhisuan.ledger.service import live_at
from zhisuan.placement.service import live_snapshot
from zhisuan.workloads.engines import JOB_ENGINES, SiteEngine, site_engine_of
from zhisuan.workloads.models import HOLDING_STATES, Job

MAX_QUEUED_PER_CYCLE = 20_000
SPARE_LABEL = "zhisuan.io/spare-for"  # a hot spare of this tenant: used first when its jobs restart


@dataclass(frozen=True)
class Cycle:
    """A cycle's inputs: the core's snapshot plus what the apply step needs to map names back."""

    snapshot: QueueSnapshot
    sites: dict[str, SiteEngine]  # site name -> engine, for sites that run jobs
    skipped_sites: dict[str, str]  # site name -> why its nodes were left out (engine unreachable)


def guarantees(session: Session, at: datetime) -> dict[str, dict[str, int]]:
    rows = session.execute(
        select(Tenant.name, Allocation.model, func.sum(Allocation.milli))
        .join(Tenant, Tenant.id == Allocation.tenant_id)
        .where(Allocation.purpose == "contract", Allocation.model != CPU_MODEL, live_at(at))
        .group_by(Tenant.name, Allocation.model))
    out: dict[str, dict[str, int]] = {}
    for tenant, model, milli in rows:
        out.setdefault(tenant, {})[model] = int(milli or 0)
    return out


def job_sites(job: Job, regions: dict[str, str]) -> frozenset[str] | None:
    if not job.sites and not job.regions:
        return None
    allowed = set(job.sites or [])
    allowed |= {site for site, region in regions.items() if region in (job.regions or [])}
    if job.sites and job.regions:  # both given: the sites named, within the regions named
        allowed = {site for site in job.sites if regions.get(site) in job.regions}
    return frozenset(allowed)


def failed_on(job: Job) -> frozenset[str]:
    """The job's avoid set: every node an earlier attempt failed on (``Job.failures``). Placement keeps a
    restart off them when other nodes fit, so the same failure again is evidence against the program."""
    return frozenset(str(node) for failure in job.failures for node in failure.get("nodes", ()))


def worker_request(job: Job, tenant: str) -> PlacementRequest:
    return PlacementRequest(
        cpu_milli=job.cpu_milli, memory_mib=job.memory_mib, device_count=job.devices_per_worker,
        milli_per_device=job.milli_per_device, allowed_models=frozenset(job.models) if job.models else None,
        min_device_memory_mib=job.min_device_memory_mib, min_device_tflops=job.min_device_tflops, tenant=tenant,
        avoid_nodes=failed_on(job))


def running_job(job: Job, tenant: str, seq: int) -> RunningJob:
    return RunningJob(job_id=job.id, tenant=tenant, priority_class=job.priority_class, seq=seq, model=job.model,
                      within_guarantee=job.within_guarantee, workers=tuple(
                          WorkerPlace(node=w["node"], device_indices=tuple(w["device_indices"]),
                                      milli_per_device=w["milli_per_device"], cpu_milli=w["cpu_milli"],
                                      memory_mib=w["memory_mib"]) for w in job.placement))


def spare_tenant(node: NodeSnapshot) -> str | None:
    return node.labels.get(SPARE_LABEL) or None


def load_cycle(session: Session, catalog: Catalog, now: datetime, skip: dict[str, str],
               max_admissions: int = 256, spares: bool = False, with_free_nodes: bool = False) -> Cycle:
    """The snapshot: free capacity now (ledger holds subtracted) on sites whose engine runs jobs and
    answers, every tenant's guarantees, the queued jobs (oldest first) and the running ones.

    Hot spares (nodes labelled ``zhisuan.io/spare-for=<tenant>``) are kept out of the normal cycle; the
    spares cycle (``spares``, run first) offers each tenant's spares, to that tenant only, to its jobs
    restarting after a fault — so a restart takes a spare before it waits for, or takes, other capacity.
    ``with_free_nodes`` adds the ordinary free nodes to the spares: a gang larger than its spare pool
    (two nodes, one of them lost, one spare) restarts on the survivors plus the spare."""
    site_rows = session.execute(select(Site)).scalars().all()
    regions = {s.name: s.region for s in site_rows}
    sites = {s.name: site_engine_of(s) for s in site_rows if s.engine in JOB_ENGINES}
    full = live_snapshot(session, catalog, now)
    usable = [n for n in full.nodes if n.site in sites and n.site not in skip]
    if spares:
        usable = [replace(n, exclusive_tenant=spare_tenant(n)) if spare_tenant(n) else n
                  for n in usable if spare_tenant(n) or with_free_nodes]
    else:
        usable = [n for n in usable if not spare_tenant(n)]
    cluster = ClusterSnapshot(nodes=tuple(usable))
    tenants = dict(session.execute(select(Tenant.id, Tenant.name)).all())
    query = select(Job).where(Job.state == "queued", Job.stop_requested.is_(None),
                              or_(Job.not_before.is_(None), Job.not_before <= now))
    if spares:
        with_spares = {spare_tenant(n) for n in usable if spare_tenant(n)}
        query = query.where(Job.restarts > 0, Job.tenant_id.in_(
            [i for i, name in tenants.items() if name in with_spares]))
    queued_rows = session.execute(query.order_by(Job.id).limit(MAX_QUEUED_PER_CYCLE)).scalars().all()
    held_rows = session.execute(select(Job).where(Job.state.in_(HOLDING_STATES))
                                .order_by(Job.admitted_at, Job.id)).scalars().all()
    queued = tuple(QueuedJob(job_id=j.id, tenant=tenants[j.tenant_id], priority_class=j.priority_class,
                             priority=j.priority, seq=j.id, workers=j.workers,
                             request=worker_request(j, tenants[j.tenant_id]), sites=job_sites(j, regions))
                   for j in queued_rows)
    running = tuple(running_job(j, tenants[j.tenant_id], seq) for seq, j in enumerate(held_rows))
    snapshot = QueueSnapshot(cluster=cluster, guarantees=guarantees(session, now), queued=queued, running=running,
                             max_admissions=max_admissions)
    return Cycle(snapshot, sites, dict(skip))
