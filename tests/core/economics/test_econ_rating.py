"""Rating worked examples: invoices, traces, price-book changes, PFLOPS vs card-hour, settlements.

All figures computed by hand in the comments; rounding is per line, half up, to the fen.
"""

from decimal import Decimal

import pytest
from tests.core.economics.econ_helpers import THROUGHPUT, book, rate, utc

from zhisuan.core.economics.contracts import Capacity, CapacityKind, Contract, ContractTerms, activate
from zhisuan.core.economics.errors import CurrencyMismatchError, RateNotFoundError, UnknownModelError
from zhisuan.core.economics.metering import (
    AllocationInterval,
    TokenEvent,
    UsageScope,
    meter_allocations,
    meter_tokens,
)
from zhisuan.core.economics.periods import billing_period
from zhisuan.core.economics.pricebook import PriceBookVersion, PricingModel, TermDiscount, Tier
from zhisuan.core.economics.rating import Invoice, RatingContext, rate_period, settle

D = Decimal
P = PricingModel
PUBLIC = book(
    (
        utc(2024, 1, 1),
        [
            rate("A800", P.DEVICE_HOUR, "7.50"),
            rate("A800", P.SERVER_MONTH, "75000"),
            rate("Ascend910B", P.DEVICE_HOUR, "9.00"),
            rate("Ascend910B", P.PFLOPS_YEAR, "180000"),
            rate("H800", P.DEVICE_HOUR, "16.00"),
            rate("qwen2.5-72b", P.INPUT_TOKENS, "4.00"),
            rate("qwen2.5-72b", P.OUTPUT_TOKENS, "12.00"),
        ],
    )
)
CTX = RatingContext(PUBLIC, THROUGHPUT)


def one_invoice(records: object, year: int, month: int, ctx: RatingContext = CTX) -> Invoice:
    (invoice,) = rate_period(records, billing_period(year, month), ctx)  # type: ignore[arg-type]
    return invoice


def test_per_second_metering_across_a_month_boundary() -> None:
    # 8×A800 on demand at 7.50 CNY/card-hour, 2024-01-31 22:00:00 → 2024-02-01 02:00:30.
    #   January:  2 h × 8 cards = 16 card-hours × 7.50                      = 120.00
    #   February: 7,230 s × 8 = 57,840 card-seconds = 16.0666… card-hours × 7.50 = 120.50
    records = meter_allocations(
        [
            AllocationInterval(
                "a-1",
                UsageScope("t-lab", "p-bj", "A800"),
                utc(2024, 1, 31, 22),
                utc(2024, 2, 1, 2, 0, 30),
                8_000,
            )
        ],
        THROUGHPUT,
    )
    jan, feb = one_invoice(records, 2024, 1), one_invoice(records, 2024, 2)
    assert (jan.total, feb.total) == (D("120.00"), D("120.50"))
    assert feb.lines[0].billable_quantity.quantize(D("0.0001")) == D("16.0667")
    assert list(jan.lines[0].usage_record_keys) == [records[0].key]
    assert list(feb.lines[0].usage_record_keys) == [records[1].key]
    assert str(feb.lines[0].price_source) == "book:public@v1"


def test_price_book_change_mid_period() -> None:
    # H800 16.00 → 12.00 CNY/card-hour from 2024-03-16 00:00 (version 2). 2 cards all of March:
    #   1–15 March: 15 d × 24 h × 2 = 720 card-hours × 16.00 = 11,520.00 (book v1)
    #   16–31 March: 16 d × 24 h × 2 = 768 card-hours × 12.00 =  9,216.00 (book v2)
    #   invoice total                                           20,736.00
    changed = PUBLIC.with_version(
        PriceBookVersion(2, utc(2024, 3, 16), (rate("H800", P.DEVICE_HOUR, "12.00"),))
    )
    ctx = RatingContext(changed, THROUGHPUT)
    interval = AllocationInterval(
        "a-7", UsageScope("t-ai", "p-sh", "H800"), utc(2024, 2, 1), utc(2024, 4, 1), 2_000
    )
    records = meter_allocations([interval], THROUGHPUT, cuts=ctx.cuts())
    march = one_invoice(records, 2024, 3, ctx)
    assert [(str(x.price_source), x.amount) for x in march.lines] == [
        ("book:public@v1", D("11520.00")),
        ("book:public@v2", D("9216.00")),
    ]
    assert march.total == D("20736.00")
    # February (29 days × 24 × 2 = 1,392 card-hours) still prices with v1: 1,392 × 16 = 22,272.00.
    assert one_invoice(records, 2024, 2, ctx).total == D("22272.00")
    # Version 2 has no A800 rate: lookups after 2024-03-16 fail loudly rather than fall back.
    with pytest.raises(RateNotFoundError):
        one_invoice(
            meter_allocations(
                [
                    AllocationInterval(
                        "a-8", UsageScope("t-ai", "p-sh", "A800"), utc(2024, 4, 1), utc(2024, 4, 2)
                    )
                ],
                THROUGHPUT,
            ),
            2024,
            4,
            ctx,
        )


def test_pflops_year_lease_against_card_hours_on_ascend_910b() -> None:
    # 20 PFLOPS ≈ 20,000 / 313 = 63.9 → 64 Ascend 910B cards = 64 × 313 = 20,032 TFLOPS (20.032 P).
    # June 2024 (30 days = 720 h), the 64 cards held all month:
    #   per card-hour at 9.00:        64 × 720 × 9.00               = 414,720.00
    #   per PFLOPS-year at 180,000:   20.032 P × 180,000 / 12        = 300,480.00 (metered PFLOPS)
    #   a 20-PFLOPS contract:         20 × 180,000 / 12              = 300,000.00 (contracted PFLOPS)
    # Break-even card-hour price: 300,480 / 46,080 card-hours ≈ 6.52 CNY — below it, card-hours win.
    june = (utc(2024, 6, 1), utc(2024, 7, 1))
    hourly = UsageScope("t-llm", "p-gz", "Ascend910B", P.DEVICE_HOUR)
    yearly = UsageScope("t-llm", "p-gz", "Ascend910B", P.PFLOPS_YEAR)
    lease = activate(
        Contract(
            ContractTerms(
                "C-910B",
                "t-llm",
                ("p-gz",),
                Capacity(CapacityKind.PFLOPS, "Ascend910B", pflops=D(20)),
                P.PFLOPS_YEAR,
                D(180_000),
                utc(2024, 6, 1),
                closed_months=12,
            )
        ),
        utc(2024, 5, 20),
    )
    per_card = one_invoice(
        meter_allocations([AllocationInterval("h", hourly, *june, 64_000)], THROUGHPUT), 2024, 6
    )
    per_p = one_invoice(
        meter_allocations([AllocationInterval("y", yearly, *june, 64_000)], THROUGHPUT), 2024, 6
    )
    assert per_card.total == D("414720.00")
    assert per_p.total == D("300480.00")
    assert per_p.lines[0].billable_quantity.quantize(D("1e-9")) == D("1.669333333")  # 20.032 / 12 P-years
    assert lease.value_between(*june) == D("300000")


def test_server_month_prorated_per_second_in_february() -> None:
    # 8×A800 at 75,000 per server-month, held 14.5 days of February 2024 (29 days):
    #   75,000 × 14.5/29 = 37,500.00
    scope = UsageScope("t-lab", "p-bj", "A800", P.SERVER_MONTH)
    records = meter_allocations(
        [AllocationInterval("s", scope, utc(2024, 2, 1), utc(2024, 2, 15, 12), 8_000)], THROUGHPUT
    )
    assert one_invoice(records, 2024, 2).total == D("37500.00")


def test_contract_priced_usage_month_14_of_the_a800_lease() -> None:
    # The A800 contract of test_econ_contracts (75,000/server-month) held by its allocation until the
    # termination on 2025-02-15: February 2025 bills 14/28 × 75,000 = 37,500.00 at the contract price,
    # even though the public book also lists A800 server-months (it is not used for contract usage).
    terms = ContractTerms(
        "C-A800",
        "t-lab",
        ("p-bj",),
        Capacity(CapacityKind.NODES, "A800", ("n7",)),
        P.SERVER_MONTH,
        D(75_000),
        utc(2024, 1, 1),
        36,
        24,
    )
    ctx = RatingContext(PUBLIC, THROUGHPUT, {"C-A800": activate(Contract(terms), utc(2024, 1, 1))})
    scope = UsageScope("t-lab", "p-bj", "A800", P.SERVER_MONTH, Tier.RESERVED, contract_id="C-A800")
    records = meter_allocations(
        [AllocationInterval("c", scope, utc(2024, 1, 1), utc(2025, 2, 15), 8_000)], THROUGHPUT
    )
    feb = one_invoice(records, 2025, 2, ctx)
    assert feb.total == D("37500.00") and str(feb.lines[0].price_source) == "contract:C-A800@a0"
    assert one_invoice(records, 2024, 7, ctx).total == D("75000.00")


def test_discounts_overrides_and_tokens() -> None:
    # A800 7.50/card-hour; spot −40% → 4.50; reserved ≥12 months −15% → 6.375; tenant t-vip override 6.80.
    entries = [
        rate(
            "A800",
            P.DEVICE_HOUR,
            "7.50",
            spot_discount=D("0.40"),
            reserved_discounts=(TermDiscount(12, D("0.15")), TermDiscount(36, D("0.30"))),
        ),
        rate("A800", P.DEVICE_HOUR, "6.80", tenant_id="t-vip"),
        rate("qwen", P.INPUT_TOKENS, "4.00"),
        rate("qwen", P.OUTPUT_TOKENS, "12.00"),
    ]
    ctx = RatingContext(book((utc(2024, 1, 1), entries)), THROUGHPUT)
    hour = (utc(2024, 5, 1, 10), utc(2024, 5, 1, 11))
    cases = [
        (UsageScope("t", "p", "A800", tier=Tier.SPOT), "4.50"),
        (UsageScope("t", "p", "A800", tier=Tier.RESERVED, term_months=12), "6.38"),  # 6.375 → 6.38
        (UsageScope("t", "p", "A800", tier=Tier.RESERVED, term_months=40), "5.25"),
        (UsageScope("t-vip", "p", "A800"), "6.80"),
    ]
    for scope, expected in cases:
        records = meter_allocations([AllocationInterval("x", scope, *hour)], THROUGHPUT)
        assert one_invoice(records, 2024, 5, ctx).total == D(expected), scope
    # 1,234,567 input tokens × 4.00/M = 4.938268 → 4.94; 345,678 output × 12.00/M = 4.148136 → 4.15.
    tokens = meter_tokens([TokenEvent("r1", "t", "p", "qwen", utc(2024, 5, 2), 1_234_567, 345_678)])
    assert [x.amount for x in one_invoice(tokens, 2024, 5, ctx).lines] == [D("4.94"), D("4.15")]


def test_exact_half_fen_rounds_up() -> None:
    # 1 card for 1,800 s at 0.01 CNY/card-hour = 0.005 exactly → 0.01 (half up, 四舍五入).
    ctx = RatingContext(book((utc(2024, 1, 1), [rate("A800", P.DEVICE_HOUR, "0.01")])), THROUGHPUT)
    records = meter_allocations(
        [AllocationInterval("x", UsageScope("t", "p", "A800"), utc(2024, 5, 1), utc(2024, 5, 1, 0, 30))],
        THROUGHPUT,
    )
    line = one_invoice(records, 2024, 5, ctx).lines[0]
    assert (line.exact_amount, line.amount) == (D("0.005"), D("0.01"))


def test_settlement_and_margin() -> None:
    # Provider p-bj: 8 A800 cards × 100 h × 7.50 = 6,000.00 revenue, share 85% → 5,100.00 payout.
    # Provider p-sh: 1 H800 card × 33 min 20 s = 0.5555… h × 16 = 8.888… → line 8.89; share 80%
    #   → 7.112 → payout 7.11. Revenue 6,008.89; payouts 5,107.11; margin 901.78.
    scopes = [UsageScope("t-a", "p-bj", "A800"), UsageScope("t-b", "p-sh", "H800")]
    records = meter_allocations(
        [
            AllocationInterval("1", scopes[0], utc(2024, 5, 1), utc(2024, 5, 5, 4), 8_000),
            AllocationInterval("2", scopes[1], utc(2024, 5, 1), utc(2024, 5, 1, 0, 33, 20)),
        ],
        THROUGHPUT,
    )
    period = billing_period(2024, 5)
    summary = settle(rate_period(records, period, CTX), period, {"p-bj": D("0.85"), "p-sh": D("0.80")})
    assert [(s.provider_id, s.revenue, s.payout) for s in summary.settlements] == [
        ("p-bj", D("6000.00"), D("5100.00")),
        ("p-sh", D("8.89"), D("7.11")),
    ]
    assert (summary.revenue, summary.payouts, summary.margin) == (D("6008.89"), D("5107.11"), D("901.78"))
    assert summary.settlements[0].lines == (("INV-t-a-2024-05", 1),)
    with pytest.raises(UnknownModelError):
        settle(rate_period(records, period, CTX), period, {"p-bj": D("0.85")})


def test_currency_mismatch_between_book_and_contract() -> None:
    terms = ContractTerms(
        "C-usd",
        "t",
        ("p",),
        Capacity(CapacityKind.QUOTA, "A800", quota=8),
        P.DEVICE_HOUR,
        D(2),
        utc(2024, 1, 1),
        12,
        currency="USD",
    )
    ctx = RatingContext(PUBLIC, THROUGHPUT, {"C-usd": Contract(terms)})
    scope = UsageScope("t", "p", "A800", contract_id="C-usd")
    records = meter_allocations(
        [AllocationInterval("u", scope, utc(2024, 5, 1), utc(2024, 5, 2))], THROUGHPUT
    )
    with pytest.raises(CurrencyMismatchError):
        one_invoice(records, 2024, 5, ctx)
