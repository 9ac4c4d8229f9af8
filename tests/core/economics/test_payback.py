"""Payback period of a server and a site's idle rate and revenue per device-hour (core.economics.payback)."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from zhisuan.core.economics.errors import InvalidAmountError
from zhisuan.core.economics.payback import ServerInvestment, payback, site_yield

# (price, lease a month, utilisation, share, cost a month) → (revenue, net, months, yearly return)
CASES = [
    ("the module's 8×H800 example", ("2000000", "150000", "0.7", "0.85", "20000"),
     ("89250.00", "69250.00", D("28.89"), D("0.4155"))),
    ("fully used, no cut, no cost", ("1200000", "100000", "1", "1", "0"),
     ("100000.00", "100000.00", D("12.00"), D("1.0000"))),
    ("a part month is waited in full", ("1000", "300", "1", "1", "0"), ("300.00", "300.00", D("3.34"), D("3.6000"))),
    ("idle: never pays back", ("2000000", "150000", "0", "0.85", "20000"), ("0.00", "-20000.00", None, D("-0.1200"))),
    ("costs eat the revenue", ("500000", "10000", "0.5", "1", "5000"), ("5000.00", "0.00", None, D("0.0000"))),
    ("a free server", ("0", "1000", "0.5", "1", "0"), ("500.00", "500.00", D("0.00"), None)),
]


@pytest.mark.parametrize(("given", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_payback(given: tuple[str, ...], expected: tuple[str, str, D | None, D | None]) -> None:
    price, lease, utilisation, share, cost = (D(v) for v in given)
    result = payback(ServerInvestment(price, lease, utilisation, share, cost))
    assert (str(result.monthly_revenue), str(result.monthly_net), result.months, result.yearly_return) == expected


@pytest.mark.parametrize(("field", "values"), [
    ("utilisation", ("1", "1", "1.2", "1", "0")), ("provider_share", ("1", "1", "1", "-0.1", "0")),
    ("purchase_price", ("-1", "1", "1", "1", "0")), ("monthly_cost", ("1", "1", "1", "1", "-5")),
])
def test_bad_inputs_name_their_field(field: str, values: tuple[str, ...]) -> None:
    with pytest.raises(InvalidAmountError) as raised:
        ServerInvestment(*(D(v) for v in values))
    assert raised.value.field == field


@pytest.mark.parametrize(("hours", "allocated", "revenue", "idle", "per_hour"), [
    ("720", "540", "10800", D("0.2500"), D("15.00")),
    ("720", "720", "0", D("0.0000"), D("0.00")),
    ("3", "1", "10", D("0.6667"), D("3.33")),
    ("0", "0", "100", None, None),
])
def test_site_yield(hours: str, allocated: str, revenue: str, idle: D | None, per_hour: D | None) -> None:
    found = site_yield(D(hours), D(allocated), D(revenue))
    assert (found.idle_rate, found.revenue_per_device_hour) == (idle, per_hour)
