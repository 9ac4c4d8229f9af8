"""HTTP routes of workloads: jobs (submit, read, events, logs, cancel), usage, the queue view, agents' workers."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request, status

from zhisuan.api.deps import Agent, ContextDep, Reader, RowIdPath, SessionDep, Writer
from zhisuan.drivers.base import STREAMS, EngineUnavailable
from zhisuan.errors import Conflict, InvalidInput
from zhisuan.identity.access import require_role
from zhisuan.inventory.service import get_site
from zhisuan.workloads import agent_sync, goodput, service, site_sync, views
from zhisuan.workloads import schemas as s
from zhisuan.workloads.engines import DriverBook
from zhisuan.workloads.models import JobEvent

router = APIRouter(tags=["jobs"])


@router.post("/jobs", response_model=s.JobOut, status_code=status.HTTP_201_CREATED)
def submit_job(body: s.JobSubmit, request: Request, session: SessionDep, principal: Writer,
               ctx: ContextDep) -> s.JobOut:
    """Queue a job; the scheduler admits it under the tenant's quota and runs it on a site's engine."""
    job = service.submit(session, request.app.state.catalog, principal, body, ctx.clock())
    out = service.job_out(session, job, principal)
    session.commit()  # before the scheduler, woken now, reads the queue
    request.app.state.wakeups.scheduler.set()
    return out


@router.get("/jobs", response_model=list[s.JobOut])
def list_jobs(session: SessionDep, principal: Reader,
              state: Annotated[str | None, Query(pattern=r"^(active|queued|admitted|starting|running|succeeded|"
                                                 r"failed|cancelled)$")] = None,
              tenant: Annotated[str | None, Query(max_length=64)] = None,
              limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> list[s.JobOut]:
    """Newest first; ``state=active``: not yet ended. Tenants see their own jobs only."""
    jobs = service.list_jobs(session, principal, state, tenant, limit)
    return [service.job_out(session, job, principal) for job in jobs]


@router.get("/jobs/queue", response_model=s.QueueOut)
def queue(session: SessionDep, principal: Reader, ctx: ContextDep) -> s.QueueOut:
    """Operators: pending jobs by tenant and reason, running jobs, borrowed capacity, preemptions."""
    return views.queue_view(session, principal, ctx.clock())


@router.get("/jobs/usage")
def job_usage(session: SessionDep, principal: Reader, ctx: ContextDep,
              tenant: Annotated[str | None, Query(max_length=64)] = None) -> list[dict]:  # type: ignore[type-arg]
    """Device-hours by tenant, model and outcome (running, succeeded, failed, cancelled, preempted,
    platform fault), with the billable part."""
    return views.job_usage(session, principal, ctx.clock(), tenant)


@router.get("/goodput", response_model=goodput.TenantGoodput)
def tenant_goodput(session: SessionDep, principal: Reader, ctx: ContextDep,
                   tenant: Annotated[str | None, Query(max_length=64)] = None,
                   since: datetime | None = None, until: datetime | None = None) -> goodput.TenantGoodput:
    """A tenant's effective training time over its jobs submitted in [since, until): queueing, productive,
    checkpoint, lost and restart seconds and ETTR = productive / (wall − queueing). Tenants: their own."""
    return goodput.tenant_goodput(session, principal, tenant, since, until, ctx.clock())


@router.get("/jobs/{job_id}/goodput", response_model=goodput.JobGoodput)
def job_goodput(job_id: RowIdPath, session: SessionDep, principal: Reader, ctx: ContextDep) -> goodput.JobGoodput:
    """Where the job's wall time went (``core.goodput.meter``); the parts add up to the wall time."""
    return goodput.job_goodput(session, principal, job_id, ctx.clock())


@router.get("/jobs/{job_id}", response_model=s.JobOut)
def get_job(job_id: RowIdPath, session: SessionDep, principal: Reader) -> s.JobOut:
    return service.job_out(session, service.get_job(session, principal, job_id), principal)


@router.get("/jobs/{job_id}/events", response_model=list[s.JobEventOut])
def job_events(job_id: RowIdPath, session: SessionDep, principal: Reader) -> list[JobEvent]:
    """Every transition with its reason and time — "why is my job pending" included."""
    return list(service.job_events(session, principal, job_id))


@router.post("/jobs/{job_id}/cancel", response_model=s.JobOut)
def cancel_job(job_id: RowIdPath, request: Request, session: SessionDep, principal: Writer,
               ctx: ContextDep) -> s.JobOut:
    out = service.job_out(session, service.cancel(session, principal, job_id, ctx.clock()), principal)
    session.commit()
    request.app.state.wakeups.scheduler.set()
    return out


@router.get("/jobs/{job_id}/logs", response_model=s.LogOut)
def job_logs(job_id: RowIdPath, request: Request, session: SessionDep, principal: Reader,
             rank: Annotated[int, Query(ge=0, le=255)] = 0,
             stream: Annotated[str, Query(pattern=r"^(stdout|stderr)$")] = "stdout",
             offset: Annotated[int, Query(ge=0, le=2**40)] = 0,
             limit: Annotated[int, Query(ge=1, le=1_048_576)] = 65536) -> s.LogOut:
    """A worker's stdout or stderr from a byte offset (``next_offset`` continues; ``--follow`` polls)."""
    job = service.get_job(session, principal, job_id)
    handle = service.last_handle(session, job)
    if rank >= job.workers:
        raise InvalidInput(f"job {job.id} has ranks 0…{job.workers - 1}", field="rank")
    if handle is None or stream not in STREAMS:
        return s.LogOut(job_id=job.id, rank=rank, stream=stream, offset=offset, next_offset=offset, data="",
                        complete=job.state in ("succeeded", "failed", "cancelled"))
    site = service.site_engine(session, handle[1])
    session.commit()  # the engine is read outside any transaction
    book: DriverBook = request.app.state.driver_book
    try:
        chunk = book.driver(site).logs(handle[0], rank, stream, offset, limit)
    except EngineUnavailable as error:
        raise Conflict(f"site {site.name}: engine unreachable ({error}); try again", field="job") from error
    return s.LogOut(job_id=job.id, rank=rank, stream=stream, offset=offset, next_offset=chunk.next_offset,
                    data=chunk.data, complete=chunk.complete)


@router.post("/sites/{ref}/sync", tags=["inventory"])
def sync_site(ref: str, request: Request, session: SessionDep, principal: Writer, ctx: ContextDep) -> dict:  # type: ignore[type-arg]
    """Import the site's nodes and devices from its engine (Slurm, Kubernetes): operators and the site's
    provider. The scheduler also does this every minute for engine-managed sites."""
    require_role(principal, "operator", "provider")
    site = get_site(session, principal, ref)
    if site.engine not in ("slurm", "kubernetes"):
        raise InvalidInput(f"site {site.name} runs the '{site.engine}' engine: its nodes join through their "
                           "agents (zhisuan agent), not an engine's inventory", field="site")
    session.commit()  # the engine is asked outside any transaction
    try:
        result = site_sync.sync_site(ctx.sessions, request.app.state.catalog, request.app.state.driver_book,
                                     site.id, ctx.clock())
    except EngineUnavailable as error:
        raise Conflict(f"site {ref}: engine unreachable ({error})", field="site") from error
    return asdict(result)


@router.post("/agent/workers", response_model=list[agent_sync.Assignment], tags=["agent"])
def agent_workers(body: agent_sync.Reports, session: SessionDep, principal: Agent,
                  ctx: ContextDep) -> list[agent_sync.Assignment]:
    """Node agents: report their job workers (state, log bytes, progress) and get the workers they should run."""
    return agent_sync.report(session, principal, body, ctx.clock())

