"""Metering: allocations and token events → append-only, idempotent usage records.

Quantities are integers so that sums are exact:

* capacity records carry ``quantity`` = milli-device-seconds (an allocation of ``milli_devices``
  = 1000 per whole accelerator, held for ``s`` whole seconds, meters ``milli_devices × s``);
  ``device_seconds = quantity / 1000`` and ``pflops_seconds = device_seconds × dense_TFLOPS / 1000``;
* token records carry ``quantity`` = tokens (one record for input, one for output tokens).

An allocation interval is cut at every UTC month start and at every extra cut (price-book version
changes, contract amendments) so that each record lies inside one billing period and one price.
Idempotency keys are deterministic — ``alloc:{allocation_id}:{piece_start_epoch}`` and
``tok:{event_id}:in|out`` — so metering the same ledger twice yields the same keys, and a replayed
event is counted once. Reusing a key with a different payload is a ``DuplicateUsageError``.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from types import MappingProxyType

from zhisuan.core.economics.errors import (
    DuplicateUsageError,
    EconomicsError,
    InvalidAmountError,
    UnknownModelError,
)
from zhisuan.core.economics.money import EXACT, ZERO, positive
from zhisuan.core.economics.periods import (
    epoch_seconds,
    from_epoch,
    month_boundaries,
    require_order,
    require_utc,
    sorted_cuts,
    split_interval,
)
from zhisuan.core.economics.pricebook import CAPACITY_MODELS, PricingModel, Tier

MILLI = 1000
MILLION = Decimal(1_000_000)


@dataclass(frozen=True, slots=True)
class Throughput:
    """Dense throughput per accelerator model, in TFLOPS at ``precision`` (e.g. ``"bf16"``)."""

    precision: str
    dense_tflops: Mapping[str, Decimal]

    def __post_init__(self) -> None:
        checked = {model: positive(value, f"dense_tflops[{model}]")
                   for model, value in self.dense_tflops.items()}
        object.__setattr__(self, "dense_tflops", MappingProxyType(checked))

    def tflops(self, model: str) -> Decimal:
        try:
            return self.dense_tflops[model]
        except KeyError:
            raise UnknownModelError(f"no {self.precision} throughput for model {model!r}", "model") from None

    def pflops_seconds(self, model: str, milli_device_seconds: int) -> Decimal:
        """``milli_device_seconds / 1000 × TFLOPS / 1000`` — exact."""
        return EXACT.divide(EXACT.multiply(Decimal(milli_device_seconds), self.tflops(model)), MILLION)


@dataclass(frozen=True, slots=True)
class UsageScope:
    """Everything that decides a price: who, whose capacity, what, how it is priced."""

    tenant_id: str
    provider_id: str
    model: str
    pricing_model: PricingModel = PricingModel.DEVICE_HOUR
    tier: Tier = Tier.ON_DEMAND
    site_id: str | None = None
    region: str | None = None
    term_months: int = 0
    contract_id: str | None = None

    def __post_init__(self) -> None:
        for name in ("tenant_id", "provider_id", "model"):
            if not getattr(self, name):
                raise EconomicsError("must not be empty", name)
        object.__setattr__(self, "pricing_model", PricingModel(self.pricing_model))
        object.__setattr__(self, "tier", Tier(self.tier))
        if self.term_months < 0:
            raise InvalidAmountError(f"must be >= 0, got {self.term_months}", "term_months")


@dataclass(frozen=True, slots=True)
class AllocationInterval:
    """A closed Allocation ledger row: ``milli_devices`` held in ``scope`` over ``[start, end)`` (for a
    CORE_HOUR scope: milli-cores of CPU)."""

    allocation_id: str
    scope: UsageScope
    start: datetime
    end: datetime
    milli_devices: int = MILLI

    def __post_init__(self) -> None:
        if not self.allocation_id:
            raise EconomicsError("must not be empty", "allocation_id")
        object.__setattr__(self, "start", require_utc(self.start, "start"))
        object.__setattr__(self, "end", require_utc(self.end, "end"))
        require_order(self.start, self.end)
        if self.milli_devices <= 0:
            raise InvalidAmountError(f"must be > 0, got {self.milli_devices}", "milli_devices")
        if self.scope.pricing_model not in (*CAPACITY_MODELS, PricingModel.CORE_HOUR):
            raise EconomicsError(f"{self.scope.pricing_model} is not a capacity pricing model",
                                 "pricing_model")


@dataclass(frozen=True, slots=True)
class TokenEvent:
    """A gateway event: tokens consumed at ``at``; ``event_id`` is the gateway's idempotency key."""

    event_id: str
    tenant_id: str
    provider_id: str
    model: str
    at: datetime
    input_tokens: int
    output_tokens: int

    def __post_init__(self) -> None:
        if not self.event_id:
            raise EconomicsError("must not be empty", "event_id")
        object.__setattr__(self, "at", require_utc(self.at, "at"))
        for name in ("input_tokens", "output_tokens"):
            if getattr(self, name) < 0:
                raise InvalidAmountError(f"must be >= 0, got {getattr(self, name)}", name)


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """An append-only metered quantity; ``key`` is its idempotency key."""

    key: str
    scope: UsageScope
    start: datetime
    end: datetime
    quantity: int
    pflops_seconds: Decimal
    source_id: str

    @property
    def device_seconds(self) -> Decimal:
        return Decimal(self.quantity) / MILLI if self.scope.pricing_model in CAPACITY_MODELS else ZERO


def allocation_key(allocation_id: object, piece_start: int) -> str:
    """The idempotency key of the piece of an allocation starting at epoch second ``piece_start``."""
    return f"alloc:{allocation_id}:{piece_start}"


def meter_allocation(interval: AllocationInterval, throughput: Throughput,
                     cuts: Sequence[int] = ()) -> list[UsageRecord]:
    """Cut one interval at month starts and ``cuts`` (sorted epoch seconds) into usage records."""
    start, end = epoch_seconds(interval.start), epoch_seconds(interval.end)
    throughput.tflops(interval.scope.model)
    records = []
    for a, b in split_interval(start, end, sorted_cuts(cuts, month_boundaries(start, end))):
        quantity = interval.milli_devices * (b - a)
        records.append(UsageRecord(
            allocation_key(interval.allocation_id, a), interval.scope, from_epoch(a), from_epoch(b),
            quantity, throughput.pflops_seconds(interval.scope.model, quantity), interval.allocation_id))
    return records


def meter_allocations(intervals: Iterable[AllocationInterval], throughput: Throughput,
                      cuts: Iterable[int] = ()) -> tuple[UsageRecord, ...]:
    """Meter many intervals (all validated before any record is returned)."""
    ordered = sorted_cuts(cuts)
    return tuple(record for interval in intervals
                 for record in meter_allocation(interval, throughput, ordered))


def meter_tokens(events: Iterable[TokenEvent]) -> tuple[UsageRecord, ...]:
    """One record per non-zero side of each token event (``tok:{event_id}:in`` / ``:out``)."""
    records = []
    for event in events:
        for suffix, pricing, count in (("in", PricingModel.INPUT_TOKENS, event.input_tokens),
                                       ("out", PricingModel.OUTPUT_TOKENS, event.output_tokens)):
            if count:
                scope = UsageScope(event.tenant_id, event.provider_id, event.model, pricing)
                records.append(UsageRecord(f"tok:{event.event_id}:{suffix}", scope, event.at, event.at,
                                           count, ZERO, event.event_id))
    return tuple(records)


@dataclass(frozen=True, slots=True)
class AppendResult:
    """The outcome of an append: the new ledger, what was accepted, what was a harmless replay."""

    ledger: "UsageLedger"
    accepted: tuple[UsageRecord, ...]
    replayed: tuple[UsageRecord, ...]


@dataclass(frozen=True)
class UsageLedger:
    """Append-only usage records by idempotency key. ``append`` returns a new ledger."""

    records: Mapping[str, UsageRecord] = field(default_factory=lambda: MappingProxyType({}))

    def __len__(self) -> int:
        return len(self.records)

    def append(self, batch: Iterable[UsageRecord], *, strict: bool = False) -> AppendResult:
        """Add ``batch`` all-or-nothing.

        A record whose key is already present (in the ledger or earlier in the batch) with an
        identical payload is a replay: skipped and reported. With a different payload — or with
        ``strict=True``, at all — it raises ``DuplicateUsageError`` and nothing is added.
        """
        staged: dict[str, UsageRecord] = {}
        replayed = []
        for record in batch:
            known = staged.get(record.key) or self.records.get(record.key)
            if known is None:
                staged[record.key] = record
                continue
            if strict or known != record:
                why = "already recorded" if known == record else "reused with a different payload"
                raise DuplicateUsageError(f"usage key {record.key!r} {why}", "key")
            replayed.append(record)
        merged = MappingProxyType({**self.records, **staged})
        return AppendResult(UsageLedger(merged), tuple(staged.values()), tuple(replayed))
