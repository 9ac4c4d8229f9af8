"""Step 2 of a scheduler pass: load the queue, let ``core.queueing`` decide, apply the decisions.

Applying an admission holds every worker's devices, CPU and memory in the ledger inside one savepoint:
if any hold is refused (something took the capacity between load and apply) the job's holds are
rolled back together and it stays queued — a gang is held whole or not at all, in the database too.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload, sessionmaker

from zhisuan.catalog.loader import Catalog
from zhisuan.core.queueing import Admission, CycleResult, schedule
from zhisuan.errors import DomainError
from zhisuan.inventory.models import Node, Site
from zhisuan.ledger.service import Window, hold_cpu, hold_devices
from zhisuan.store.base import transaction
from zhisuan.store.leases import lease_is_held
from zhisuan.workloads.engines import DriverBook
from zhisuan.workloads.models import Job
from zhisuan.workloads.release import job_ref
from zhisuan.workloads.service import add_event, set_state
from zhisuan.workloads.snapshot import Cycle, load_cycle

log = logging.getLogger("zhisuan.jobs")
LEASE = "job-scheduler"


def apply_cycle(sessions: sessionmaker[Session], catalog: Catalog, book: DriverBook, token: str,
                now: datetime) -> CycleResult | None:
    """The spares cycles (restarts onto their tenant's hot spares; then, for gangs larger than the spares
    left, onto the spares plus free ordinary nodes) first, then the normal one."""
    for with_free_nodes in (False, True):
        with sessions() as session:
            restarting = session.execute(select(Job.id).where(Job.state == "queued", Job.restarts > 0,
                                                              Job.stop_requested.is_(None)).limit(1)).first()
        if restarting is not None:
            apply_one_cycle(sessions, catalog, book, token, now, spares=True, with_free_nodes=with_free_nodes)
    return apply_one_cycle(sessions, catalog, book, token, now)


def apply_one_cycle(sessions: sessionmaker[Session], catalog: Catalog, book: DriverBook, token: str,
                    now: datetime, spares: bool = False, with_free_nodes: bool = False) -> CycleResult | None:
    with sessions() as session:
        # Nothing queued: skip the fleet snapshot (every second, on a fleet of thousands of nodes).
        if session.execute(select(Job.id).where(Job.state == "queued", Job.stop_requested.is_(None))
                           .limit(1)).first() is None:
            return None
        skip = {name: why for name in list(book.unreachable) if (why := book.skip(name, now))}
        cycle = load_cycle(session, catalog, now, skip, spares=spares, with_free_nodes=with_free_nodes)
    if not cycle.snapshot.queued:
        return None
    result = schedule(cycle.snapshot)
    with transaction(sessions) as session:
        if not lease_is_held(session, LEASE, token, now):
            return None
        for admission in result.admissions:
            admit(session, cycle, admission, now)
        if spares:
            return result  # on spares a restart only takes free capacity: no preemption, no pending reasons
        for preemption in result.preemptions:
            job = session.get(Job, preemption.job_id)
            if job is not None and job.state in ("admitted", "starting", "running") and job.stop_requested is None:
                job.stop_requested = "preempt"
                add_event(session, job, "preempted", preemption.reason, now)
        for pending in result.pending:
            job = session.get(Job, pending.job_id)
            reason = pending.reason + "".join(f"; {why}" for why in cycle.skipped_sites.values())
            if job is not None and job.state == "queued" and job.reason != reason[:1000]:
                set_state(session, job, "queued", reason, now)
    return result


def nodes_by_label(session: Session, labels: set[str]) -> dict[str, Node]:
    site_names = {label.partition("/")[0] for label in labels}
    rows = session.execute(select(Node).join(Site, Site.id == Node.site_id).where(Site.name.in_(site_names))
                           .options(selectinload(Node.devices), selectinload(Node.site))).scalars()
    return {f"{n.site.name}/{n.name}": n for n in rows if f"{n.site.name}/{n.name}" in labels}


def admit(session: Session, cycle: Cycle, admission: Admission, now: datetime) -> bool:
    job = session.get(Job, admission.job_id)
    if job is None or job.state != "queued" or job.stop_requested is not None:
        return False  # cancelled while the cycle decided
    nodes = nodes_by_label(session, {w.node for w in admission.workers})
    job.attempt += 1
    ref, window = job_ref(job), Window(now)
    try:
        with session.begin_nested():
            for worker in admission.workers:
                node = nodes[worker.node]
                if worker.device_indices:
                    hold_devices(session, job.tenant_id, node, worker.device_indices, worker.milli_per_device,
                                 window, "job", ref, borrowing=admission.borrowing)
                # The CPU and memory of a device job come with its devices (not billed apart);
                # a CPU-only job is billed in core-hours.
                hold_cpu(session, job.tenant_id, node, worker.cpu_milli, worker.memory_mib, window, "job", ref,
                         billable=None if not worker.device_indices else False, borrowing=admission.borrowing)
    except (DomainError, KeyError) as error:
        job.attempt -= 1
        reason = f"capacity taken while admitting ({error}); retrying"
        if job.reason != reason:
            set_state(session, job, "queued", reason, now)
        return False
    site = cycle.sites[admission.workers[0].node.partition("/")[0]]
    job.site_id, job.model, job.engine_handle = site.site_id, admission.model, None
    job.within_guarantee, job.borrowing, job.admitted_at = admission.within_guarantee, admission.borrowing, now
    job.placement = [{"rank": rank, "node": w.node, "device_indices": list(w.device_indices),
                      "milli_per_device": w.milli_per_device, "cpu_milli": w.cpu_milli, "memory_mib": w.memory_mib}
                     for rank, w in enumerate(admission.workers)]
    set_state(session, job, "admitted", admission.reason or f"admitted on site {site.name}", now)
    return True
