"""Conversions the exchange needs before it asks the matcher: hours, floors and throughput factors.

Times. The matcher counts whole hours since the Unix epoch (UTC): ``hours = seconds // 3600``.
Offers and requests therefore start and end on whole hours (anything else is refused).

Floors in CNY per device-hour (what the matcher compares), from the pricing model the provider chose:

* ``device_hour``:  the floor itself;
* ``server_month``: ``floor / (8 devices × 730 h)`` (a server is 8 devices; a month is 730 h, 8760/12);
* ``pflops_year``:  ``floor × per_device_PFLOPS / 8760 h``, ``per_device_PFLOPS`` = the model's effective
  BF16 TFLOPS per device / 1000.

Effective BF16 TFLOPS per device (``catalog.measurements.effective_tflops``, workload class
``training-bf16``): an operator's measured ratio × the H100 SXM5's 989.4 when one is recorded, else the
catalog's dense BF16 TFLOPS / devices per unit (``zhisuan.core.capacity``).

Throughput factors vs the H100 SXM5 (for requests in H100-equivalents): the measured ratio when one is
recorded, else dense BF16 TFLOPS per device / 989.4 (``h100_equivalents({model: 1})``). A normalised
request's amount and cap are per H100-equivalent.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal

from zhisuan.catalog.loader import Catalog
from zhisuan.catalog.measurements import effective_relative, effective_tflops
from zhisuan.catalog.models import AcceleratorModel
from zhisuan.catalog.throughput import Measurements
from zhisuan.core.economics.periods import add_months
from zhisuan.errors import InvalidInput

SECONDS_PER_HOUR = 3600
DEVICES_PER_SERVER = 8
HOURS_PER_MONTH = 730
HOURS_PER_YEAR = 8760
PRICE_PLACES = Decimal("0.000001")
FACTOR_PLACES = Decimal("0.0001")


def to_hours(instant: datetime, field: str) -> int:
    """Whole hours since the Unix epoch; 422 on ``field`` if ``instant`` is not on a whole hour."""
    seconds = int(instant.timestamp())
    if seconds % SECONDS_PER_HOUR or instant.microsecond:
        raise InvalidInput(f"{field} must be on a whole hour (UTC), not {instant.isoformat()}", field=field)
    return seconds // SECONDS_PER_HOUR


def from_hours(hours: int) -> datetime:
    return datetime.fromtimestamp(hours * SECONDS_PER_HOUR, UTC)


def per_device_pflops(catalog: Catalog, model: AcceleratorModel, measured: Measurements, field: str) -> Decimal:
    tflops = effective_tflops(catalog, model, measured)
    if tflops is None:
        raise InvalidInput(f"the catalog has no dense bf16 figure for {model.key} and no operator measured one: it "
                           f"cannot be priced per PFLOPS or normalised to H100-equivalents", field=field)
    return tflops / 1000


def floor_per_device_hour(catalog: Catalog, model: AcceleratorModel, measured: Measurements, pricing_model: str,
                          floor: Decimal) -> Decimal:
    """The floor in CNY per device-hour (rules in the module docstring), to a millionth of a yuan."""
    if pricing_model == "device_hour":
        per_hour = floor
    elif pricing_model == "server_month":
        per_hour = floor / (DEVICES_PER_SERVER * HOURS_PER_MONTH)
    else:
        per_hour = floor * per_device_pflops(catalog, model, measured, "pricing_model") / HOURS_PER_YEAR
    return per_hour.quantize(PRICE_PLACES, ROUND_HALF_UP)


def h100_factor(catalog: Catalog, model: AcceleratorModel, measured: Measurements, field: str) -> Decimal:
    """BF16 training throughput of one device of ``model`` in H100-equivalents, measured first."""
    found = effective_relative(catalog, model, measured)
    if found is None:
        raise InvalidInput(f"the catalog has no dense bf16 figure for {model.key} and no operator measured one: it "
                           f"cannot be normalised to H100-equivalents", field=field)
    return found.relative.quantize(FACTOR_PLACES, ROUND_HALF_UP)


def contract_months(start: datetime, end: datetime, offer_closed_months: int | None) -> tuple[int, int]:
    """(closed, open) months of the contract for a match leasing [start, end).

    Contracts run in whole calendar months (the contract lifecycle's unit): the term is the fewest
    months, at least one, whose calendar end (``add_months(start, n)``) is not before the match's end —
    so the contract's entitlement covers the whole lease (730 h a month fell short: a 720 h lease from
    5 February got a 672 h contract); the offer's closed months (if it named them) cap the closed part
    and the rest is open (exit with notice, no penalty)."""
    months = 1
    while add_months(start, months) < end:
        months += 1
    closed = months if offer_closed_months is None else min(offer_closed_months, months)
    return closed, months - closed
