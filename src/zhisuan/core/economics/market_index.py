"""Market price index per (accelerator model, pricing model) and the breach-risk report.

Index: the capacity-weighted *median* of observed unit prices — active contracts (terms in force,
weighted by devices, or PFLOPS for PFLOPS_YEAR) and listed offer prices (weighted by listed
capacity). The median (the lowest price at which cumulative weight reaches half) resists a few
legacy contracts far from the market; the index is rounded to the fen.

Breach risk (at instant ``t``, for an active contract in its closed period, price P, index I,
penalty rate r):

* flagged when ``P > I × (1 + r)`` — the contract is more than its penalty rate above the market;
* ``remaining = remaining closed-period value at P`` (``Contract.remaining_closed_value``);
* ``replacement = remaining × I / P`` — the same capacity for the same time at the index;
* ``penalty = round_fen(r × remaining)``;
* ``tenant_saving = remaining − replacement − penalty`` (what breaking and re-leasing saves;
  positive once ``I < P × (1 − r)``, so flagging starts a little before breaking pays);
* ``provider_exposure = remaining − penalty`` (contracted revenue not covered by the penalty if
  the capacity sits idle after a break).
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from zhisuan.core.economics.contracts import Contract
from zhisuan.core.economics.money import CNY, EXACT, ONE, ZERO, check_currency, positive, round_fen
from zhisuan.core.economics.periods import require_utc
from zhisuan.core.economics.pricebook import PricingModel

IndexKey = tuple[str, PricingModel]


@dataclass(frozen=True, slots=True)
class PricePoint:
    """One observed price: from a contract (``contract:<id>``) or a listing (``listing:<id>``)."""

    model: str
    pricing_model: PricingModel
    unit_price: Decimal
    weight: Decimal
    source: str
    currency: str = CNY

    def __post_init__(self) -> None:
        object.__setattr__(self, "pricing_model", PricingModel(self.pricing_model))
        object.__setattr__(self, "unit_price", positive(self.unit_price, "unit_price"))
        object.__setattr__(self, "weight", positive(self.weight, "weight"))


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """The index for one (model, pricing model) with the spread behind it."""

    model: str
    pricing_model: PricingModel
    price: Decimal
    low: Decimal
    high: Decimal
    points: int
    weight: Decimal


def contract_price_points(contracts: Iterable[Contract], at: datetime) -> list[PricePoint]:
    """Price points of contracts holding their capacity at ``at`` (terms in force then): active
    ones, and terminated ones still in their notice period."""
    at = require_utc(at, "at")
    points = []
    for contract in contracts:
        terms = contract.terms_at(at)
        if not contract.holds_capacity_at(at):
            continue
        capacity = terms.capacity
        per_pflops = terms.pricing_model == PricingModel.PFLOPS_YEAR
        weight = capacity.pflops if per_pflops else Decimal(capacity.devices)
        assert weight is not None
        points.append(PricePoint(capacity.model, terms.pricing_model, terms.unit_price, weight,
                                 f"contract:{terms.contract_id}", terms.currency))
    return points


def _weighted_median(points: list[PricePoint]) -> Decimal:
    ordered = sorted(points, key=lambda p: p.unit_price)
    half = sum((p.weight for p in ordered), ZERO) / 2
    running = ZERO
    for point in ordered:
        running += point.weight
        if running >= half:
            return point.unit_price
    return ordered[-1].unit_price


def price_index(points: Iterable[PricePoint], currency: str = CNY) -> dict[IndexKey, IndexEntry]:
    """Weighted-median index per (model, pricing model); every point must be in ``currency``."""
    groups: dict[IndexKey, list[PricePoint]] = {}
    for point in points:
        check_currency(currency, point.currency, "currency")
        groups.setdefault((point.model, point.pricing_model), []).append(point)
    return {key: IndexEntry(key[0], key[1], round_fen(_weighted_median(group)),
                            min(p.unit_price for p in group), max(p.unit_price for p in group),
                            len(group), sum((p.weight for p in group), ZERO))
            for key, group in sorted(groups.items())}


@dataclass(frozen=True, slots=True)
class BreachRisk:
    """One flagged contract (formulas in the module docstring)."""

    contract_id: str
    tenant_id: str
    provider_ids: tuple[str, ...]
    model: str
    pricing_model: PricingModel
    contract_price: Decimal
    index_price: Decimal
    premium: Decimal
    penalty_rate: Decimal
    remaining_value: Decimal
    replacement_value: Decimal
    penalty: Decimal
    tenant_saving: Decimal
    provider_exposure: Decimal


def _assess(contract: Contract, index: IndexEntry, at: datetime) -> BreachRisk | None:
    terms = contract.terms_at(at)
    price, market = terms.unit_price, index.price
    if price <= EXACT.multiply(market, ONE + terms.penalty_rate):
        return None
    remaining_exact = contract.remaining_closed_value(at)
    remaining = round_fen(remaining_exact)
    replacement = round_fen(EXACT.divide(EXACT.multiply(remaining_exact, market), price))
    penalty = contract.penalty_at(at)
    return BreachRisk(terms.contract_id, terms.tenant_id, terms.provider_ids, terms.capacity.model,
                      terms.pricing_model, price, market, EXACT.divide(price, market) - ONE,
                      terms.penalty_rate, remaining, replacement, penalty,
                      remaining - replacement - penalty, remaining - penalty)


def breach_risk_report(contracts: Iterable[Contract], index: Mapping[IndexKey, IndexEntry],
                       at: datetime) -> tuple[BreachRisk, ...]:
    """Contracts holding their capacity (active, or in a termination's notice period) in their
    closed period, priced more than their penalty rate above the index, largest tenant saving first.
    Contracts without an index for their model are skipped."""
    at = require_utc(at, "at")
    risks = []
    for contract in contracts:
        terms = contract.terms_at(at)
        entry = index.get((terms.capacity.model, terms.pricing_model))
        in_closed = terms.start <= at < terms.closed_end
        if not contract.holds_capacity_at(at) or entry is None or not in_closed:
            continue
        risk = _assess(contract, entry, at)
        if risk is not None:
            risks.append(risk)
    return tuple(sorted(risks, key=lambda r: (-r.tenant_saving, r.contract_id)))
