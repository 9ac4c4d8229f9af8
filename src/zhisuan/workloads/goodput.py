"""Effective training time of jobs, measured from what the control plane recorded: a job's events
(queued, admitted, failed, requeued, preempted, ended) and its progress facts (``JobProgress``: each
attempt's first progress line and each new complete checkpoint) become the attempts the pure meter
(``core.goodput.meter``) splits into queueing, productive, checkpoint, lost and restart time.

Times are the control plane's arrival times (the clock the events use), not the job's own ``at``:
one clock for every category, so they add up to the wall time.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from zhisuan.core.goodput.breakdown import TimeBreakdown
from zhisuan.core.goodput.meter import Attempt, Checkpoint, measure
from zhisuan.errors import Forbidden, InvalidInput
from zhisuan.identity.access import Principal
from zhisuan.identity.models import Tenant
from zhisuan.workloads.models import Job, JobEvent, JobProgress
from zhisuan.workloads.service import get_job, visible_jobs

ATTEMPT_ENDS = {"succeeded": False, "cancelled": False, "failed": True, "requeued": True, "preempted": True}
MAX_JOBS_PER_SUM = 10_000


class Breakdown(BaseModel):
    queueing: float
    productive: float
    checkpoint: float
    lost: float
    restart: float
    wall: float
    ettr: float | None


def breakdown_out(b: TimeBreakdown) -> Breakdown:
    return Breakdown(queueing=b.queueing, productive=b.productive, checkpoint=b.checkpoint, lost=b.lost,
                     restart=b.restart, wall=b.wall, ettr=b.ettr)


class JobGoodput(BaseModel):
    job_id: int
    state: str
    attempts: int
    restarts: int
    breakdown: Breakdown


class TenantGoodput(BaseModel):
    tenant: str
    jobs: int
    breakdown: Breakdown


def attempts_of(job: Job, events: Sequence[JobEvent], progress: Sequence[JobProgress]) -> list[Attempt]:
    origin = job.submitted_at

    def t(at: datetime) -> float:
        return (at - origin).total_seconds()

    by_attempt: dict[int, list[JobProgress]] = {}
    for row in progress:
        by_attempt.setdefault(row.attempt, []).append(row)
    out: list[Attempt] = []
    current: dict | None = {"queued_at": 0.0}  # type: ignore[type-arg]
    for event in events:
        if event.state == "admitted":
            if current is None:  # admitted again after an attempt ended (requeue or launch failure)
                current = {"queued_at": out[-1].ended_at if out else 0.0}
            rows = by_attempt.get(event.attempt, [])
            current.update(admitted_at=t(event.at), first_progress_at=t(rows[0].at) if rows else None,
                           checkpoints=tuple(Checkpoint(t(r.at), r.checkpoint_step or 0, r.checkpoint_s or 0.0)
                                             for r in rows[1:]))
        elif event.state in ATTEMPT_ENDS and current is not None:
            out.append(Attempt(**current, ended_at=t(event.at), faulted=ATTEMPT_ENDS[event.state]))
            current = None
        elif event.state == "queued" and current is None and out and event.reason != "submitted":
            current = {"queued_at": out[-1].ended_at}
    if current is not None:
        out.append(Attempt(**current))
    return out


def breakdown_of(session: Session, job: Job, now: datetime) -> TimeBreakdown:
    events = session.execute(select(JobEvent).where(JobEvent.job_id == job.id).order_by(JobEvent.id)).scalars().all()
    progress = session.execute(select(JobProgress).where(JobProgress.job_id == job.id)
                               .order_by(JobProgress.id)).scalars().all()
    return measure(attempts_of(job, events, progress), (now - job.submitted_at).total_seconds())


def job_goodput(session: Session, principal: Principal, job_id: int, now: datetime) -> JobGoodput:
    job = get_job(session, principal, job_id)
    return JobGoodput(job_id=job.id, state=job.state, attempts=job.attempt, restarts=job.restarts,
                      breakdown=breakdown_out(breakdown_of(session, job, now)))


def tenant_goodput(session: Session, principal: Principal, tenant: str | None, since: datetime | None,
                   until: datetime | None, now: datetime) -> TenantGoodput:
    """The sum over the tenant's jobs submitted in [since, until): its ETTR is time-weighted."""
    if principal.role == "tenant":
        own = session.execute(select(Tenant.name).where(Tenant.id == principal.tenant_id)).scalar_one()
        if tenant is not None and tenant != own:
            raise Forbidden("tenants see their own goodput only", field="tenant")
        tenant = own
    elif not principal.is_operator:
        raise Forbidden("goodput is for tenants (their own) and operators", field="tenant")
    if tenant is None:
        raise InvalidInput("say which tenant", field="tenant")
    if since is not None and until is not None and until <= since:
        raise InvalidInput("until must be after since", field="until")
    query = visible_jobs(principal).join(Tenant, Tenant.id == Job.tenant_id).where(Tenant.name == tenant)
    if since is not None:
        query = query.where(Job.submitted_at >= since)
    if until is not None:
        query = query.where(Job.submitted_at < until)
    jobs = session.execute(query.order_by(Job.id).limit(MAX_JOBS_PER_SUM)).scalars().all()
    total = TimeBreakdown()
    for job in jobs:
        total = total + breakdown_of(session, job, now)
    return TenantGoodput(tenant=tenant, jobs=len(jobs), breakdown=breakdown_out(total))
