"""The exchange's conversions (hours since the epoch, floors per device-hour, contract months)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zhisuan.catalog.loader import default_catalog
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
    per_hour = pricing.floor_per_device_hour(CATALOG.get("h800"), "server_month", floor)
    assert abs(per_hour * 8 * 730 - floor) <= Decimal("0.000001") * 8 * 730 / 2


@given(PRICES)
def test_pflops_year_floor_scales_with_device_throughput(floor: Decimal) -> None:
    h100 = pricing.floor_per_device_hour(CATALOG.get("h100-sxm"), "pflops_year", floor)
    a800 = pricing.floor_per_device_hour(CATALOG.get("a800"), "pflops_year", floor)
    assert abs(h100 - floor * Decimal("0.9894") / 8760) <= Decimal("0.0000005")
    assert a800 <= h100  # 312 vs 989.4 dense BF16 TFLOPS per device


def test_pflops_pricing_needs_a_published_throughput() -> None:
    with pytest.raises(InvalidInput) as refused:
        pricing.floor_per_device_hour(CATALOG.get("ascend-910b2"), "pflops_year", Decimal(1000))
    assert refused.value.field == "pricing_model"


@pytest.mark.parametrize(("hours", "offer_closed", "months"), [
    (1, None, (1, 0)), (730, None, (1, 0)), (731, None, (2, 0)), (8760, None, (12, 0)),
    (8760, 3, (3, 9)), (720, 0, (0, 1)),
])
def test_contract_months_round_the_match_up_to_whole_months(hours: int, offer_closed: int | None,
                                                            months: tuple[int, int]) -> None:
    assert pricing.contract_months(hours, offer_closed) == months
