"""Ending an attempt: its ledger holds end, and a platform fault's time is taken off the bill."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from zhisuan.billing.models import UsageRecord
from zhisuan.ledger.models import Allocation
from zhisuan.ledger.service import release
from zhisuan.workloads.models import Job


def job_ref(job: Job) -> str:
    return f"job:{job.id}/{job.attempt}"


def attempt_holds(session: Session, job: Job) -> list[Allocation]:
    return list(session.execute(select(Allocation).where(
        Allocation.purpose == "job", Allocation.ref == job_ref(job))).scalars())


def end_attempt(session: Session, job: Job, now: datetime, outcome: str, billable: bool = True) -> None:
    """Release the attempt's holds at ``now`` (never before what is already metered) with the outcome as
    the end reason. ``billable`` False (a platform fault, an engine that never took the job): the holds
    stop being billable and usage already metered but not yet invoiced is withdrawn (time already on an
    issued invoice stays there: invoices are never rewritten)."""
    rows = attempt_holds(session, job)
    for row in rows:
        at = max(now, row.metered_until or now)
        release(session, [row], at, reason=f"job {outcome}")
        if not billable and row.billable:
            row.billable = False
            session.execute(delete(UsageRecord).where(UsageRecord.allocation_id == row.id,
                                                      UsageRecord.invoice_line_id.is_(None)))
            row.metered_until = None
    job.stop_requested = None
    session.flush()
