"""ETTR service levels of contracts: the SLA in force, the period's measured ETTR under a contract, and
the credits due on the period's invoices (rules: ``core.economics.ettr_credit``; docs/goodput.md).

Which jobs are under a contract: the ledger says. A job's attempt on nodes its tenant leases holds its
devices with the lease's ``contract_id`` (``ledger.workload_holder``) and ``ref`` = ``job:<id>/<attempt>``;
those attempts are the contract's. (Quota and PFLOPS entitlements do not pin a job's holds to a
contract, so a service level is for node leases.) An attempt counts, whole, in the billing period in
which it ended; one still running is counted when it ends.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from zhisuan.billing import models as b
from zhisuan.core.economics import ettr_credit as ec
from zhisuan.core.economics.errors import EconomicsError
from zhisuan.core.economics.periods import BillingPeriod
from zhisuan.core.economics.rating import Invoice
from zhisuan.core.goodput.meter import measure
from zhisuan.errors import InvalidInput
from zhisuan.ledger.models import Allocation
from zhisuan.market import models as m
from zhisuan.market import schemas as ms
from zhisuan.workloads.goodput import ATTEMPT_ENDS, attempts_of
from zhisuan.workloads.models import Job, JobEvent, JobProgress

# ----------------------------------------------------------------------------- the SLA


def core_sla(stored: dict[str, Any], field: str = "ettr_sla") -> ec.EttrSla:
    """A stored (or posted) SLA as the core's value; its rule errors name ``field``.<part>."""
    try:
        return ec.EttrSla(Decimal(str(stored["target"])),
                          tuple(ec.CreditTier(Decimal(str(t["below"])), Decimal(str(t["percent"])))
                                for t in stored["tiers"]), Decimal(str(stored["cap_percent"])))
    except EconomicsError as error:
        raise InvalidInput(error.message, field=f"{field}.{error.field}") from error


def stored_sla(body: ms.EttrSlaIn | None, field: str = "ettr_sla") -> dict[str, Any] | None:
    """The JSON kept on the contract (decimal strings), after the core checked the rule."""
    if body is None:
        return None
    stored = {"target": str(body.target), "tiers": [{"below": str(t.below), "percent": str(t.percent)}
                                                    for t in body.tiers], "cap_percent": str(body.cap_percent)}
    core_sla(stored, field)
    return stored


def sla_in_force(row: m.Contract, before: datetime) -> dict[str, Any] | None:
    """The SLA the contract carries just before ``before`` (a period's end: the SLA in force at its close
    applies to the whole period): the last amendment setting one effective earlier, else its own."""
    stored = row.ettr_sla
    for amendment in row.amendments:
        if amendment.ettr_sla is not None and amendment.effective_at < before:
            stored = amendment.ettr_sla
    return stored


# ----------------------------------------------------------------------------- measuring


def contract_attempts(session: Session, contract_id: int, start: datetime, end: datetime) -> list[ec.AttemptTime]:
    """The attempts of jobs held under the contract that ended in ``[start, end)``, attributed."""
    refs = session.execute(select(Allocation.ref).where(
        Allocation.purpose == "job", Allocation.contract_id == contract_id, Allocation.ref.like("job:%"),
        Allocation.start < end).distinct()).scalars()
    wanted: dict[int, set[int]] = {}
    for ref in refs:
        job_ref, _, attempt = ref.removeprefix("job:").partition("/")
        if job_ref.isdigit() and attempt.isdigit():
            wanted.setdefault(int(job_ref), set()).add(int(attempt))
    out: list[ec.AttemptTime] = []
    for job_id in sorted(wanted):
        job = session.get(Job, job_id)
        if job is not None:
            out += job_attempts(session, job, wanted[job_id], start, end)
    return out


def job_attempts(session: Session, job: Job, numbers: set[int], start: datetime,
                 end: datetime) -> list[ec.AttemptTime]:
    events = session.execute(select(JobEvent).where(JobEvent.job_id == job.id).order_by(JobEvent.id)).scalars().all()
    progress = session.execute(select(JobProgress).where(JobProgress.job_id == job.id)
                               .order_by(JobProgress.id)).scalars().all()
    admitted = [a for a in attempts_of(job, events, progress) if a.admitted_at is not None]
    endings = attempt_endings(job, events)
    out: list[ec.AttemptTime] = []
    caused_by = ec.Cause.SUBMITTED
    for attempt, (number, ended_by) in zip(admitted, endings, strict=False):
        if number in numbers and attempt.ended_at is not None \
                and start.timestamp() <= job.submitted_at.timestamp() + attempt.ended_at < end.timestamp():
            out.append(ec.AttemptTime(measure([attempt], attempt.ended_at), caused_by, ended_by))
        caused_by = ended_by or ec.Cause.TENANT  # a re-admission after a non-fault end is the tenant's
    return out


def attempt_endings(job: Job, events: Sequence[JobEvent]) -> list[tuple[int, ec.Cause | None]]:
    """(attempt number, who ended it: None when not a fault) per admission, oldest first."""
    kinds = {int(f["attempt"]): str(f["kind"]) for f in job.failures if "attempt" in f}
    out: list[tuple[int, ec.Cause | None]] = []
    open_attempt: int | None = None
    for event in events:
        if event.state == "admitted":
            open_attempt = event.attempt
            out.append((event.attempt, None))
        elif event.state in ATTEMPT_ENDS and open_attempt is not None:
            cause = None
            if event.state == "preempted":
                cause = ec.Cause.TENANT
            elif ATTEMPT_ENDS[event.state]:
                kind = kinds.get(open_attempt)
                cause = ec.cause_of_failure(kind) if kind is not None else (
                    ec.Cause.PLATFORM if job.platform_fault else ec.Cause.TENANT)
            out[-1] = (open_attempt, cause)
            open_attempt = None
    return out


def measured(session: Session, row: m.Contract, period: BillingPeriod) -> ms.EttrMeasured | None:
    """The period's ETTR under the contract's SLA (None: the contract carries none in the period)."""
    stored = sla_in_force(row, period.end)
    if stored is None:
        return None
    sla = core_sla(stored)
    attempts = contract_attempts(session, row.id, period.start, period.end)
    time = ec.period_time(attempts)
    decision = ec.decide_credit(sla, time.ettr, Decimal(0))
    return ms.EttrMeasured(period=period.label, measured=time.ettr, target=sla.target, met=decision.tier is None,
                           tier=decision.tier, credit_percent=decision.percent, attempts=len(attempts),
                           counted_s=time.counted, platform_loss_s=time.platform_loss)


# ----------------------------------------------------------------------------- credits on invoices


def with_credits(session: Session, invoices: tuple[Invoice, ...], period: BillingPeriod,
                 currency: str) -> tuple[Invoice, ...]:
    """The run's invoices with each SLA-missing contract's ``ettr_credit`` lines on its tenant's invoice.

    Charge = the contract's usage lines of the period (this run's and earlier invoices'); a contract
    is credited once per period, on the run that first bills its usage."""
    from zhisuan.market.service import core_terms  # the market builds on billing's tables

    charges: dict[str, dict[str, Decimal]] = {}
    for invoice in invoices:
        for line in invoice.lines:
            if line.kind == "usage" and line.scope.contract_id is not None:
                by_provider = charges.setdefault(line.scope.contract_id, {})
                by_provider[line.scope.provider_id] = by_provider.get(line.scope.provider_id, Decimal(0)) + line.amount
    if not charges:
        return invoices
    rows = session.execute(select(m.Contract).where(m.Contract.id.in_([int(c) for c in charges]))).scalars().all()
    due = []
    for row in sorted(rows, key=lambda r: r.id):
        stored = sla_in_force(row, period.end)
        if stored is None or already_credited(session, row.id, period):
            continue
        by_provider = dict(charges[str(row.id)])
        for provider_id, amount in earlier_charges(session, row.id, period):
            by_provider[str(provider_id)] = by_provider.get(str(provider_id), Decimal(0)) + amount
        sla = core_sla(stored)
        time = ec.period_time(contract_attempts(session, row.id, period.start, period.end))
        decision = ec.decide_credit(sla, time.ettr, max(Decimal(0), sum(by_provider.values(), Decimal(0))))
        if decision.amount > 0:
            due.append(ec.DueCredit(core_terms(row), sla, decision, by_provider))
    return ec.with_credits(invoices, due, period, currency)


def already_credited(session: Session, contract_id: int, period: BillingPeriod) -> bool:
    return session.execute(select(b.InvoiceLine.id).join(b.Invoice, b.Invoice.id == b.InvoiceLine.invoice_id).where(
        b.InvoiceLine.kind == ec.CREDIT_KIND, b.InvoiceLine.contract_id == contract_id,
        b.Invoice.period == period.label).limit(1)).first() is not None


def earlier_charges(session: Session, contract_id: int, period: BillingPeriod) -> list[tuple[int, Decimal]]:
    rows = session.execute(select(b.InvoiceLine.provider_id, b.InvoiceLine.amount)
                           .join(b.Invoice, b.Invoice.id == b.InvoiceLine.invoice_id)
                           .where(b.InvoiceLine.kind == "usage", b.InvoiceLine.contract_id == contract_id,
                                  b.Invoice.period == period.label)).all()
    return [(int(p), Decimal(a)) for p, a in rows]
