"""Rating: usage records → priced invoice lines → invoices, settlements and margin.

Data path (designed for millions of records): records are first *aggregated* per
(scope, billing period, price segment) by summing their integer quantities; each aggregate is
then priced once, exactly, and becomes one invoice line. A price segment is a stretch of time
with one price-book version and one set of contract terms, so the line traces to exactly one
``PriceSource`` and to the keys of every usage record behind it.

Line amount (exact, then one rounding), with q = the summed integer quantity:

* DEVICE_HOUR   ``rate × q / (1000 × 3600)``                       (q in milli-device-seconds)
* SERVER_MONTH  ``rate × q / (1000 × devices_per_server × seconds_in_month)``
* PFLOPS_YEAR   ``rate × q × TFLOPS / (10⁶ × 12 × seconds_in_month)``
* *_TOKENS      ``rate × q / 10⁶``                                  (q in tokens)
* CORE_HOUR     ``rate × q / (1000 × 3600)``                       (q in milli-core-seconds)

CPU usage (CORE_HOUR) is priced only where the book in force has a rate for it:
``split_unpriced_cpu`` sets apart the records without one, which stay recorded but uninvoiced.

``rate`` = list price × (1 − discount) from the book, or the contract's unit price (terms in
force) for usage held under a contract. ``amount = round_fen(exact)`` (ROUND_HALF_UP);
``invoice.total = Σ line amounts``. Settlement per provider: ``payout = round_fen(Σ its line
amounts × revenue_share)``; ``margin = revenue − Σ payouts`` (so payouts + margin = revenue exactly).
"""

from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from types import MappingProxyType

from zhisuan.core.economics.contracts import Contract
from zhisuan.core.economics.errors import (
    EconomicsError,
    InvalidTimeError,
    RateNotFoundError,
    UnknownModelError,
)
from zhisuan.core.economics.metering import MILLI, Throughput, UsageRecord, UsageScope
from zhisuan.core.economics.money import EXACT, ONE, ZERO, check_currency, fraction, round_fen
from zhisuan.core.economics.periods import (
    SECONDS_PER_HOUR,
    BillingPeriod,
    epoch_seconds,
    from_epoch,
    sorted_cuts,
)
from zhisuan.core.economics.pricebook import PriceBook, PricingModel, resolve_rate

UNITS = {
    PricingModel.DEVICE_HOUR: "device-hour",
    PricingModel.SERVER_MONTH: "server-month",
    PricingModel.PFLOPS_YEAR: "PFLOPS-year",
    PricingModel.INPUT_TOKENS: "million input tokens",
    PricingModel.OUTPUT_TOKENS: "million output tokens",
    PricingModel.CORE_HOUR: "core-hour",
}


@dataclass(frozen=True)
class RatingContext:
    """Everything rating needs besides usage: the book, dense throughput, and contracts by id."""

    book: PriceBook
    throughput: Throughput
    contracts: Mapping[str, Contract] = field(default_factory=lambda: MappingProxyType({}))

    def cuts(self) -> list[int]:
        """Epoch seconds where a price can change: book versions and contract amendments."""
        return sorted_cuts(self.book.boundaries(), *(c.boundaries() for c in self.contracts.values()))


@dataclass(frozen=True, slots=True)
class UsageAggregate:
    """Summed usage of one scope in one period and price segment; ``priced_at`` lies in the segment."""

    scope: UsageScope
    period: BillingPeriod
    priced_at: datetime
    quantity: int
    record_keys: Sequence[str]


@dataclass(frozen=True, slots=True)
class PriceSource:
    """Where a line's price came from: ``book:<id>@v<version>`` or ``contract:<id>@a<amendments>``."""

    kind: str
    ref: str
    version: int

    def __str__(self) -> str:
        return f"{self.kind}:{self.ref}@{'v' if self.kind == 'book' else 'a'}{self.version}"


@dataclass(frozen=True)
class InvoiceLine:
    """One priced line; ``amount`` is rounded, ``exact_amount`` is not; trace in ``usage_record_keys``."""

    line_no: int
    scope: UsageScope
    period: BillingPeriod
    usage_quantity: int
    billable_quantity: Decimal
    unit: str
    list_price: Decimal
    discount: Decimal
    unit_price: Decimal
    exact_amount: Decimal
    amount: Decimal
    currency: str
    price_source: PriceSource
    usage_record_keys: Sequence[str]
    kind: str = "usage"  # usage | penalty (``core.economics.penalties``) | ettr_credit (``ettr_credit``)
    description: str = ""  # what a non-usage line is for (e.g. an ETTR credit's measured ETTR and tier)


@dataclass(frozen=True)
class Invoice:
    """A tenant's bill for one period; ``total`` = Σ rounded line amounts."""

    invoice_id: str
    tenant_id: str
    period: BillingPeriod
    currency: str
    lines: tuple[InvoiceLine, ...]

    @property
    def total(self) -> Decimal:
        return sum((line.amount for line in self.lines), ZERO)


def _segment_start(cuts: Sequence[int], period: BillingPeriod, start: int) -> tuple[int, int]:
    segment = bisect_right(cuts, start)
    begin = max(epoch_seconds(period.start), cuts[segment - 1] if segment else epoch_seconds(period.start))
    return segment, begin


def aggregate_records(records: Iterable[UsageRecord], period: BillingPeriod,
                      cuts: Sequence[int]) -> list[UsageAggregate]:
    """Sum records of ``period`` per (scope, price segment); records of other periods are skipped.

    A record that straddles the period end or a price cut was not metered with these cuts:
    ``InvalidTimeError``.
    """
    groups: dict[tuple[UsageScope, int], tuple[int, int, list[str]]] = {}
    for record in records:
        if not period.start <= record.start < period.end:
            if record.start < period.start < record.end:
                raise InvalidTimeError(f"record {record.key} straddles {period.label}", "start")
            continue
        start, end = epoch_seconds(record.start), epoch_seconds(record.end)
        segment, begin = _segment_start(cuts, period, start)
        if end > epoch_seconds(period.end) or (end > start and bisect_right(cuts, end - 1) != segment):
            raise InvalidTimeError(f"record {record.key} straddles a period or price boundary", "end")
        quantity, _, keys = groups.get((record.scope, segment), (0, begin, []))
        keys.append(record.key)
        groups[(record.scope, segment)] = (quantity + record.quantity, begin, keys)
    return [UsageAggregate(scope, period, from_epoch(begin), quantity, tuple(keys))
            for (scope, _), (quantity, begin, keys) in groups.items()]


def _formula(pricing_model: PricingModel, quantity: int, tflops: Decimal, devices_per_server: int,
             period: BillingPeriod) -> tuple[Decimal, Decimal]:
    """(numerator, denominator) so that ``amount = rate × numerator / denominator``."""
    q = Decimal(quantity)
    if pricing_model in (PricingModel.DEVICE_HOUR, PricingModel.CORE_HOUR):
        return q, Decimal(MILLI * SECONDS_PER_HOUR)
    if pricing_model == PricingModel.SERVER_MONTH:
        return q, Decimal(MILLI * devices_per_server * period.seconds)
    if pricing_model == PricingModel.PFLOPS_YEAR:
        return EXACT.multiply(q, tflops), Decimal(MILLI * MILLI * 12 * period.seconds)
    return q, Decimal(1_000_000)


def _contract_price(agg: UsageAggregate, ctx: RatingContext) -> tuple[Decimal, Decimal, int, PriceSource]:
    contract_id = agg.scope.contract_id
    contract = ctx.contracts.get(contract_id or "")
    if contract is None:
        raise RateNotFoundError(f"unknown contract {contract_id!r}", "contract_id")
    terms = contract.terms_at(agg.priced_at)
    if terms.tenant_id != agg.scope.tenant_id or terms.pricing_model != agg.scope.pricing_model:
        raise EconomicsError(f"usage does not match contract {contract_id} (tenant/pricing model)",
                             "contract_id")
    check_currency(ctx.book.currency, terms.currency, "currency")
    source = PriceSource("contract", terms.contract_id, contract.amendments_in_force(agg.priced_at))
    return terms.unit_price, ZERO, terms.devices_per_server, source


def price_aggregate(agg: UsageAggregate, ctx: RatingContext, line_no: int = 0) -> InvoiceLine:
    """Price one aggregate into an invoice line (formulas in the module docstring)."""
    scope = agg.scope
    version = ctx.book.version_at(agg.priced_at)
    if scope.contract_id is not None:
        list_price, discount, per_server, source = _contract_price(agg, ctx)
    else:
        rate = resolve_rate(ctx.book, agg.priced_at, scope.model, scope.pricing_model,
                            tenant_id=scope.tenant_id, site_id=scope.site_id, region=scope.region,
                            tier=scope.tier, term_months=scope.term_months)
        list_price, discount, per_server = rate.entry.unit_price, rate.discount, version.devices_per_server
        source = PriceSource("book", ctx.book.book_id, version.version)
    tflops = ZERO
    if scope.pricing_model == PricingModel.PFLOPS_YEAR:
        if ctx.throughput.precision != version.pflops_precision:
            raise EconomicsError(f"throughput is {ctx.throughput.precision}, book prices PFLOPS at "
                                 f"{version.pflops_precision}", "pflops_precision")
        tflops = ctx.throughput.tflops(scope.model)
    unit_price = EXACT.multiply(list_price, ONE - discount)
    numerator, denominator = _formula(scope.pricing_model, agg.quantity, tflops, per_server, agg.period)
    exact = EXACT.divide(EXACT.multiply(unit_price, numerator), denominator)
    return InvoiceLine(line_no, scope, agg.period, agg.quantity, EXACT.divide(numerator, denominator),
                       UNITS[scope.pricing_model], list_price, discount, unit_price, exact, round_fen(exact),
                       ctx.book.currency, source, agg.record_keys)


def _line_order(agg: UsageAggregate) -> tuple[str, ...]:
    s = agg.scope
    return (s.provider_id, s.model, s.pricing_model, s.tier, s.site_id or "", s.region or "",
            s.contract_id or "", str(s.term_months), agg.priced_at.isoformat())


def invoices_from_aggregates(aggregates: Iterable[UsageAggregate], period: BillingPeriod,
                             ctx: RatingContext) -> tuple[Invoice, ...]:
    """Price aggregates and gather them into one invoice per tenant (lines in a stable order)."""
    by_tenant: dict[str, list[UsageAggregate]] = {}
    for agg in aggregates:
        by_tenant.setdefault(agg.scope.tenant_id, []).append(agg)
    invoices = []
    for tenant in sorted(by_tenant):
        ordered = sorted(by_tenant[tenant], key=_line_order)
        lines = tuple(price_aggregate(agg, ctx, n) for n, agg in enumerate(ordered, start=1))
        invoices.append(Invoice(f"INV-{tenant}-{period.label}", tenant, period, ctx.book.currency, lines))
    return tuple(invoices)


def split_unpriced_cpu(records: Iterable[UsageRecord], book: PriceBook) -> tuple[list[UsageRecord],
                                                                                  list[UsageRecord]]:
    """(records to rate, CPU records no rate of ``book`` prices): a CORE_HOUR record is priced only
    if the version in force at its start has a rate for its scope; every other record is rated
    (and a missing rate for it stays an error)."""
    priced, unpriced = [], []
    for record in records:
        scope = record.scope
        if scope.pricing_model == PricingModel.CORE_HOUR and scope.contract_id is None:
            try:
                resolve_rate(book, record.start, scope.model, scope.pricing_model, tenant_id=scope.tenant_id,
                             site_id=scope.site_id, region=scope.region)
            except EconomicsError:
                unpriced.append(record)
                continue
        priced.append(record)
    return priced, unpriced


def rate_period(records: Iterable[UsageRecord], period: BillingPeriod,
                ctx: RatingContext) -> tuple[Invoice, ...]:
    """All invoices of ``period`` from usage records (records of other periods are ignored)."""
    return invoices_from_aggregates(aggregate_records(records, period, ctx.cuts()), period, ctx)


@dataclass(frozen=True, slots=True)
class Settlement:
    """A provider's payout for a period: ``payout = round_fen(revenue × share)``."""

    provider_id: str
    period: BillingPeriod
    revenue: Decimal
    share: Decimal
    payout: Decimal
    lines: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class PeriodSummary:
    """Revenue, provider payouts and platform margin of one period (``margin = revenue − payouts``)."""

    period: BillingPeriod
    currency: str
    revenue: Decimal
    payouts: Decimal
    margin: Decimal
    settlements: tuple[Settlement, ...]


def settle(invoices: Sequence[Invoice], period: BillingPeriod, revenue_shares: Mapping[str, Decimal],
           currency: str = "CNY") -> PeriodSummary:
    """Settle a period: one ``Settlement`` per provider with revenue, then the platform margin."""
    revenue_by: dict[str, Decimal] = {}
    refs: dict[str, list[tuple[str, int]]] = {}
    for invoice in invoices:
        check_currency(currency, invoice.currency, "currency")
        if invoice.period != period:
            raise InvalidTimeError(f"invoice {invoice.invoice_id} is not for {period.label}", "period")
        for line in invoice.lines:
            provider = line.scope.provider_id
            revenue_by[provider] = revenue_by.get(provider, ZERO) + line.amount
            refs.setdefault(provider, []).append((invoice.invoice_id, line.line_no))
    settlements = []
    for provider in sorted(revenue_by):
        if provider not in revenue_shares:
            raise UnknownModelError(f"no revenue share for provider {provider!r}", "provider_id")
        share = fraction(revenue_shares[provider], f"revenue_shares[{provider}]", allow_one=True)
        payout = round_fen(EXACT.multiply(revenue_by[provider], share))
        settlements.append(Settlement(provider, period, revenue_by[provider], share, payout,
                                      tuple(refs[provider])))
    revenue = sum(revenue_by.values(), ZERO)
    payouts = sum((s.payout for s in settlements), ZERO)
    return PeriodSummary(period, currency, revenue, payouts, revenue - payouts, tuple(settlements))
