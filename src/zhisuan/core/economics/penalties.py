"""Early-termination penalties on paper: the tenant's invoice and the providers' settlements. Pure.

Rule (docs/architecture.md, "Leasing economics"):

* A penalty falls due when the contract ends — the termination's effective instant, or the breach
  instant — and is billed on the tenant's invoice of the billing period containing that instant,
  as ``penalty`` lines (quantity 1, unit ``penalty``, price source ``penalty:<contract>@a0``).
  The deposit applied to it is a payment against that line, not a discount of it.
* The penalty is revenue of the contract's providers (it compensates the closed-period revenue
  they lose), split in proportion to each provider's capacity in the contract — its devices for a
  node lease, equal parts otherwise — to the fen, the leftover fen going to the largest fractional
  parts first (ties: provider order). Each provider's part is settled like its usage revenue: paid
  out at its revenue share (``rating.settle`` sees a penalty line as revenue of its provider).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import ROUND_DOWN, Decimal

from zhisuan.core.economics.contracts import Contract
from zhisuan.core.economics.errors import EconomicsError
from zhisuan.core.economics.metering import UsageScope
from zhisuan.core.economics.money import ZERO
from zhisuan.core.economics.periods import BillingPeriod
from zhisuan.core.economics.pricebook import Tier
from zhisuan.core.economics.rating import Invoice, InvoiceLine, PriceSource

FEN = Decimal("0.01")
PENALTY_UNIT = "penalty"


@dataclass(frozen=True, slots=True)
class DuePenalty:
    """A contract's penalty (CNY, to the fen) falling due; ``weights`` = capacity per provider id."""

    contract: Contract
    amount: Decimal
    weights: Mapping[str, int]


def split_by_weight(amount: Decimal, weights: Mapping[str, int], order: Sequence[str]) -> dict[str, Decimal]:
    """``amount`` split in proportion to ``weights`` to the fen; the parts sum to ``amount`` exactly."""
    total = sum(weights.get(p, 0) for p in order)
    if total <= 0:
        raise EconomicsError("a penalty needs providers with capacity", "weights")
    fen = int((amount / FEN).to_integral_value())
    exact = {p: Decimal(fen) * weights.get(p, 0) / total for p in order}
    parts = {p: int(exact[p].to_integral_value(ROUND_DOWN)) for p in order}
    leftover = fen - sum(parts.values())
    for p in sorted(order, key=lambda p: (-(exact[p] - parts[p]), order.index(p)))[:leftover]:
        parts[p] += 1
    return {p: Decimal(parts[p]) * FEN for p in order}


def penalty_lines(due: DuePenalty, period: BillingPeriod, currency: str) -> tuple[InvoiceLine, ...]:
    """The invoice lines of one due penalty, one per provider with a non-zero part (numbered 0)."""
    terms = due.contract.terms
    order = list(terms.provider_ids)
    lines = []
    for provider, part in split_by_weight(due.amount, due.weights, order).items():
        if part == ZERO:
            continue
        scope = UsageScope(terms.tenant_id, provider, terms.capacity.model, terms.pricing_model, Tier.RESERVED,
                           None, None, terms.closed_months + terms.open_months, terms.contract_id)
        lines.append(InvoiceLine(0, scope, period, 0, Decimal(1), PENALTY_UNIT, part, ZERO, part, part, part,
                                 currency, PriceSource("penalty", terms.contract_id, 0), (), kind="penalty"))
    return tuple(lines)


def with_penalties(invoices: Iterable[Invoice], penalties: Iterable[DuePenalty], period: BillingPeriod,
                   currency: str) -> tuple[Invoice, ...]:
    """The period's invoices with each due penalty appended to its tenant's invoice (a tenant
    without usage gets an invoice of its penalties); lines are renumbered after the usage lines."""
    by_tenant = {inv.tenant_id: inv for inv in invoices}
    for due in sorted(penalties, key=lambda d: d.contract.contract_id):
        tenant = due.contract.terms.tenant_id
        invoice = by_tenant.get(tenant) or Invoice(f"INV-{tenant}-{period.label}", tenant, period, currency, ())
        new = [replace(line, line_no=len(invoice.lines) + n)
               for n, line in enumerate(penalty_lines(due, period, currency), start=1)]
        by_tenant[tenant] = replace(invoice, lines=(*invoice.lines, *new))
    return tuple(by_tenant[t] for t in sorted(by_tenant))
