"""Property tests: invoices equal the ledger priced by the book (to the fen), settlement identity,
replay idempotence. The reference pricing below is independent of ``rating``: exact ``Fraction``
arithmetic per metered piece, summed per (scope, period, book version), rounded half up."""

import random
from datetime import timedelta
from decimal import Decimal
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st
from tests.core.economics.econ_helpers import THROUGHPUT, utc

from zhisuan.core.economics.metering import AllocationInterval, UsageLedger, UsageScope, meter_allocations
from zhisuan.core.economics.periods import billing_period, epoch_seconds, seconds_in_month
from zhisuan.core.economics.pricebook import PriceBook, PriceBookVersion, PricingModel, RateEntry, Tier
from zhisuan.core.economics.rating import RatingContext, rate_period, settle

P = PricingModel
MODELS = ("A800", "H800")
PRICINGS = (P.DEVICE_HOUR, P.SERVER_MONTH, P.PFLOPS_YEAR)
T0 = utc(2024, 1, 1)
MONTHS = [(2024, m) for m in range(1, 6)]

prices = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("250000"), places=2)
discounts = st.decimals(min_value=Decimal(0), max_value=Decimal("0.9"), places=2)


@st.composite
def price_books(draw: st.DrawFn) -> PriceBook:
    offsets = sorted(draw(st.sets(st.integers(1, 120 * 24), max_size=3)))
    versions = []
    for number, hours in enumerate([0, *offsets], start=1):
        rates = tuple(
            RateEntry(m, p, draw(prices), spot_discount=draw(discounts)) for m in MODELS for p in PRICINGS
        )
        versions.append(PriceBookVersion(number, T0 + timedelta(hours=hours), rates))
    return PriceBook("prop", tuple(versions))


@st.composite
def ledgers(draw: st.DrawFn) -> list[AllocationInterval]:
    result = []
    for n in range(draw(st.integers(1, 25))):
        scope = UsageScope(
            draw(st.sampled_from(["t1", "t2", "t3"])),
            draw(st.sampled_from(["p1", "p2"])),
            draw(st.sampled_from(MODELS)),
            draw(st.sampled_from(PRICINGS)),
            draw(st.sampled_from([Tier.ON_DEMAND, Tier.SPOT])),
        )
        start = T0 + timedelta(seconds=draw(st.integers(0, 130 * 86_400)))
        end = start + timedelta(seconds=draw(st.integers(1, 40 * 86_400)))
        result.append(AllocationInterval(f"a{n}", scope, start, end, draw(st.integers(1, 16_000))))
    return result


def reference_total(intervals: list[AllocationInterval], book: PriceBook, year: int, month: int) -> Decimal:
    """Σ over (scope, version) groups of round-half-up(Σ exact piece amounts) for one month."""
    period = billing_period(year, month)
    a, b = epoch_seconds(period.start), epoch_seconds(period.end)
    edges = sorted({a, b, *(x for x in book.boundaries() if a < x < b)})
    groups: dict[tuple[object, int], Fraction] = {}
    for iv in intervals:
        for x, y in zip(edges, edges[1:], strict=False):
            seconds = min(epoch_seconds(iv.end), y) - max(epoch_seconds(iv.start), x)
            if seconds <= 0:
                continue
            version = book.version_at(period.start + timedelta(seconds=x - a))
            entry = version.entry_for(iv.scope.model, iv.scope.pricing_model)
            price = Fraction(entry.unit_price) * (
                1 - (Fraction(entry.spot_discount) if iv.scope.tier == Tier.SPOT else 0)
            )
            device_seconds = Fraction(iv.milli_devices * seconds, 1000)
            if iv.scope.pricing_model == P.DEVICE_HOUR:
                amount = price * device_seconds / 3600
            elif iv.scope.pricing_model == P.SERVER_MONTH:
                amount = price * device_seconds / (8 * seconds_in_month(period.start))
            else:
                pflops_seconds = device_seconds * Fraction(THROUGHPUT.tflops(iv.scope.model)) / 1000
                amount = price / 12 * pflops_seconds / seconds_in_month(period.start)
            key = (iv.scope, version.version)
            groups[key] = groups.get(key, Fraction(0)) + amount
    fen = sum((Fraction((g * 100 + Fraction(1, 2)).__floor__(), 100) for g in groups.values()), Fraction(0))
    return Decimal(fen.numerator) / Decimal(fen.denominator)


@settings(max_examples=60, deadline=None)
@given(price_books(), ledgers())
def test_invoice_lines_sum_to_the_ledger_priced_by_the_book(book: PriceBook, intervals: list) -> None:
    ctx = RatingContext(book, THROUGHPUT)
    records = meter_allocations(intervals, THROUGHPUT, cuts=ctx.cuts())
    assert sum(r.quantity for r in records) == sum(
        iv.milli_devices * (epoch_seconds(iv.end) - epoch_seconds(iv.start)) for iv in intervals
    )
    for year, month in MONTHS:
        invoices = rate_period(records, billing_period(year, month), ctx)
        lines = [line for invoice in invoices for line in invoice.lines]
        assert sum((line.amount for line in lines), Decimal(0)) == reference_total(
            intervals, book, year, month
        )
        exact = sum((line.exact_amount for line in lines), Decimal(0))
        assert abs(sum(i.total for i in invoices) - exact) <= Decimal("0.005") * len(lines)


@settings(max_examples=60, deadline=None)
@given(price_books(), ledgers(), st.fixed_dictionaries({"p1": discounts, "p2": discounts}))
def test_settlements_plus_margin_equal_revenue(book: PriceBook, intervals: list, shares: dict) -> None:
    ctx = RatingContext(book, THROUGHPUT)
    records = meter_allocations(intervals, THROUGHPUT, cuts=ctx.cuts())
    for year, month in MONTHS:
        period = billing_period(year, month)
        invoices = rate_period(records, period, ctx)
        summary = settle(invoices, period, shares)
        assert summary.revenue == sum((i.total for i in invoices), Decimal(0))
        assert sum((s.payout for s in summary.settlements), Decimal(0)) + summary.margin == summary.revenue
        assert all(s.payout == s.payout.quantize(Decimal("0.01")) for s in summary.settlements)


@settings(max_examples=40, deadline=None)
@given(price_books(), ledgers(), st.randoms(use_true_random=False))
def test_replaying_all_usage_events_changes_nothing(
    book: PriceBook, intervals: list, rnd: random.Random
) -> None:
    ctx = RatingContext(book, THROUGHPUT)
    records = meter_allocations(intervals, THROUGHPUT, cuts=ctx.cuts())
    ledger = UsageLedger().append(records).ledger
    replay = list(meter_allocations(intervals, THROUGHPUT, cuts=ctx.cuts()))  # metered again from scratch
    rnd.shuffle(replay)
    result = ledger.append(replay + replay[: len(replay) // 2])
    assert result.accepted == () and result.ledger.records == ledger.records
    period = billing_period(2024, 2)
    assert rate_period(result.ledger.records.values(), period, ctx) == rate_period(records, period, ctx)
