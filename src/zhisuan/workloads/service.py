"""The rules of jobs that answer requests: submit (validated against catalog and fleet), read, cancel.

Running them is the scheduler's work (``scheduler.py``): this module only writes the tenant's
intent (a queued job, a cancel request) and reads what happened (state, events, placement).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from zhisuan.catalog.loader import Catalog
from zhisuan.errors import Conflict, Forbidden, InvalidInput, NotFound
from zhisuan.identity import audit
from zhisuan.identity.access import Principal
from zhisuan.identity.models import Tenant
from zhisuan.inventory.models import Device, Node, Site
from zhisuan.inventory.service import resolve_model
from zhisuan.ledger.service import lock_tenant
from zhisuan.workloads import schemas as s
from zhisuan.workloads.engines import SiteEngine, site_engine_of
from zhisuan.workloads.models import ENDED_STATES, HOLDING_STATES, Job, JobEvent

# Jobs a tenant may have queued or running at once: a runaway script must not flood the queue.
MAX_ACTIVE_JOBS_PER_TENANT = 10_000
ENGINES_RUNNING_JOBS = ("local", "slurm", "kubernetes")


def add_event(session: Session, job: Job, state: str, reason: str, at: datetime) -> None:
    session.add(JobEvent(job_id=job.id, at=at, attempt=job.attempt, state=state, reason=reason[:1000]))


def set_state(session: Session, job: Job, state: str, reason: str, at: datetime) -> None:
    """Move a job to ``state`` with a reason and an event (the only way a job's state changes)."""
    job.state, job.reason, job.updated_at = state, reason[:1000], at
    add_event(session, job, state, reason, at)


# ----------------------------------------------------------------------------- submitting


def submitting_tenant(session: Session, principal: Principal, name: str | None) -> Tenant:
    if principal.role == "tenant":
        if name is not None:
            raise Forbidden("tenants submit jobs as themselves; leave out 'tenant'")
        tenant = session.get(Tenant, principal.tenant_id)
    elif principal.is_operator:
        if name is None:
            raise InvalidInput("operators submit a job for a tenant: give 'tenant'", field="tenant")
        tenant = session.execute(select(Tenant).where(Tenant.name == name)).scalar_one_or_none()
        if tenant is None:
            raise NotFound(f"tenant '{name}' not found", field="tenant")
    else:
        raise Forbidden("providers do not run jobs; a tenant or an operator submits them")
    if tenant is None:
        raise NotFound("tenant not found", field="tenant")
    return tenant


def resolve_sites(session: Session, body: s.JobSubmit) -> tuple[list[str] | None, list[str] | None]:
    known = dict(session.execute(select(Site.name, Site.region)).all())
    for n, name in enumerate(body.sites or []):
        if name not in known:
            raise InvalidInput(f"unknown site '{name[:64]}'", field=f"sites.{n}")
    for n, region in enumerate(body.regions or []):
        if region not in known.values():
            raise InvalidInput(f"no site in region '{region[:64]}'", field=f"regions.{n}")
    return (sorted(set(body.sites)) if body.sites else None, sorted(set(body.regions)) if body.regions else None)


def check_fits_fleet(session: Session, body: s.JobSubmit, sites: list[str] | None) -> None:
    """Refuse what no node or site of the fleet could ever hold (a model nobody has stays queued instead)."""
    query = (select(Site.name, Node.id, func.count(Device.id))
             .join(Node, Node.site_id == Site.id).outerjoin(Device, Device.node_id == Node.id)
             .where(Site.engine.in_(ENGINES_RUNNING_JOBS)).group_by(Site.name, Node.id))
    if sites:
        query = query.where(Site.name.in_(sites))
    rows = session.execute(query).all()
    most_devices = max((count for _, _, count in rows), default=0)
    if body.devices_per_worker > most_devices:
        raise InvalidInput(f"{body.devices_per_worker} devices per worker: no node of the fleet has more than "
                           f"{most_devices}", field="devices_per_worker")
    per_site: dict[str, int] = {}
    for site, _, count in rows:
        if count >= body.devices_per_worker:
            per_site[site] = per_site.get(site, 0) + 1
    largest = max(per_site.values(), default=0)
    if body.workers > largest:
        raise InvalidInput(f"a gang of {body.workers} workers with {body.devices_per_worker} devices each: the "
                           f"largest site has {largest} such nodes (a gang runs within one site)", field="workers")


def submit(session: Session, catalog: Catalog, principal: Principal, body: s.JobSubmit, now: datetime) -> Job:
    tenant = submitting_tenant(session, principal, body.tenant)
    models = None
    if body.models is not None:
        models = sorted({resolve_model(catalog, name, f"models.{n}") for n, name in enumerate(body.models)})
    if body.devices_per_worker == 0 and models is not None:
        raise InvalidInput("accelerator models given but no devices asked for", field="devices_per_worker")
    sites, regions = resolve_sites(session, body)
    check_fits_fleet(session, body, sites)
    lock_tenant(session, tenant.id)
    active = session.execute(select(func.count(Job.id)).where(
        Job.tenant_id == tenant.id, Job.state.not_in(ENDED_STATES))).scalar_one()
    if active >= MAX_ACTIVE_JOBS_PER_TENANT:
        raise Conflict(f"tenant '{tenant.name}' has {active} jobs queued or running (at most "
                       f"{MAX_ACTIVE_JOBS_PER_TENANT}); wait for some to end", field="tenant")
    job = Job(
        tenant_id=tenant.id, name=body.name or "", command=list(body.command or []), script=body.script,
        image=body.image, env=dict(body.env), workdir=body.workdir, checkpoint_dir=body.checkpoint_dir,
        max_restarts=body.max_restarts, hang_timeout_s=body.hang_timeout_s, workers=body.workers,
        devices_per_worker=body.devices_per_worker,
        milli_per_device=body.milli_per_device if body.devices_per_worker else 1000, models=models,
        min_device_memory_mib=round(body.min_device_memory_gib * 1024), min_device_tflops=body.min_device_tflops,
        cpu_milli=round(body.cpu_cores * 1000), memory_mib=round(body.memory_gib * 1024),
        max_run_s=body.max_run_seconds, priority_class=body.priority_class, priority=body.priority,
        sites=sites, regions=regions, state="queued", reason="submitted", submitted_at=now, updated_at=now,
    )
    session.add(job)
    session.flush()
    add_event(session, job, "queued", "submitted", now)
    if body.image:
        add_event(session, job, "queued", f"image {body.image}: used where the site has a container runtime "
                  "(Kubernetes); on local and Slurm sites without one the command runs on the host", now)
    audit.record(session, principal, "job.submit", "job", str(job.id), tenant_id=tenant.id,
                 detail={"workers": job.workers, "devices_per_worker": job.devices_per_worker,
                         "class": job.priority_class})
    return job


# ----------------------------------------------------------------------------- reading


def visible_jobs(principal: Principal):  # type: ignore[no-untyped-def]
    query = select(Job)
    if principal.is_operator:
        return query
    if principal.role == "tenant":
        return query.where(Job.tenant_id == principal.tenant_id)
    return query.where(Job.id == -1)  # providers see no tenant's jobs


def get_job(session: Session, principal: Principal, job_id: int) -> Job:
    job = session.execute(visible_jobs(principal).where(Job.id == job_id)).scalar_one_or_none()
    if job is None:
        raise NotFound(f"job {job_id} not found", field="job")
    return job


def list_jobs(session: Session, principal: Principal, state: str | None = None, tenant: str | None = None,
              limit: int = 200) -> Sequence[Job]:
    query = visible_jobs(principal)
    if state == "active":
        query = query.where(Job.state.not_in(ENDED_STATES))
    elif state is not None:
        query = query.where(Job.state == state)
    if tenant is not None and principal.is_operator:
        query = query.join(Tenant, Tenant.id == Job.tenant_id).where(Tenant.name == tenant)
    return session.execute(query.order_by(Job.id.desc()).limit(limit)).scalars().all()


def job_events(session: Session, principal: Principal, job_id: int) -> Sequence[JobEvent]:
    job = get_job(session, principal, job_id)
    return session.execute(select(JobEvent).where(JobEvent.job_id == job.id).order_by(JobEvent.id)).scalars().all()


def job_out(session: Session, job: Job, principal: Principal) -> s.JobOut:
    tenant = session.get(Tenant, job.tenant_id)
    site = session.get(Site, job.site_id) if job.site_id else None
    reveal = principal.is_operator
    workers = [s.WorkerOut(rank=w["rank"], node=w["node"] if reveal else None, site=w["node"].partition("/")[0],
                           device_indices=list(w["device_indices"]), milli_per_device=w["milli_per_device"])
               for w in job.placement]
    return s.JobOut(
        id=job.id, name=job.name, tenant=tenant.name if tenant else "?", state=job.state, reason=job.reason,
        priority_class=job.priority_class, priority=job.priority, workers=job.workers,
        devices_per_worker=job.devices_per_worker, milli_per_device=job.milli_per_device, models=job.models,
        cpu_cores=job.cpu_milli / 1000, memory_gib=job.memory_mib / 1024, max_run_seconds=job.max_run_s,
        command=list(job.command), script=job.script, image=job.image, workdir=job.workdir,
        checkpoint_dir=job.checkpoint_dir, max_restarts=job.max_restarts, hang_timeout_s=job.hang_timeout_s,
        restarts=job.restarts, progress=job.progress, progress_at=job.progress_at,
        env=dict(job.env), sites=job.sites, regions=job.regions,
        site=site.name if site else None, model=job.model, attempt=job.attempt, preemptions=job.preemptions,
        within_guarantee=job.within_guarantee, borrowing=job.borrowing, exit_code=job.exit_code,
        platform_fault=job.platform_fault, submitted_at=job.submitted_at, admitted_at=job.admitted_at,
        started_at=job.started_at, ended_at=job.ended_at, placement=workers,
    )


# ----------------------------------------------------------------------------- cancelling


def cancel(session: Session, principal: Principal, job_id: int, now: datetime) -> Job:
    """Queued: cancelled at once. Holding devices: the scheduler stops the engine job, then it ends."""
    job = get_job(session, principal, job_id)
    if principal.role not in ("tenant", "operator"):
        raise Forbidden("only the job's tenant or an operator may cancel it")
    if job.state in ENDED_STATES:
        raise Conflict(f"job {job.id} has already ended ({job.state})", field="job")
    if job.state in ("queued", "preempted"):
        job.ended_at = now
        set_state(session, job, "cancelled", f"cancelled by {principal.username} while queued", now)
    elif job.state in HOLDING_STATES and job.stop_requested != "cancel":
        job.stop_requested = "cancel"
        add_event(session, job, job.state, f"cancel requested by {principal.username}", now)
    audit.record(session, principal, "job.cancel", "job", str(job.id), tenant_id=job.tenant_id)
    return job


def last_handle(session: Session, job: Job) -> tuple[str, int] | None:
    """(engine handle, site id) of the job's latest attempt — kept for its logs after it ended."""
    if job.engine_handle is None or job.site_id is None:
        return None
    return job.engine_handle, job.site_id


def site_engine(session: Session, site_id: int) -> SiteEngine:
    site = session.get(Site, site_id)
    if site is None:
        raise NotFound("the job's site no longer exists", field="job")
    return site_engine_of(site)
