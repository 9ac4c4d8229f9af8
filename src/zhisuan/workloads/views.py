"""Read models over jobs: the operator's queue view and job usage by outcome (from the ledger)."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from zhisuan.errors import Forbidden
from zhisuan.identity.access import Principal
from zhisuan.identity.models import Tenant
from zhisuan.ledger.models import CPU_MODEL, Allocation
from zhisuan.workloads import schemas as s
from zhisuan.workloads.models import HOLDING_STATES, Job
from zhisuan.workloads.snapshot import guarantees

OUTCOMES = ("running", "succeeded", "failed", "cancelled", "preempted", "platform fault")


def reason_group(reason: str) -> str:
    """Pending reasons differ in counts ("3 nodes: …"); the queue view groups by their words."""
    return " ".join(word for word in reason.split() if not word.isdigit())[:200] or "waiting for the next cycle"


def queue_view(session: Session, principal: Principal, now: datetime) -> s.QueueOut:
    if not principal.is_operator:
        raise Forbidden("the queue view is for operators (tenants: zhisuan job list)")
    names = dict(session.execute(select(Tenant.id, Tenant.name)).all())
    pending: Counter[tuple[str, str, str]] = Counter()
    running: Counter[tuple[str, str, str]] = Counter()
    in_use: dict[str, dict[str, float]] = defaultdict(dict)
    borrowed = 0.0
    rows = session.execute(select(Job).where(Job.state.in_(("queued", *HOLDING_STATES)))).scalars()
    for job in rows:
        tenant = names.get(job.tenant_id, "?")
        if job.state == "queued":
            pending[(tenant, job.priority_class, reason_group(job.reason))] += 1
            continue
        running[(tenant, job.priority_class, job.state)] += 1
        devices = sum(len(w["device_indices"]) * w["milli_per_device"] for w in job.placement) / 1000
        if job.model:
            in_use[tenant][job.model] = in_use[tenant].get(job.model, 0) + devices
        borrowed += devices if job.borrowing else 0
    preemptions = session.execute(select(func.coalesce(func.sum(Job.preemptions), 0))).scalar_one()
    return s.QueueOut(
        pending=[s.QueueRow(tenant=t, state="queued", priority_class=c, reason=r, jobs=n)
                 for (t, c, r), n in sorted(pending.items())],
        running=[s.QueueRow(tenant=t, state=st, priority_class=c, reason="", jobs=n)
                 for (t, c, st), n in sorted(running.items())],
        borrowed_devices=borrowed, preemptions_total=int(preemptions),
        guarantees={t: {m: v / 1000 for m, v in models.items()} for t, models in guarantees(session, now).items()},
        in_use={t: dict(m) for t, m in in_use.items()})


def outcome_of(row: Allocation) -> str:
    if row.end_reason is None:
        return "running"
    words = row.end_reason.removeprefix("job ")
    return words if words in OUTCOMES else "failed"


def job_usage(session: Session, principal: Principal, now: datetime, tenant: str | None = None) -> list[dict]:  # type: ignore[type-arg]
    """Device-hours (and CPU core-hours of CPU-only jobs) held by jobs, by tenant, model and outcome:
    preempted and failed time apart from useful time; platform faults are shown but not billed, and
    time inside the tenant's own lease is covered by its contract (``billable_hours`` excludes both)."""
    query = select(Allocation, Tenant.name).join(Tenant, Tenant.id == Allocation.tenant_id).where(
        Allocation.purpose == "job", Allocation.start <= now)
    if principal.role == "tenant":
        query = query.where(Allocation.tenant_id == principal.tenant_id)
    elif not principal.is_operator:
        raise Forbidden("job usage is for tenants and operators")
    elif tenant is not None:
        query = query.where(Tenant.name == tenant)
    totals: dict[tuple[str, str, str], list[float]] = defaultdict(lambda: [0.0, 0.0])
    rows = session.execute(query).all()
    device_jobs = {row.ref for row, _ in rows if row.model != CPU_MODEL}
    for row, name in rows:
        if row.model == CPU_MODEL and row.ref in device_jobs:
            continue  # the CPU of a device job comes with its devices
        hours = ((row.end or now) - row.start).total_seconds() / 3600
        amount = hours * (row.milli / 1000 if row.model != CPU_MODEL else row.cpu_milli / 1000)
        key = (name, row.model, outcome_of(row))
        totals[key][0] += amount
        totals[key][1] += amount if row.billable else 0.0
    return [{"tenant": t, "model": m, "outcome": o, "unit": "core_hour" if m == CPU_MODEL else "device_hour",
             "hours": round(v[0], 6), "billable_hours": round(v[1], 6)} for (t, m, o), v in sorted(totals.items())]

