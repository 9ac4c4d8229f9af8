"""What-if: replay one billing period's usage with another price book and/or utilisation.

Nothing here is new pricing: the scenario only changes the *inputs* of ``rating.rate_period``
and ``rating.settle`` (the code that prices the real invoices), so a scenario with the book in
force and factors of 1 gives the real invoices to the fen.

A scenario changes, in this order:

* the book — ``version``: price all of the period at that one version of the book (as if it had
  been in force from the period start); ``price_factor`` f: every book rate's list price
  ``p → p × f`` (1.10 = +10 %); discounts (spot, reserved terms) stay fractions of the new price.
  Contract-priced usage keeps its contract's unit price (contract terms are not the price book).
* the usage — ``usage_factor`` u: every record's quantity ``q → round_half_up(q × u)`` (an
  integer: milli-device-seconds or tokens), and its PFLOPS-seconds ``× u``.

Then rating is unchanged: records CPU no rate prices are set apart (``split_unpriced_cpu``),
the rest rated into one invoice per tenant, and settled into provider payouts and margin.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import ROUND_HALF_UP, Decimal

from zhisuan.core.economics.errors import EconomicsError
from zhisuan.core.economics.metering import UsageRecord
from zhisuan.core.economics.money import EXACT, ONE, ZERO
from zhisuan.core.economics.periods import BillingPeriod
from zhisuan.core.economics.pricebook import PriceBook
from zhisuan.core.economics.rating import Invoice, PeriodSummary, RatingContext, rate_period, settle, split_unpriced_cpu


@dataclass(frozen=True, slots=True)
class Scenario:
    """What changes: ``version`` of the book pinned for the whole period (None: as in force),
    ``price_factor`` on every book rate, ``usage_factor`` on every usage quantity."""

    version: int | None = None
    price_factor: Decimal = ONE
    usage_factor: Decimal = ONE

    def __post_init__(self) -> None:
        if not self.price_factor > ZERO:
            raise EconomicsError(f"price factor must be > 0, got {self.price_factor}", "price_factor")
        if self.usage_factor < ZERO:
            raise EconomicsError(f"usage factor must be ≥ 0, got {self.usage_factor}", "usage_factor")


@dataclass(frozen=True)
class WhatIf:
    """The invoices and the settlement (revenue, payouts, margin) the scenario would give."""

    invoices: tuple[Invoice, ...]
    summary: PeriodSummary
    unpriced_records: int  # CPU records no rate of the scenario's book prices (not invoiced)


def scenario_book(book: PriceBook, period: BillingPeriod, scenario: Scenario) -> PriceBook:
    """``book`` with the scenario's pinned version and price factor (see the module docstring)."""
    versions = book.versions
    if scenario.version is not None:
        chosen = [v for v in versions if v.version == scenario.version]
        if not chosen:
            raise EconomicsError(f"book {book.book_id} has no version {scenario.version}", "version")
        versions = (replace(chosen[0], effective_from=min(chosen[0].effective_from, period.start)),)
    if scenario.price_factor != ONE:
        versions = tuple(replace(v, rates=tuple(
            replace(r, unit_price=EXACT.multiply(r.unit_price, scenario.price_factor)) for r in v.rates))
            for v in versions)
    return PriceBook(book.book_id, versions) if versions is not book.versions else book


def scale_usage(records: Iterable[UsageRecord], factor: Decimal) -> list[UsageRecord]:
    """Every record with ``quantity × factor`` (rounded half up to an integer)."""
    if factor == ONE:
        return list(records)
    return [replace(r, quantity=int(EXACT.multiply(Decimal(r.quantity), factor).to_integral_value(ROUND_HALF_UP)),
                    pflops_seconds=EXACT.multiply(r.pflops_seconds, factor)) for r in records]


def what_if(records: Sequence[UsageRecord], period: BillingPeriod, ctx: RatingContext,
            revenue_shares: Mapping[str, Decimal], scenario: Scenario) -> WhatIf:
    """Rate ``records`` of ``period`` under ``scenario`` through the invoices' own rating code."""
    book = scenario_book(ctx.book, period, scenario)
    priced, unpriced = split_unpriced_cpu(scale_usage(records, scenario.usage_factor), book)
    scenario_ctx = RatingContext(book, ctx.throughput, ctx.contracts)
    invoices = rate_period(priced, period, scenario_ctx) if priced else ()
    return WhatIf(invoices, settle(invoices, period, revenue_shares, book.currency), len(unpriced))
