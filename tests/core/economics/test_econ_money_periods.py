"""Money (fen rounding, coercion) and periods (UTC months, per-second cuts)."""

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from tests.core.economics.econ_helpers import utc

from zhisuan.core.economics.errors import CurrencyMismatchError, InvalidAmountError, InvalidTimeError
from zhisuan.core.economics.money import Money, as_decimal, fraction, positive, round_fen
from zhisuan.core.economics.periods import (
    add_months,
    billing_period,
    epoch_seconds,
    month_boundaries,
    period_of,
    require_utc,
    seconds_in_month,
    split_interval,
)

D = Decimal


@pytest.mark.parametrize(
    ("raw", "fen"),
    [
        ("0.005", "0.01"),  # exactly half a fen rounds UP (四舍五入), not to even
        ("0.015", "0.02"),
        ("0.025", "0.03"),  # banker's rounding would give 0.02
        ("0.0049999", "0.00"),
        ("-0.005", "-0.01"),  # half away from zero for refunds/credits
        ("1234.5650", "1234.57"),
    ],
)
def test_round_fen_is_half_up(raw: str, fen: str) -> None:
    assert round_fen(D(raw)) == D(fen)


def test_as_decimal_rejects_float_bool_nan_and_garbage() -> None:
    for bad in (0.1, True, D("NaN"), D("Infinity"), "abc", None):
        with pytest.raises(InvalidAmountError):
            as_decimal(bad, "price")
    assert as_decimal("75000", "price") == D(75000)
    assert as_decimal(3, "price") == D(3)


def test_positive_and_fraction_bounds_name_the_field() -> None:
    with pytest.raises(InvalidAmountError) as err:
        positive(D(0), "unit_price")
    assert err.value.field == "unit_price"
    with pytest.raises(InvalidAmountError):
        positive(D("-1"), "unit_price")
    with pytest.raises(InvalidAmountError):
        fraction(D(1), "discount")
    assert fraction(D(1), "share", allow_one=True) == 1


def test_money_currency_checks() -> None:
    assert Money(D("1.10")) + Money(D("2.205")) == Money(D("3.305"))
    assert (Money(D("1.10")) + Money(D("2.205"))).rounded() == Money(D("3.31"))
    with pytest.raises(CurrencyMismatchError):
        Money(D(1), "CNY") + Money(D(1), "USD")
    with pytest.raises(CurrencyMismatchError):
        Money(D(1), "yuan")


def test_require_utc_rejects_naive_and_normalises_offsets() -> None:
    with pytest.raises(InvalidTimeError) as err:
        require_utc(datetime(2024, 1, 1), "start")
    assert err.value.field == "start"
    beijing = datetime(2024, 2, 1, 8, tzinfo=timezone(timedelta(hours=8)))
    assert require_utc(beijing, "start") == utc(2024, 2, 1, 0)
    assert period_of(beijing).label == "2024-02"


def test_epoch_seconds_truncates_to_the_second() -> None:
    base = epoch_seconds(utc(2024, 1, 1))
    assert epoch_seconds(utc(2024, 1, 1) + timedelta(microseconds=999_999)) == base
    assert epoch_seconds(utc(2024, 1, 1, 0, 0, 1)) == base + 1


def test_calendar_months() -> None:
    # 2024 is a leap year: February has 29 days = 2,505,600 s; January 31 days = 2,678,400 s.
    assert seconds_in_month(utc(2024, 2, 10)) == 29 * 86_400
    assert seconds_in_month(utc(2023, 2, 10)) == 28 * 86_400
    assert billing_period(2024, 12).end == utc(2025, 1, 1)
    assert add_months(utc(2024, 1, 31), 1) == utc(2024, 2, 29)  # day clamped to month end
    assert add_months(utc(2024, 1, 1), 36) == utc(2027, 1, 1)
    with pytest.raises(InvalidTimeError):
        billing_period(2024, 13)


def test_split_interval_is_additive() -> None:
    a, b = epoch_seconds(utc(2024, 1, 31, 22)), epoch_seconds(utc(2024, 3, 1, 2))
    cuts = month_boundaries(a, b)
    assert cuts == [epoch_seconds(utc(2024, 2, 1)), epoch_seconds(utc(2024, 3, 1))]
    pieces = split_interval(a, b, cuts)
    assert [y - x for x, y in pieces] == [7_200, 29 * 86_400, 7_200]
    assert sum(y - x for x, y in pieces) == b - a
    assert split_interval(a, b, [a, b]) == [(a, b)]  # cuts on the edges do not split
