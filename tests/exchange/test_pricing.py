"""The exchange's conversions (hours since the epoch, floors per device-hour, contract months)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zhisuan.catalog.loader import default_catalog
from zhisuan.catalog.throughput import MeasuredThroughput
from zhisuan.errors import InvalidInput
from zhisuan.exchange import pricing

CATALOG = default_catalog()
PRICES = st.decimals(min_value=Decimal("0.01"), max_value=Decimal(10_000_000), places=2)


@given(st.integers(min_value=0, max_value=2_000_000))
def test_hours_round_trip(hours: int) -> None:
    assert pricing.to_hours(pricing.from_hours(hours), "start") == hours


@given(st.integers(min_value=1, max_value=3599))
def test_an_instant_off_the_hour_is_refused_naming_the_field(seconds: int) -> None:
    with pytest.raises(InvalidInput) as refused:
        pricing.to_hours(datetime(2026, 11, 2, tzinfo=UTC) + timedelta(seconds=seconds), "earliest_start")
    assert refused.value.field == "earliest_start"


@given(PRICES)
def test_server_month_floor_is_per_device_hour_of_an_8_device_730_hour_month(floor: Decimal) -> None:
    per_hour = pricing.floor_per_device_hour(CATALOG, CATALOG.get("h800"), {}, "server_month", floor)
    assert abs(per_hour * 8 * 730 - floor) <= Decimal("0.000001") * 8 * 730 / 2


@given(PRICES)
def test_pflops_year_floor_scales_with_device_throughput(floor: Decimal) -> None:
    h100 = pricing.floor_per_device_hour(CATALOG, CATALOG.get("h100-sxm"), {}, "pflops_year", floor)
    a800 = pricing.floor_per_device_hour(CATALOG, CATALOG.get("a800"), {}, "pflops_year", floor)
    assert abs(h100 - floor * Decimal("0.9894") / 8760) <= Decimal("0.0000005")
    assert a800 <= h100  # 312 vs 989.4 dense BF16 TFLOPS per device


def unpublished_bf16_model() -> str:
    return next(m.key for m in CATALOG.all() if m.per_device_tflops("bf16") is None and not m.anonymised)


def test_pflops_pricing_needs_a_published_or_measured_throughput() -> None:
    model = CATALOG.get(unpublished_bf16_model())
    with pytest.raises(InvalidInput) as refused:
        pricing.floor_per_device_hour(CATALOG, model, {}, "pflops_year", Decimal(1000))
    assert refused.value.field == "pricing_model"
    with pytest.raises(InvalidInput) as refused:
        pricing.h100_factor(CATALOG, model, {}, "models.0")
    assert refused.value.field == "models.0"
    measured = {(model.key, "training-bf16"): measurement(model.key, "0.25")}
    assert pricing.h100_factor(CATALOG, model, measured, "models.0") == Decimal("0.25")
    per_hour = pricing.floor_per_device_hour(CATALOG, model, measured, "pflops_year", Decimal(8760))
    assert per_hour == (Decimal("0.25") * Decimal("989.4") / 1000).quantize(Decimal("0.000001"))


def measurement(key: str, relative: str, workload_class: str = "training-bf16") -> MeasuredThroughput:
    return MeasuredThroughput(key, workload_class, Decimal(relative), "test-bench",  # type: ignore[arg-type]
                              datetime(2026, 12, 1, tzinfo=UTC))


@pytest.mark.parametrize("relative", ["0.1", "0.6", "1.7"])
def test_a_measured_ratio_wins_over_the_datasheet_in_factors_and_pflops_floors(relative: str) -> None:
    """An A800's datasheet factor is 312 / 989.4 ≈ 0.3153; a measured training-bf16 ratio replaces it in
    both the substitution factor and the per-device PFLOPS a pflops_year floor is converted with; a
    measurement of another workload class does not."""
    a800 = CATALOG.get("a800")
    assert pricing.h100_factor(CATALOG, a800, {}, "models.0") == Decimal("0.3153")
    measured = {(a800.key, "training-bf16"): measurement(a800.key, relative)}
    assert pricing.h100_factor(CATALOG, a800, measured, "models.0") == Decimal(relative)
    floor = pricing.floor_per_device_hour(CATALOG, a800, measured, "pflops_year", Decimal(8760 * 1000))
    assert floor == Decimal(relative) * Decimal("989.4")
    other = {(a800.key, "inference-int8"): measurement(a800.key, relative, "inference-int8")}
    assert pricing.h100_factor(CATALOG, a800, other, "models.0") == Decimal("0.3153")


@pytest.mark.parametrize(("start", "hours", "offer_closed", "months"), [
    ("2026-12-05", 1, None, (1, 0)), ("2027-01-01", 744, None, (1, 0)), ("2027-01-01", 745, None, (2, 0)),
    ("2026-12-05", 720, None, (1, 0)),  # 5 Dec + 720 h = 4 Jan, inside one calendar month (744 h)
    ("2027-02-05", 720, None, (2, 0)),  # 5 Feb + one month = 5 Mar is 672 h: too short for the lease
    ("2027-01-01", 8760, None, (12, 0)), ("2027-01-01", 8760, 3, (3, 9)), ("2026-12-05", 720, 0, (0, 1)),
])
def test_contract_months_cover_the_whole_lease_in_calendar_months(start: str, hours: int, offer_closed: int | None,
                                                                  months: tuple[int, int]) -> None:
    begins = datetime.fromisoformat(start).replace(tzinfo=UTC)
    assert pricing.contract_months(begins, begins + timedelta(hours=hours), offer_closed) == months
