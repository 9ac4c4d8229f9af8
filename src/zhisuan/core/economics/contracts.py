"""Contracts: terms, calendar-month arithmetic, lifecycle, committed value and breach penalties.

A contract runs from ``start`` for ``closed_months`` (no exit without penalty) then
``open_months`` (exit with notice, no penalty): ``closed_end = start + closed_months`` and
``end = start + closed_months + open_months`` (calendar months, day clamped).

Value of a contract over ``[a, b)`` (the amount its capacity bills), prorated per second:

* ``SERVER_MONTH``:  Σ_months ``unit_price × servers × s / seconds_in_month``
  (servers = devices / devices_per_server)
* ``PFLOPS_YEAR``:   Σ_months ``unit_price × pflops / 12 × s / seconds_in_month``
* ``DEVICE_HOUR``:   ``unit_price × devices × (b − a) / 3600``

where ``s`` is the overlap in seconds with each calendar month; amendments split the window.

Early termination (or breach) at ``t`` inside the closed period costs
``penalty = round_fen(penalty_rate × value(max(t, start), closed_end))`` — the remaining
closed-period value — and nothing in the open period. The deposit is applied first:
``amount_due = max(penalty − deposit, 0)``, ``deposit_refund = max(deposit − penalty, 0)``.

Lifecycle: DRAFT → ACTIVE → EXPIRED | TERMINATED | BREACHED, or DRAFT → CANCELLED (never signed);
every transition is recorded with its instant, reason and money; anything else raises
``ContractStateError``.
"""

import dataclasses
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from zhisuan.core.economics.errors import (
    ContractStateError,
    EconomicsError,
    InvalidAmountError,
    InvalidTimeError,
)
from zhisuan.core.economics.money import CNY, EXACT, ZERO, fraction, non_negative, positive, round_fen
from zhisuan.core.economics.periods import (
    SECONDS_PER_HOUR,
    add_months,
    epoch_seconds,
    from_epoch,
    month_boundaries,
    require_utc,
    seconds_in_month,
    split_interval,
)
from zhisuan.core.economics.pricebook import CAPACITY_MODELS, PricingModel


class CapacityKind(StrEnum):
    NODES = "nodes"
    QUOTA = "quota"
    PFLOPS = "pflops"


@dataclass(frozen=True, slots=True)
class Capacity:
    """What the tenant is entitled to: named nodes, a device quota, or PFLOPS — of one model."""

    kind: CapacityKind
    model: str
    node_ids: tuple[str, ...] = ()
    devices_per_node: int = 8
    quota: int = 0
    pflops: Decimal | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", CapacityKind(self.kind))
        if not self.model:
            raise EconomicsError("must not be empty", "model")
        if self.kind == CapacityKind.NODES and (not self.node_ids or self.devices_per_node <= 0):
            raise InvalidAmountError("node capacity needs node ids and devices_per_node > 0", "node_ids")
        if self.kind == CapacityKind.QUOTA and self.quota <= 0:
            raise InvalidAmountError(f"must be > 0, got {self.quota}", "quota")
        if self.kind == CapacityKind.PFLOPS and self.pflops is None:
            raise InvalidAmountError("PFLOPS capacity needs pflops", "pflops")
        if self.pflops is not None:
            object.__setattr__(self, "pflops", positive(self.pflops, "pflops"))

    @property
    def devices(self) -> int:
        """Accelerators entitled (0 for pure PFLOPS capacity)."""
        if self.kind == CapacityKind.NODES:
            return len(self.node_ids) * self.devices_per_node
        return self.quota


@dataclass(frozen=True, slots=True)
class ContractTerms:
    """The economic terms of a contract (validated on construction)."""

    contract_id: str
    tenant_id: str
    provider_ids: tuple[str, ...]
    capacity: Capacity
    pricing_model: PricingModel
    unit_price: Decimal
    start: datetime
    closed_months: int
    open_months: int = 0
    notice_days: int = 30
    deposit: Decimal = ZERO
    penalty_rate: Decimal = Decimal("0.20")
    currency: str = CNY
    devices_per_server: int = 8

    def __post_init__(self) -> None:
        for name in ("contract_id", "tenant_id"):
            if not getattr(self, name):
                raise EconomicsError("must not be empty", name)
        if not self.provider_ids or not all(self.provider_ids):
            raise EconomicsError("at least one provider id", "provider_ids")
        object.__setattr__(self, "pricing_model", PricingModel(self.pricing_model))
        if self.pricing_model not in CAPACITY_MODELS:
            raise EconomicsError(f"{self.pricing_model} is not a lease pricing model", "pricing_model")
        object.__setattr__(self, "unit_price", positive(self.unit_price, "unit_price"))
        object.__setattr__(self, "start", require_utc(self.start, "start"))
        object.__setattr__(self, "deposit", non_negative(self.deposit, "deposit"))
        object.__setattr__(self, "penalty_rate", fraction(self.penalty_rate, "penalty_rate", allow_one=True))
        for name in ("closed_months", "open_months", "notice_days"):
            if getattr(self, name) < 0:
                raise InvalidAmountError(f"must be >= 0, got {getattr(self, name)}", name)
        if self.closed_months + self.open_months == 0:
            raise InvalidTimeError("a contract must last at least one month", "closed_months")
        self._check_capacity()

    def _check_capacity(self) -> None:
        if self.pricing_model == PricingModel.PFLOPS_YEAR and self.capacity.pflops is None:
            raise InvalidAmountError("PFLOPS_YEAR pricing needs capacity.pflops", "capacity")
        if self.pricing_model != PricingModel.PFLOPS_YEAR and self.capacity.devices <= 0:
            raise InvalidAmountError(f"{self.pricing_model} pricing needs a device count", "capacity")

    @property
    def closed_end(self) -> datetime:
        return add_months(self.start, self.closed_months)

    @property
    def end(self) -> datetime:
        return add_months(self.start, self.closed_months + self.open_months)

    def monthly_charge(self) -> Decimal:
        """Charge for one full calendar month (SERVER_MONTH and PFLOPS_YEAR only)."""
        if self.pricing_model == PricingModel.SERVER_MONTH:
            return EXACT.divide(EXACT.multiply(self.unit_price, Decimal(self.capacity.devices)),
                                Decimal(self.devices_per_server))
        if self.pricing_model == PricingModel.PFLOPS_YEAR:
            assert self.capacity.pflops is not None
            return EXACT.divide(EXACT.multiply(self.unit_price, self.capacity.pflops), Decimal(12))
        raise EconomicsError("device-hour contracts have no fixed monthly charge", "pricing_model")

    def value(self, a: int, b: int) -> Decimal:
        """Exact value of these terms over epoch seconds ``[a, b)`` (formulas in the module doc)."""
        if b <= a:
            return ZERO
        if self.pricing_model == PricingModel.DEVICE_HOUR:
            numerator = EXACT.multiply(self.unit_price, Decimal(self.capacity.devices * (b - a)))
            return EXACT.divide(numerator, Decimal(SECONDS_PER_HOUR))
        monthly, total = self.monthly_charge(), ZERO
        for x, y in split_interval(a, b, month_boundaries(a, b)):
            share = EXACT.multiply(monthly, Decimal(y - x))
            total = EXACT.add(total, EXACT.divide(share, Decimal(seconds_in_month(from_epoch(x)))))
        return total


@dataclass(frozen=True, slots=True)
class Amendment:
    """A change of terms from ``effective_at`` on; ``None`` fields are unchanged."""

    amendment_id: str
    effective_at: datetime
    unit_price: Decimal | None = None
    capacity: Capacity | None = None
    open_months: int | None = None
    note: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "effective_at", require_utc(self.effective_at, "effective_at"))
        if self.unit_price is not None:
            object.__setattr__(self, "unit_price", positive(self.unit_price, "unit_price"))

    def apply(self, terms: ContractTerms) -> ContractTerms:
        changes = {name: getattr(self, name) for name in ("unit_price", "capacity", "open_months")
                   if getattr(self, name) is not None}
        return dataclasses.replace(terms, **changes)


class ContractState(StrEnum):
    DRAFT = "draft"
    ACTIVE = "active"
    EXPIRED = "expired"
    TERMINATED = "terminated"
    BREACHED = "breached"
    CANCELLED = "cancelled"  # a draft nobody signed (e.g. an exchange match that lapsed); never held anything


@dataclass(frozen=True, slots=True)
class Transition:
    """One recorded lifecycle step, with the money it moved."""

    from_state: ContractState
    to_state: ContractState
    at: datetime
    reason: str = ""
    penalty: Decimal = ZERO
    deposit_applied: Decimal = ZERO
    amount_due: Decimal = ZERO
    deposit_refund: Decimal = ZERO


@dataclass(frozen=True)
class Contract:
    """A contract: original terms, amendments in effect order, state and transition history."""

    terms: ContractTerms
    state: ContractState = ContractState.DRAFT
    transitions: tuple[Transition, ...] = ()
    amendments: tuple[Amendment, ...] = ()

    @property
    def contract_id(self) -> str:
        return self.terms.contract_id

    @property
    def ended_at(self) -> datetime | None:
        """When billing stops: the end instant of an ended contract, else ``None``."""
        ended = self.state not in (ContractState.DRAFT, ContractState.ACTIVE)
        return self.transitions[-1].at if ended else None

    def holds_capacity_at(self, instant: datetime) -> bool:
        """Whether the contract holds its capacity at ``instant``: from its start until its end —
        for an ended contract until ``ended_at``, so a termination still in its notice period holds
        (and is priced, and keeps its nodes) until it takes effect."""
        if self.state in (ContractState.DRAFT, ContractState.CANCELLED) or instant < self.terms.start:
            return False
        ended = self.ended_at
        return instant < (ended if ended is not None else self.terms_at(instant).end)

    def terms_at(self, instant: datetime) -> ContractTerms:
        """Terms in force at ``instant``: the original terms with every amendment effective by then."""
        terms = self.terms
        for amendment in self.amendments:
            if amendment.effective_at <= instant:
                terms = amendment.apply(terms)
        return terms

    def amendments_in_force(self, instant: datetime) -> int:
        return sum(1 for a in self.amendments if a.effective_at <= instant)

    def boundaries(self) -> list[int]:
        """Epoch seconds where terms change (metering cuts usage there)."""
        return [epoch_seconds(a.effective_at) for a in self.amendments]

    def value_between(self, a: datetime, b: datetime) -> Decimal:
        """Exact value over ``[a, b)``, piecewise over amendments (each piece at its own terms)."""
        start, end = epoch_seconds(require_utc(a, "start")), epoch_seconds(require_utc(b, "end"))
        total = ZERO
        for x, y in split_interval(start, end, sorted(set(self.boundaries()))):
            total = EXACT.add(total, self.terms_at(from_epoch(x)).value(x, y))
        return total

    def committed_value(self) -> Decimal:
        """The closed-period value: what the tenant has committed to pay, exact."""
        return self.value_between(self.terms.start, self.terms_at(self.terms.start).closed_end)

    def remaining_closed_value(self, at: datetime) -> Decimal:
        """Exact value from ``at`` (or the start, if later) to the end of the closed period."""
        at = require_utc(at, "at")
        return self.value_between(max(at, self.terms.start), self.terms_at(at).closed_end)

    def penalty_at(self, at: datetime) -> Decimal:
        """``round_fen(penalty_rate × remaining closed value)`` — 0 in the open period."""
        return round_fen(EXACT.multiply(self.terms_at(at).penalty_rate, self.remaining_closed_value(at)))


def contract_month(contract: Contract, instant: datetime) -> int:
    """The 1-based contract month containing ``instant`` (month 1 starts at ``start``)."""
    instant = require_utc(instant, "instant")
    if instant < contract.terms.start:
        raise InvalidTimeError("instant is before the contract start", "instant")
    month = 0
    while add_months(contract.terms.start, month + 1) <= instant:
        month += 1
    return month + 1


def _step(contract: Contract, allowed: ContractState, to: ContractState, at: datetime,
          reason: str, penalty: Decimal = ZERO) -> Contract:
    """Record ``allowed → to``; on ending, apply the deposit to the penalty and refund the rest."""
    if contract.state != allowed:
        raise ContractStateError(f"cannot go from {contract.state} to {to}", "state")
    if to == ContractState.ACTIVE:
        step = Transition(contract.state, to, at, reason)
    else:
        deposit = contract.terms_at(at).deposit
        applied = min(deposit, penalty)
        step = Transition(contract.state, to, at, reason, penalty, applied,
                          penalty - applied, deposit - applied)
    return dataclasses.replace(contract, state=to, transitions=(*contract.transitions, step))


def activate(contract: Contract, at: datetime, reason: str = "signed") -> Contract:
    """DRAFT → ACTIVE."""
    return _step(contract, ContractState.DRAFT, ContractState.ACTIVE, require_utc(at, "at"), reason)


def cancel(contract: Contract, at: datetime, reason: str = "not signed") -> Contract:
    """DRAFT → CANCELLED: the draft was never signed, so no money moves (no deposit was taken)."""
    if contract.state != ContractState.DRAFT:
        raise ContractStateError(f"cannot go from {contract.state} to {ContractState.CANCELLED}", "state")
    step = Transition(contract.state, ContractState.CANCELLED, require_utc(at, "at"), reason)
    return dataclasses.replace(contract, state=ContractState.CANCELLED, transitions=(*contract.transitions, step))


def expire(contract: Contract, at: datetime) -> Contract:
    """ACTIVE → EXPIRED, at or after the contract end; the deposit is refunded."""
    at = require_utc(at, "at")
    if at < contract.terms_at(at).end:
        raise InvalidTimeError("a contract expires only at or after its end", "at")
    return _step(contract, ContractState.ACTIVE, ContractState.EXPIRED, at, "term ended")


def terminate(contract: Contract, notice_at: datetime, effective_at: datetime | None = None,
              reason: str = "terminated by tenant") -> Contract:
    """ACTIVE → TERMINATED with notice; penalty on the remaining closed-period value.

    ``effective_at`` defaults to ``notice_at + notice_days`` and may not be earlier than that.
    """
    notice_at = require_utc(notice_at, "notice_at")
    terms = contract.terms_at(notice_at)
    earliest = notice_at + timedelta(days=terms.notice_days)
    effective = earliest if effective_at is None else require_utc(effective_at, "effective_at")
    if effective < earliest:
        raise InvalidTimeError(f"notice period of {terms.notice_days} days ends {earliest.isoformat()}",
                               "effective_at")
    if not terms.start <= effective < terms.end:
        raise InvalidTimeError("termination must fall inside the contract term", "effective_at")
    return _step(contract, ContractState.ACTIVE, ContractState.TERMINATED, effective, reason,
                 contract.penalty_at(effective))


def breach(contract: Contract, at: datetime, reason: str = "tenant breach") -> Contract:
    """ACTIVE → BREACHED at ``at`` without notice; penalty due, deposit forfeited against it."""
    at = require_utc(at, "at")
    return _step(contract, ContractState.ACTIVE, ContractState.BREACHED, at, reason, contract.penalty_at(at))


def amend(contract: Contract, amendment: Amendment) -> Contract:
    """Record an amendment (DRAFT or ACTIVE only; effective in order, inside the term)."""
    if contract.state not in (ContractState.DRAFT, ContractState.ACTIVE):
        raise ContractStateError(f"cannot amend a {contract.state} contract", "state")
    at = amendment.effective_at
    if contract.amendments and at < contract.amendments[-1].effective_at:
        raise InvalidTimeError("amendments must take effect in order", "effective_at")
    if not contract.terms.start <= at < contract.terms_at(at).end:
        raise InvalidTimeError("amendment must take effect inside the contract term", "effective_at")
    amendment.apply(contract.terms_at(at))  # validates the amended terms
    return dataclasses.replace(contract, amendments=(*contract.amendments, amendment))
