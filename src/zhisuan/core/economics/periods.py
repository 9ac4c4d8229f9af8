"""Time: UTC instants, calendar billing months, per-second proration.

Rules:

* Every datetime must be timezone-aware; it is normalised to UTC. Naive datetimes are rejected.
* Metering is per second: an instant is truncated to the whole second (``epoch_seconds``), and a
  duration is ``epoch_seconds(end) − epoch_seconds(start)``. Truncating the *endpoints* (not the
  durations) keeps splitting additive: cutting an interval at any whole-second boundary never
  gains or loses a second.
* Billing periods are UTC calendar months ``[YYYY-MM-01T00:00Z, next month)``.
* Proration of monthly (and yearly ÷ 12) prices is per second against the *calendar* month:
  ``charge = monthly_price × seconds_used / seconds_in_that_month`` — so a full February costs the
  same as a full March, and half of February (14 days) is exactly half the monthly price.
* ``add_months`` clamps the day to the target month's end (Jan 31 + 1 month = Feb 29 in 2024).
"""

import calendar
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from zhisuan.core.economics.errors import InvalidTimeError

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SECOND = timedelta(seconds=1)
SECONDS_PER_HOUR = 3600


def require_utc(value: object, field: str) -> datetime:
    """Return ``value`` as a UTC datetime; reject non-datetimes and naive datetimes."""
    if not isinstance(value, datetime):
        raise InvalidTimeError(f"must be a datetime, not {type(value).__name__}", field)
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidTimeError("naive datetime; pass a timezone-aware UTC datetime", field)
    return value.astimezone(UTC)


def require_order(start: datetime, end: datetime, field: str = "end") -> None:
    """Raise unless ``start < end``."""
    if not start < end:
        raise InvalidTimeError(f"end {end.isoformat()} is not after start {start.isoformat()}", field)


def epoch_seconds(value: datetime) -> int:
    """Whole seconds since the Unix epoch, truncated (floor) — the metering clock."""
    return (value - EPOCH) // SECOND


def from_epoch(seconds: int) -> datetime:
    """The UTC datetime of an epoch second."""
    return EPOCH + timedelta(seconds=int(seconds))


def month_start(value: datetime) -> datetime:
    """The first instant of ``value``'s UTC calendar month."""
    return datetime(value.year, value.month, 1, tzinfo=UTC)


def add_months(value: datetime, months: int) -> datetime:
    """``value`` shifted by ``months`` calendar months, day clamped to the target month's end."""
    index = value.year * 12 + (value.month - 1) + months
    year, month = divmod(index, 12)
    day = min(value.day, calendar.monthrange(year, month + 1)[1])
    return value.replace(year=year, month=month + 1, day=day)


def seconds_in_month(value: datetime) -> int:
    """Seconds in the calendar month containing ``value`` (2,419,200 … 2,678,400)."""
    return calendar.monthrange(value.year, value.month)[1] * 86_400


def month_boundaries(start: int, end: int) -> list[int]:
    """Epoch seconds of every month start strictly inside ``(start, end)``."""
    result: list[int] = []
    cursor = add_months(month_start(from_epoch(start)), 1)
    while (point := epoch_seconds(cursor)) < end:
        result.append(point)
        cursor = add_months(cursor, 1)
    return result


def split_interval(start: int, end: int, cuts: Sequence[int]) -> list[tuple[int, int]]:
    """Split ``[start, end)`` at every sorted cut strictly inside it; pieces are contiguous."""
    pieces: list[tuple[int, int]] = []
    cursor = start
    for cut in cuts[bisect_right(cuts, start):]:
        if cut >= end:
            break
        pieces.append((cursor, cut))
        cursor = cut
    pieces.append((cursor, end))
    return pieces


def sorted_cuts(*groups: Iterable[int]) -> list[int]:
    """Merge several collections of epoch-second cut points into one sorted, deduplicated list."""
    return sorted({int(point) for group in groups for point in group})


@dataclass(frozen=True, slots=True)
class BillingPeriod:
    """A UTC calendar month ``[start, end)``; ``label`` is ``YYYY-MM``."""

    start: datetime
    end: datetime

    @property
    def label(self) -> str:
        return f"{self.start.year:04d}-{self.start.month:02d}"

    @property
    def seconds(self) -> int:
        return epoch_seconds(self.end) - epoch_seconds(self.start)

    def contains(self, instant: datetime) -> bool:
        return self.start <= instant < self.end


def billing_period(year: int, month: int) -> BillingPeriod:
    """The billing period of calendar month ``year-month`` (UTC)."""
    if not 1 <= month <= 12:
        raise InvalidTimeError(f"month must be 1..12, got {month}", "month")
    start = datetime(year, month, 1, tzinfo=UTC)
    return BillingPeriod(start, add_months(start, 1))


def period_of(instant: datetime) -> BillingPeriod:
    """The billing period containing ``instant``."""
    instant = require_utc(instant, "instant")
    return billing_period(instant.year, instant.month)


# Budget periods: a key's or tenant's token and money budget counts usage within one period and starts
# again from zero at the next period's first instant (UTC). "monthly" = the billing period (calendar
# month); "none" = one period forever (the budget never resets).
BUDGET_PERIODS = ("monthly", "none")
DEFAULT_BUDGET_PERIOD = "monthly"


@dataclass(frozen=True, slots=True)
class BudgetWindow:
    """The budget period containing an instant: ``label`` names its counter, ``end`` (None = never) is
    when the next one starts."""

    label: str
    end: datetime | None


def budget_window(period: str, instant: datetime) -> BudgetWindow:
    """The ``period`` ("monthly" or "none") budget window containing ``instant``."""
    instant = require_utc(instant, "instant")
    if period == "monthly":
        month = period_of(instant)
        return BudgetWindow(month.label, month.end)
    if period == "none":
        return BudgetWindow("all", None)
    raise InvalidTimeError(f"unknown budget period '{period}'; known: {list(BUDGET_PERIODS)}", "budget_period")
