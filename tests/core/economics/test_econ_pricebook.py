"""Price books: versions in force, override precedence, discounts, validation."""

from decimal import Decimal

import pytest
from tests.core.economics.econ_helpers import THROUGHPUT, book, rate, utc

from zhisuan.core.economics.errors import (
    CurrencyMismatchError,
    EconomicsError,
    InvalidAmountError,
    InvalidTimeError,
    RateNotFoundError,
    UnknownModelError,
)
from zhisuan.core.economics.metering import AllocationInterval, Throughput, UsageScope, meter_allocations
from zhisuan.core.economics.periods import billing_period
from zhisuan.core.economics.pricebook import PriceBook, PriceBookVersion, PricingModel, Tier, resolve_rate
from zhisuan.core.economics.rating import RatingContext, rate_period

D = Decimal
P = PricingModel
SCOPED = book(
    (
        utc(2024, 1, 1),
        [
            rate("A800", P.DEVICE_HOUR, "7.50"),
            rate("A800", P.DEVICE_HOUR, "7.00", region="cn-east"),
            rate("A800", P.DEVICE_HOUR, "6.50", site_id="sh-01"),
            rate("A800", P.DEVICE_HOUR, "6.00", tenant_id="t-vip"),
            rate("A800", P.DEVICE_HOUR, "5.50", tenant_id="t-vip", site_id="sh-01"),
        ],
    ),
    (utc(2024, 7, 1), [rate("A800", P.DEVICE_HOUR, "6.90")]),
)


@pytest.mark.parametrize(
    ("tenant", "site", "region", "expected"),
    [
        ("t-1", None, None, "7.50"),
        ("t-1", "bj-01", "cn-east", "7.00"),  # region (1) beats default (0)
        ("t-1", "sh-01", "cn-east", "6.50"),  # site (2) beats region (1)
        ("t-vip", "sh-01", "cn-east", "5.50"),  # tenant + site (6) beats tenant (4)
        ("t-vip", "bj-01", "cn-east", "6.00"),  # tenant (4) beats region (1)
    ],
)
def test_most_specific_rate_wins(tenant: str, site: str | None, region: str | None, expected: str) -> None:
    resolved = resolve_rate(
        SCOPED, utc(2024, 3, 1), "A800", P.DEVICE_HOUR, tenant_id=tenant, site_id=site, region=region
    )
    assert resolved.unit_price == D(expected)
    assert resolved.version.version == 1


def test_version_in_force_and_history_is_kept() -> None:
    assert SCOPED.version_at(utc(2024, 6, 30, 23, 59, 59)).version == 1
    assert SCOPED.version_at(utc(2024, 7, 1)).version == 2
    assert resolve_rate(SCOPED, utc(2024, 7, 1), "A800", P.DEVICE_HOUR, tenant_id="t-vip").unit_price == D(
        "6.90"
    )
    with pytest.raises(RateNotFoundError):
        SCOPED.version_at(utc(2023, 12, 31))
    with pytest.raises(RateNotFoundError):
        resolve_rate(SCOPED, utc(2024, 3, 1), "A800", P.SERVER_MONTH)


def test_book_validation() -> None:
    with pytest.raises(EconomicsError):  # same scope twice in one version
        book((utc(2024, 1, 1), [rate("A800", P.DEVICE_HOUR, "1"), rate("A800", P.DEVICE_HOUR, "2")]))
    with pytest.raises(InvalidAmountError):
        rate("A800", P.DEVICE_HOUR, "0")
    with pytest.raises(InvalidAmountError):
        rate("A800", P.DEVICE_HOUR, "-7.5")
    with pytest.raises(InvalidTimeError):
        SCOPED.with_version(PriceBookVersion(3, utc(2024, 6, 1), (rate("A800", P.DEVICE_HOUR, "1"),)))
    with pytest.raises(CurrencyMismatchError):
        SCOPED.with_version(
            PriceBookVersion(3, utc(2024, 8, 1), (rate("A800", P.DEVICE_HOUR, "1"),), currency="USD")
        )
    with pytest.raises(UnknownModelError):
        book((utc(2024, 1, 1), [rate("A9000", P.DEVICE_HOUR, "1")])).check_models(THROUGHPUT.dense_tflops)
    SCOPED.check_models(THROUGHPUT.dense_tflops)


def test_spot_and_reserved_discounts_resolve() -> None:
    from zhisuan.core.economics.pricebook import TermDiscount

    entry = rate(
        "H800", P.DEVICE_HOUR, "16", spot_discount=D("0.5"), reserved_discounts=(TermDiscount(12, D("0.2")),)
    )
    assert entry.discount(Tier.SPOT) == D("0.5")
    assert entry.discount(Tier.RESERVED, term_months=11) == 0
    assert entry.discount(Tier.RESERVED, term_months=12) == D("0.2")
    assert entry.discount(Tier.ON_DEMAND) == 0


def test_pflops_precision_must_match_the_throughput_table() -> None:
    # A book that prices PFLOPS at FP8 cannot be rated with a BF16 throughput table.
    fp8 = PriceBook(
        "fp8",
        (
            PriceBookVersion(
                1, utc(2024, 1, 1), (rate("H800", P.PFLOPS_YEAR, "90000"),), pflops_precision="fp8"
            ),
        ),
    )
    scope = UsageScope("t", "p", "H800", P.PFLOPS_YEAR)
    records = meter_allocations(
        [AllocationInterval("x", scope, utc(2024, 5, 1), utc(2024, 5, 2))], THROUGHPUT
    )
    with pytest.raises(EconomicsError) as err:
        rate_period(records, billing_period(2024, 5), RatingContext(fp8, THROUGHPUT))
    assert err.value.field == "pflops_precision"
    # With the FP8 table (H800 1,979 TFLOPS dense FP8): 1,979/1000 P × 86,400 s / (12 × 2,678,400 s) × 90,000
    #   = 1.979 × 90,000 / 12 / 31 = 478.79… → 478.79
    fp8_table = Throughput("fp8", {"H800": D(1979)})
    (invoice,) = rate_period(records, billing_period(2024, 5), RatingContext(fp8, fp8_table))
    assert invoice.total == D("478.79")
