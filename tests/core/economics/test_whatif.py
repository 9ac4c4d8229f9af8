"""What-if replays: the actual book with factors of 1 is the actual invoice to the fen; price and
usage changes move revenue, payouts and margin as computed by hand in each case."""

from decimal import Decimal

import pytest
from tests.core.economics.econ_helpers import THROUGHPUT, book, rate, utc

from zhisuan.core.economics.errors import EconomicsError
from zhisuan.core.economics.metering import AllocationInterval, TokenEvent, UsageScope, meter_allocations, meter_tokens
from zhisuan.core.economics.periods import billing_period
from zhisuan.core.economics.pricebook import PricingModel, Tier
from zhisuan.core.economics.rating import RatingContext, rate_period, settle
from zhisuan.core.economics.whatif import Scenario, what_if

D = Decimal
P = PricingModel
MARCH = billing_period(2024, 3)
# v1 from 2024-01-01: H800 16.00/card-hour (spot −40 %), tokens 4.00 / 12.00 per million;
# v2 from 2024-03-16: H800 12.00/card-hour.
BOOK = book((utc(2024, 1, 1), [rate("H800", P.DEVICE_HOUR, "16.00", spot_discount=D("0.4")),
                               rate("qwen", P.INPUT_TOKENS, "4.00"), rate("qwen", P.OUTPUT_TOKENS, "12.00")]),
            (utc(2024, 3, 16), [rate("H800", P.DEVICE_HOUR, "12.00", spot_discount=D("0.4")),
                                rate("qwen", P.INPUT_TOKENS, "4.00"), rate("qwen", P.OUTPUT_TOKENS, "12.00")]))
CTX = RatingContext(BOOK, THROUGHPUT)
SHARES = {"p-bj": D("0.7"), "p-sh": D("0.8")}
# t-a: 2 H800 on demand, 10:00:00–10:20:33 on 1 March (1,233 s × 2 = 2,466 card-s = 0.685 card-h);
# t-a: 1 H800 all of 20 March (24 card-h, at v2); t-b: 1 H800 spot 1 March 00:00–07:00 (7 card-h at 9.60);
# t-b: 1,234,567 input + 345,678 output tokens of qwen on p-sh.
RECORDS = (
    *meter_allocations([
        AllocationInterval("a-1", UsageScope("t-a", "p-bj", "H800"), utc(2024, 3, 1, 10), utc(2024, 3, 1, 10, 20, 33),
                           2_000),
        AllocationInterval("a-2", UsageScope("t-a", "p-bj", "H800"), utc(2024, 3, 20), utc(2024, 3, 21), 1_000),
        AllocationInterval("a-3", UsageScope("t-b", "p-bj", "H800", tier=Tier.SPOT), utc(2024, 3, 1),
                           utc(2024, 3, 1, 7), 1_000)], THROUGHPUT, BOOK.boundaries()),
    *meter_tokens([TokenEvent("e-1", "t-b", "p-sh", "qwen", utc(2024, 3, 5), 1_234_567, 345_678)]))


def totals(scenario: Scenario) -> tuple[dict[str, Decimal], Decimal, Decimal, Decimal]:
    found = what_if(RECORDS, MARCH, CTX, SHARES, scenario)
    s = found.summary
    return {inv.tenant_id: inv.total for inv in found.invoices}, s.revenue, s.payouts, s.margin


def test_the_actual_book_with_factors_of_one_is_the_actual_invoice_to_the_fen() -> None:
    actual = rate_period(RECORDS, MARCH, CTX)
    found = what_if(RECORDS, MARCH, CTX, SHARES, Scenario())
    assert found.invoices == actual  # every line: quantities, prices, exact and rounded amounts, traces
    assert found.summary == settle(actual, MARCH, SHARES)
    assert found.unpriced_records == 0


@pytest.mark.parametrize(("scenario", "tenants", "revenue", "payouts", "margin"), [
    # actual: t-a 0.685 h × 16 = 10.96; 24 h × 12 = 288.00 → 298.96.
    #         t-b 7 h × 9.60 = 67.20; 1.234567 × 4 = 4.938268 → 4.94; 0.345678 × 12 = 4.148136 → 4.15 → 76.29.
    #         p-bj 366.16 × 0.7 = 256.312 → 256.31; p-sh 9.09 × 0.8 = 7.272 → 7.27.
    (Scenario(), {"t-a": "298.96", "t-b": "76.29"}, "375.25", "263.58", "111.67"),
    # +10 %: 17.60 × 0.685 = 12.056 → 12.06; 13.20 × 24 = 316.80; 10.56 × 7 = 73.92;
    #        4.40 × 1.234567 = 5.4320948 → 5.43; 13.20 × 0.345678 = 4.5629496 → 4.56.
    #        p-bj 402.78 × 0.7 = 281.946 → 281.95; p-sh 9.99 × 0.8 = 7.992 → 7.99.
    (Scenario(price_factor=D("1.10")), {"t-a": "328.86", "t-b": "83.91"}, "412.77", "289.94", "122.83"),
    # v1 pinned for all March: 24 h at 16.00 = 384.00 instead of 288.00.
    #        p-bj 462.16 × 0.7 = 323.512 → 323.51.
    (Scenario(version=1), {"t-a": "394.96", "t-b": "76.29"}, "471.25", "330.78", "140.47"),
    # usage × 2: 21.92 + 576.00; 134.40 + 2.469134 × 4 = 9.876536 → 9.88 + 0.691356 × 12 = 8.296272 → 8.30.
    #        p-bj 732.32 × 0.7 = 512.624 → 512.62; p-sh 18.18 × 0.8 = 14.544 → 14.54.
    (Scenario(usage_factor=D(2)), {"t-a": "597.92", "t-b": "152.58"}, "750.50", "527.16", "223.34"),
    # usage × 0: nothing to invoice.
    (Scenario(usage_factor=D(0)), {"t-a": "0.00", "t-b": "0.00"}, "0.00", "0.00", "0.00"),
])
def test_scenarios_move_revenue_and_margin_as_computed(scenario: Scenario, tenants: dict[str, str], revenue: str,
                                                      payouts: str, margin: str) -> None:
    found = totals(scenario)
    assert found == ({t: D(v) for t, v in tenants.items()}, D(revenue), D(payouts), D(margin))


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"usage_factor": D("-0.5")}, "usage_factor"),
    ({"price_factor": D(0)}, "price_factor"),
    ({"version": 7}, "version"),
])
def test_bad_scenarios_name_their_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(EconomicsError) as caught:
        what_if(RECORDS, MARCH, CTX, SHARES, Scenario(**kwargs))  # type: ignore[arg-type]
    assert caught.value.field == field
