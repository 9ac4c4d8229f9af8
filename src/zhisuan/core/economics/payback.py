"""A server's payback period (回本周期) and a site's idle rate and revenue per device-hour.

Payback: a server bought at ``purchase_price`` and leased out at ``monthly_lease`` (the whole server,
per month, at full occupancy) earns, at utilisation U and after the platform's cut,

    net per month = monthly_lease · U · provider_share − monthly_cost

(``monthly_cost``: power, colocation, operations), and pays back after

    months = purchase_price / net per month      (never, if net ≤ 0)

Money stays Decimal; months are rounded up to the hundredth (a fraction of a month is still waited).
Example: 8×H800 at ¥2,000,000, leased at ¥150,000 a month, 70% utilised, provider share 0.85,
¥20,000 a month of costs: net ¥69,250 a month → 28.89 months.

Idle rate and revenue per device-hour over a period, from device-hours D (devices on the books ×
hours), allocated device-hours A (held by the ledger) and revenue R:

    idle rate = 1 − A / D        revenue per device-hour = R / D     (undefined when D = 0)
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal

from zhisuan.core.economics.errors import InvalidAmountError
from zhisuan.core.economics.money import EXACT, ONE, ZERO, round_fen

MONTH_HUNDREDTHS = Decimal("0.01")
RATIO = Decimal("0.0001")


@dataclass(frozen=True)
class ServerInvestment:
    purchase_price: Decimal
    monthly_lease: Decimal
    utilisation: Decimal
    provider_share: Decimal = ONE
    monthly_cost: Decimal = ZERO

    def __post_init__(self) -> None:
        for name in ("purchase_price", "monthly_lease", "monthly_cost"):
            if getattr(self, name) < 0:
                raise InvalidAmountError("must not be negative", name)
        for name in ("utilisation", "provider_share"):
            if not ZERO <= getattr(self, name) <= ONE:
                raise InvalidAmountError("must be between 0 and 1", name)


@dataclass(frozen=True)
class Payback:
    monthly_revenue: Decimal  # lease × utilisation × share, to the fen
    monthly_net: Decimal  # minus the monthly cost, to the fen
    months: Decimal | None  # None: never pays back (net ≤ 0)
    yearly_return: Decimal | None  # 12 · net / price, as a ratio (None for a free server)


def payback(investment: ServerInvestment) -> Payback:
    leased = EXACT.multiply(investment.monthly_lease, investment.utilisation)
    revenue = EXACT.multiply(leased, investment.provider_share)
    net = EXACT.subtract(revenue, investment.monthly_cost)
    months = (EXACT.divide(investment.purchase_price, net).quantize(MONTH_HUNDREDTHS, rounding=ROUND_CEILING)
              if net > 0 else None)
    yearly = (EXACT.divide(12 * net, investment.purchase_price).quantize(RATIO, rounding=ROUND_HALF_UP)
              if investment.purchase_price > 0 else None)
    return Payback(round_fen(revenue), round_fen(net), months, yearly)


@dataclass(frozen=True)
class SiteYield:
    idle_rate: Decimal | None
    revenue_per_device_hour: Decimal | None


def site_yield(device_hours: Decimal, allocated_hours: Decimal, revenue: Decimal) -> SiteYield:
    """Idle rate (to 0.0001) and revenue per device-hour (to the fen) over one period."""
    if device_hours <= 0:
        return SiteYield(None, None)
    idle = (ONE - EXACT.divide(allocated_hours, device_hours)).quantize(RATIO, rounding=ROUND_HALF_UP)
    return SiteYield(max(ZERO, idle), round_fen(EXACT.divide(revenue, device_hours)))
