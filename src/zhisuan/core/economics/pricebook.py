"""Versioned price books: rates per accelerator model and pricing model, overrides, discounts.

Pricing models (the unit each rate is quoted in):

* ``DEVICE_HOUR`` — CNY per accelerator-hour (按卡时), metered per second:
  ``amount = rate × device_seconds / 3600``.
* ``SERVER_MONTH`` — CNY per whole server (``devices_per_server`` accelerators, default 8) per
  calendar month (整机包月), prorated per second:
  ``amount = rate × device_seconds / (devices_per_server × seconds_in_month)``.
* ``PFLOPS_YEAR`` — CNY per PFLOPS of dense throughput per year (按P计费); a year is 12 calendar
  months, each prorated per second: ``amount = rate / 12 × pflops_seconds / seconds_in_month``
  with ``pflops_seconds = device_seconds × dense_TFLOPS / 1000``.
* ``INPUT_TOKENS`` / ``OUTPUT_TOKENS`` — CNY per million tokens (MaaS): ``amount = rate × tokens / 10⁶``.
* ``CORE_HOUR`` — CNY per CPU core-hour of a hold with no accelerator (model ``cpu``: a CPU-only
  serving replica), metered per second: ``amount = rate × core_seconds / 3600``.

PFLOPS precision: capacity is normalised with the catalog's *dense BF16* throughput by default
(``pflops_precision = "bf16"``): it is the precision training runs at, every vendor we federate
(NVIDIA, Ascend, Cambricon, Hygon …) publishes a dense (non-sparse) BF16/FP16 figure, while FP8
is absent on A800/910B-class parts and sparse figures double the number without doubling the
work. A book version may choose another precision (e.g. ``"fp8"`` for an H800-only market); the
throughput table passed to metering/rating must then be at that precision (checked).

Effective unit price = ``unit_price × (1 − discount)`` where discount is the entry's spot discount
for ``Tier.SPOT``, the largest reserved-term discount whose ``min_months ≤ term`` for
``Tier.RESERVED``, and 0 on demand.

Lookup precedence (most specific wins): tenant (4) + site (2) + region (1) points; an entry
matches when each of its set keys equals the request. Equal keys in one version are rejected.
A book is a sequence of versions; the version in force at instant *t* is the last one with
``effective_from ≤ t``, so a past invoice always re-prices with the book of its time.
"""

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from zhisuan.core.economics.errors import (
    EconomicsError,
    InvalidAmountError,
    InvalidTimeError,
    RateNotFoundError,
    UnknownModelError,
)
from zhisuan.core.economics.money import CNY, EXACT, ONE, ZERO, check_currency, fraction, positive
from zhisuan.core.economics.periods import epoch_seconds, require_utc


class PricingModel(StrEnum):
    DEVICE_HOUR = "device_hour"
    SERVER_MONTH = "server_month"
    PFLOPS_YEAR = "pflops_year"
    INPUT_TOKENS = "input_tokens"
    OUTPUT_TOKENS = "output_tokens"
    CORE_HOUR = "core_hour"


CAPACITY_MODELS = (PricingModel.DEVICE_HOUR, PricingModel.SERVER_MONTH, PricingModel.PFLOPS_YEAR)
TOKEN_MODELS = (PricingModel.INPUT_TOKENS, PricingModel.OUTPUT_TOKENS)


class Tier(StrEnum):
    ON_DEMAND = "on_demand"
    SPOT = "spot"
    RESERVED = "reserved"


@dataclass(frozen=True, slots=True)
class TermDiscount:
    """Reserved-term discount: ``discount`` (fraction) for commitments of ``min_months`` or more."""

    min_months: int
    discount: Decimal

    def __post_init__(self) -> None:
        if self.min_months <= 0:
            raise InvalidAmountError(f"must be > 0, got {self.min_months}", "min_months")
        object.__setattr__(self, "discount", fraction(self.discount, "discount"))


@dataclass(frozen=True, slots=True)
class RateEntry:
    """One rate; ``tenant_id``/``site_id``/``region`` set make it an override for that scope."""

    model: str
    pricing_model: PricingModel
    unit_price: Decimal
    tenant_id: str | None = None
    site_id: str | None = None
    region: str | None = None
    spot_discount: Decimal = ZERO
    reserved_discounts: tuple[TermDiscount, ...] = ()

    def __post_init__(self) -> None:
        if not self.model:
            raise UnknownModelError("empty accelerator model", "model")
        object.__setattr__(self, "pricing_model", PricingModel(self.pricing_model))
        object.__setattr__(self, "unit_price", positive(self.unit_price, "unit_price"))
        object.__setattr__(self, "spot_discount", fraction(self.spot_discount, "spot_discount"))
        terms = sorted(self.reserved_discounts, key=lambda d: d.min_months)
        object.__setattr__(self, "reserved_discounts", tuple(terms))

    @property
    def scope(self) -> tuple[str | None, str | None, str | None]:
        return (self.tenant_id, self.site_id, self.region)

    @property
    def specificity(self) -> int:
        return 4 * (self.tenant_id is not None) + 2 * (self.site_id is not None) + (self.region is not None)

    def matches(self, tenant_id: str | None, site_id: str | None, region: str | None) -> bool:
        return all(mine is None or mine == theirs
                   for mine, theirs in zip(self.scope, (tenant_id, site_id, region), strict=True))

    def discount(self, tier: Tier, term_months: int = 0) -> Decimal:
        """The discount fraction for ``tier`` (and reserved ``term_months``)."""
        if tier == Tier.SPOT:
            return self.spot_discount
        if tier == Tier.RESERVED:
            eligible = [d.discount for d in self.reserved_discounts if d.min_months <= term_months]
            return eligible[-1] if eligible else ZERO
        return ZERO


RateKey = tuple[str, PricingModel]


@dataclass(frozen=True)
class PriceBookVersion:
    """An immutable set of rates in force from ``effective_from`` until the next version."""

    version: int
    effective_from: datetime
    rates: tuple[RateEntry, ...]
    currency: str = CNY
    devices_per_server: int = 8
    pflops_precision: str = "bf16"
    note: str = ""
    _index: dict[RateKey, tuple[RateEntry, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "effective_from", require_utc(self.effective_from, "effective_from"))
        if self.devices_per_server <= 0:
            raise InvalidAmountError(f"must be > 0, got {self.devices_per_server}", "devices_per_server")
        if not self.rates:
            raise EconomicsError("a price book version needs at least one rate", "rates")
        index: dict[RateKey, list[RateEntry]] = {}
        for entry in self.rates:
            bucket = index.setdefault((entry.model, entry.pricing_model), [])
            if any(other.scope == entry.scope for other in bucket):
                raise EconomicsError(
                    f"duplicate rate for {entry.model}/{entry.pricing_model} scope {entry.scope}", "rates")
            bucket.append(entry)
        ordered = {key: tuple(sorted(v, key=lambda e: -e.specificity)) for key, v in index.items()}
        object.__setattr__(self, "_index", ordered)

    def entry_for(self, model: str, pricing_model: PricingModel, *, tenant_id: str | None = None,
                  site_id: str | None = None, region: str | None = None) -> RateEntry:
        """The most specific entry matching the scope; ``RateNotFoundError`` if none."""
        for entry in self._index.get((model, PricingModel(pricing_model)), ()):
            if entry.matches(tenant_id, site_id, region):
                return entry
        raise RateNotFoundError(
            f"no {pricing_model} rate for model {model!r} in version {self.version}", "model")

    @property
    def models(self) -> frozenset[str]:
        return frozenset(model for model, _ in self._index)


@dataclass(frozen=True)
class PriceBook:
    """A versioned price book: versions strictly increasing in number and ``effective_from``."""

    book_id: str
    versions: tuple[PriceBookVersion, ...]

    def __post_init__(self) -> None:
        if not self.versions:
            raise EconomicsError("a price book needs at least one version", "versions")
        for before, after in zip(self.versions, self.versions[1:], strict=False):
            if after.version <= before.version:
                raise EconomicsError(f"version {after.version} not after {before.version}", "version")
            if after.effective_from <= before.effective_from:
                raise InvalidTimeError("versions must take effect in increasing order", "effective_from")
            check_currency(before.currency, after.currency, "currency")

    @property
    def currency(self) -> str:
        return self.versions[0].currency

    def version_at(self, instant: datetime) -> PriceBookVersion:
        """The version in force at ``instant`` (last with ``effective_from ≤ instant``)."""
        instant = require_utc(instant, "instant")
        chosen = None
        for candidate in self.versions:
            if candidate.effective_from > instant:
                break
            chosen = candidate
        if chosen is None:
            raise RateNotFoundError(f"book {self.book_id} has no version in force at {instant.isoformat()}",
                                    "instant")
        return chosen

    def boundaries(self) -> list[int]:
        """Epoch seconds at which a new version takes effect: metering splits usage there."""
        return [epoch_seconds(v.effective_from) for v in self.versions[1:]]

    def with_version(self, new: PriceBookVersion) -> "PriceBook":
        """A new book with ``new`` appended (validated; the old book is unchanged)."""
        return PriceBook(self.book_id, (*self.versions, new))

    def check_models(self, known_models: Collection[str]) -> None:
        """Raise ``UnknownModelError`` for a rate on a model the catalog does not know."""
        for version in self.versions:
            unknown = sorted(version.models - set(known_models))
            if unknown:
                raise UnknownModelError(f"unknown accelerator model(s) {unknown}", "model")


@dataclass(frozen=True, slots=True)
class ResolvedRate:
    """A rate as applied: the entry behind it, its book version, and the effective unit price."""

    book_id: str
    version: PriceBookVersion
    entry: RateEntry
    discount: Decimal

    @property
    def unit_price(self) -> Decimal:
        """``entry.unit_price × (1 − discount)`` — exact, unrounded."""
        return EXACT.multiply(self.entry.unit_price, ONE - self.discount)


def resolve_rate(book: PriceBook, instant: datetime, model: str, pricing_model: PricingModel, *,
                 tenant_id: str | None = None, site_id: str | None = None, region: str | None = None,
                 tier: Tier = Tier.ON_DEMAND, term_months: int = 0) -> ResolvedRate:
    """Look up the rate in force at ``instant`` for this model, pricing model, scope and tier."""
    version = book.version_at(instant)
    entry = version.entry_for(model, pricing_model, tenant_id=tenant_id, site_id=site_id, region=region)
    return ResolvedRate(book.book_id, version, entry, entry.discount(Tier(tier), term_months))
