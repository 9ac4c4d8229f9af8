"""ETTR service level of a contract and its credit: who lost the time, the period's measured ETTR, the
tier it falls in, and the credit lines on the tenant's invoice. Pure.

**Attribution.** The meter (``core.goodput.meter``) splits each attempt of a job into queueing,
restart, productive, checkpoint and lost time. Under a service level only what the platform caused
counts against it. An attempt is *ended by* the platform when a hardware/platform fault ended it
(``node_fault``, ``device_fault``, ``agent_lost``: a device error, a node or agent lost, an engine
reporting the node down); by the tenant when its program failed (``exit_nonzero``), hung (``hang``:
the platform cannot tell a program's deadlock from a fault — a hang on a cordoned node is classified
as that node's fault), or was preempted (a job on its own leased nodes is preempted only by the
tenant's own higher-class work). The next attempt is *caused by* whoever ended the previous one; the
first by the submission. Per attempt:

    part        counted in the measured time         a loss (of the platform)
    productive  yes                                   no
    checkpoint  yes (the tenant chooses how often)    no
    restart     unless caused by the tenant           when caused by the platform
    queueing    only when caused by the platform      when caused by the platform (the re-queue's wait)
    lost        unless ended by the tenant            when ended by the platform

    measured ETTR = (counted − platform losses) / counted,   rounded half up to 4 decimal places

summed over the period's attempts under the contract (none counted: no measurement, no credit).
The tenant's own queueing, its program's failures and their restarts are neither good nor bad time.

**Credit rule** (like cloud SLAs' service credits): tiers ``(below, percent)`` with ``below``
strictly descending from the target; the measured ETTR falls in the lowest tier it is *under*
(``ETTR < below``) and earns that percent of the period's contract charge, capped at
``cap_percent``. Met (ETTR ≥ target): nothing. Amount, to the fen::

    credit = round_half_up_fen(charge × min(tier percent, cap_percent) / 100)

so 0 ≤ credit ≤ round_half_up_fen(charge × cap_percent / 100) ≤ charge. The credit is split among the
contract's providers in proportion to their part of the charge (``penalties.split_by_weight``, fen
exact) and billed as negative ``ettr_credit`` lines: each provider's revenue, hence its payout at its
revenue share, falls by its part, and ``margin = revenue − payouts`` stays exact.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum

from zhisuan.core.economics.contracts import ContractTerms
from zhisuan.core.economics.errors import InvalidAmountError
from zhisuan.core.economics.metering import UsageScope
from zhisuan.core.economics.money import EXACT, ZERO, as_decimal, round_fen
from zhisuan.core.economics.penalties import split_by_weight
from zhisuan.core.economics.periods import BillingPeriod
from zhisuan.core.economics.pricebook import Tier
from zhisuan.core.economics.rating import Invoice, InvoiceLine, PriceSource
from zhisuan.core.goodput.breakdown import TimeBreakdown

CREDIT_KIND = "ettr_credit"
CREDIT_UNIT = "credit"
ETTR_PLACES = Decimal("0.0001")
HUNDRED = Decimal(100)
PLATFORM_KINDS = frozenset({"node_fault", "device_fault", "agent_lost"})


class Cause(StrEnum):
    SUBMITTED = "submitted"  # the job's first attempt
    PLATFORM = "platform"
    TENANT = "tenant"


def cause_of_failure(kind: str) -> Cause:
    """Whose loss a failed attempt's failure kind (``core.goodput.restart``) is (module docstring)."""
    return Cause.PLATFORM if kind in PLATFORM_KINDS else Cause.TENANT


@dataclass(frozen=True)
class CreditTier:
    below: Decimal
    percent: Decimal


@dataclass(frozen=True)
class EttrSla:
    """A target ratio in (0, 1], tiers from the target down, and the cap (percent of the charge)."""

    target: Decimal
    tiers: tuple[CreditTier, ...]
    cap_percent: Decimal

    def __post_init__(self) -> None:
        target = as_decimal(self.target, "target")
        if not ZERO < target <= 1:
            raise InvalidAmountError(f"must be in (0, 1], got {target}", "target")
        if not self.tiers:
            raise InvalidAmountError("at least one tier (below the target: a credit)", "tiers")
        previous: CreditTier | None = None
        for n, tier in enumerate(self.tiers):
            below, percent = as_decimal(tier.below, f"tiers.{n}.below"), as_decimal(tier.percent, f"tiers.{n}.percent")
            if n == 0 and below != target:
                raise InvalidAmountError(f"the first tier starts at the target {target}, not {below}", "tiers.0.below")
            if previous is not None and not below < previous.below:
                raise InvalidAmountError("tiers must descend (each below the previous one)", f"tiers.{n}.below")
            if not ZERO < below <= 1:
                raise InvalidAmountError(f"must be in (0, 1], got {below}", f"tiers.{n}.below")
            if not ZERO <= percent <= HUNDRED:
                raise InvalidAmountError(f"must be in [0, 100], got {percent}", f"tiers.{n}.percent")
            if previous is not None and percent < previous.percent:
                raise InvalidAmountError("a deeper miss must not credit less", f"tiers.{n}.percent")
            previous = tier
        cap = as_decimal(self.cap_percent, "cap_percent")
        if not ZERO <= cap <= HUNDRED:
            raise InvalidAmountError(f"must be in [0, 100], got {cap}", "cap_percent")


@dataclass(frozen=True)
class AttemptTime:
    """One attempt's part of its job's meter, with what caused it and what ended it (None: not a fault)."""

    time: TimeBreakdown
    caused_by: Cause = Cause.SUBMITTED
    ended_by: Cause | None = None


@dataclass(frozen=True)
class SlaTime:
    """Seconds counted for the service level and the platform's losses among them."""

    counted: float = 0.0
    platform_loss: float = 0.0

    def __add__(self, other: SlaTime) -> SlaTime:
        return SlaTime(self.counted + other.counted, self.platform_loss + other.platform_loss)

    @property
    def ettr(self) -> Decimal | None:
        """(counted − loss) / counted, half up to 4 places; None when nothing was counted."""
        if self.counted <= 0:
            return None
        exact = EXACT.divide(Decimal(self.counted) - Decimal(self.platform_loss), Decimal(self.counted))
        return exact.quantize(ETTR_PLACES, rounding=ROUND_HALF_UP)


def sla_time(attempt: AttemptTime) -> SlaTime:
    """The attempt's counted time and platform loss (the table in the module docstring)."""
    t = attempt.time
    counted = t.productive + t.checkpoint
    loss = 0.0
    if attempt.caused_by != Cause.TENANT:
        counted += t.restart
    if attempt.caused_by == Cause.PLATFORM:
        counted += t.queueing
        loss += t.restart + t.queueing
    if attempt.ended_by != Cause.TENANT:
        counted += t.lost
    if attempt.ended_by == Cause.PLATFORM:
        loss += t.lost
    return SlaTime(counted, loss)


def period_time(attempts: Iterable[AttemptTime]) -> SlaTime:
    total = SlaTime()
    for attempt in attempts:
        total = total + sla_time(attempt)
    return total


@dataclass(frozen=True)
class CreditDecision:
    measured: Decimal | None  # the period's ETTR (None: nothing counted)
    tier: int | None  # 1-based tier the ETTR fell in; None: met or not measured
    percent: Decimal  # min(tier percent, cap)
    amount: Decimal  # CNY to the fen, ≥ 0 (billed negative)


def decide_credit(sla: EttrSla, measured: Decimal | None, charge: Decimal) -> CreditDecision:
    """The credit for a period whose contract charge was ``charge`` (≥ 0) and whose ETTR was ``measured``."""
    charge = as_decimal(charge, "charge")
    if charge < 0:
        raise InvalidAmountError(f"must be >= 0, got {charge}", "charge")
    hit = None if measured is None else next(
        (n for n in range(len(sla.tiers), 0, -1) if measured < sla.tiers[n - 1].below), None)
    if hit is None:
        return CreditDecision(measured, None, ZERO, ZERO)
    percent = min(sla.tiers[hit - 1].percent, sla.cap_percent)
    return CreditDecision(measured, hit, percent, round_fen(EXACT.divide(EXACT.multiply(charge, percent), HUNDRED)))


def describe(sla: EttrSla, decision: CreditDecision) -> str:
    assert decision.measured is not None and decision.tier is not None
    tier = sla.tiers[decision.tier - 1]
    capped = f", capped at {sla.cap_percent}%" if decision.percent < tier.percent else ""
    return (f"ETTR credit: measured ETTR {decision.measured} below target {sla.target}; tier {decision.tier} "
            f"(ETTR < {tier.below}) credits {tier.percent}%{capped} of the period's contract charge")


def credit_lines(terms: ContractTerms, sla: EttrSla, decision: CreditDecision, charges: Mapping[str, Decimal],
                 period: BillingPeriod, currency: str) -> tuple[InvoiceLine, ...]:
    """The negative ``ettr_credit`` lines (numbered 0) of one contract's credit, one per provider with a
    non-zero part, split by ``charges`` (provider id → its part of the charge, CNY to the fen)."""
    if decision.amount == ZERO:
        return ()
    order: Sequence[str] = sorted(charges)
    weights = {p: int((charges[p] * 100).to_integral_value()) for p in order}
    description = describe(sla, decision)
    lines = []
    for provider, part in split_by_weight(decision.amount, weights, order).items():
        if part == ZERO:
            continue
        scope = UsageScope(terms.tenant_id, provider, terms.capacity.model, terms.pricing_model, Tier.RESERVED,
                           None, None, terms.closed_months + terms.open_months, terms.contract_id)
        lines.append(InvoiceLine(0, scope, period, 0, Decimal(1), CREDIT_UNIT, -part, ZERO, -part, -part, -part,
                                 currency, PriceSource(CREDIT_KIND, terms.contract_id, 0), (), kind=CREDIT_KIND,
                                 description=description))
    return tuple(lines)


@dataclass(frozen=True)
class DueCredit:
    """A contract's credit for a period; ``charges`` = provider id → its part of the contract's charge."""

    terms: ContractTerms
    sla: EttrSla
    decision: CreditDecision
    charges: Mapping[str, Decimal]


def with_credits(invoices: Iterable[Invoice], credits: Iterable[DueCredit], period: BillingPeriod,
                 currency: str) -> tuple[Invoice, ...]:
    """The period's invoices with each due credit's lines appended to its tenant's invoice (renumbered
    after the lines already there); a tenant without an invoice gets one of its credits."""
    by_tenant = {inv.tenant_id: inv for inv in invoices}
    for due in sorted(credits, key=lambda d: d.terms.contract_id):
        tenant = due.terms.tenant_id
        invoice = by_tenant.get(tenant) or Invoice(f"INV-{tenant}-{period.label}", tenant, period, currency, ())
        lines = credit_lines(due.terms, due.sla, due.decision, due.charges, period, currency)
        new = [replace(line, line_no=len(invoice.lines) + n) for n, line in enumerate(lines, start=1)]
        by_tenant[tenant] = replace(invoice, lines=(*invoice.lines, *new))
    return tuple(by_tenant[t] for t in sorted(by_tenant))
