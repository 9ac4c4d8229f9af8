"""Metering: per-second records cut at month/price boundaries, tokens, idempotent append."""

from datetime import timedelta
from decimal import Decimal

import pytest
from tests.core.economics.econ_helpers import THROUGHPUT, utc

from zhisuan.core.economics.errors import (
    DuplicateUsageError,
    InvalidAmountError,
    InvalidTimeError,
    UnknownModelError,
)
from zhisuan.core.economics.metering import (
    AllocationInterval,
    TokenEvent,
    UsageLedger,
    UsageScope,
    meter_allocations,
    meter_tokens,
)
from zhisuan.core.economics.periods import epoch_seconds
from zhisuan.core.economics.pricebook import PricingModel

D = Decimal
SCOPE = UsageScope("t-lab", "p-bj", "A800")


def test_allocation_across_a_month_boundary_is_cut_per_second() -> None:
    # 8×A800 from 2024-01-31 22:00:00.9 (truncated to :00) to 2024-02-01 02:00:30:
    #   Jan piece: 7,200 s × 8 = 57,600 device-s;  Feb piece: 7,230 s × 8 = 57,840 device-s.
    #   PFLOPS-seconds = device-s × 312 / 1000: 17,971.2 and 18,046.08.
    interval = AllocationInterval(
        "a-1",
        SCOPE,
        utc(2024, 1, 31, 22) + timedelta(microseconds=900_000),
        utc(2024, 2, 1, 2, 0, 30),
        milli_devices=8_000,
    )
    jan, feb = meter_allocations([interval], THROUGHPUT)
    assert (jan.start, jan.end, feb.start, feb.end) == (
        utc(2024, 1, 31, 22),
        utc(2024, 2, 1),
        utc(2024, 2, 1),
        utc(2024, 2, 1, 2, 0, 30),
    )
    assert (jan.device_seconds, feb.device_seconds) == (D(57_600), D(57_840))
    assert (jan.pflops_seconds, feb.pflops_seconds) == (D("17971.2"), D("18046.08"))
    assert jan.key == f"alloc:a-1:{epoch_seconds(utc(2024, 1, 31, 22))}"
    assert feb.key == f"alloc:a-1:{epoch_seconds(utc(2024, 2, 1))}"


def test_extra_cuts_split_at_price_changes_and_fractions_are_milli_devices() -> None:
    # Half an accelerator (500 milli) for 10 h, cut at a price change after 4 h:
    #   4 h × 3600 × 500 = 7,200,000 and 6 h × 3600 × 500 = 10,800,000 milli-device-seconds.
    interval = AllocationInterval("a-2", SCOPE, utc(2024, 3, 16, 20), utc(2024, 3, 17, 6), milli_devices=500)
    records = meter_allocations([interval], THROUGHPUT, cuts=[epoch_seconds(utc(2024, 3, 17))])
    assert [r.quantity for r in records] == [7_200_000, 10_800_000]
    assert sum(r.device_seconds for r in records) == D(18_000)  # 0.5 × 36,000 s


def test_token_events_become_input_and_output_records() -> None:
    event = TokenEvent("req-9", "t-lab", "p-bj", "qwen2.5-72b", utc(2024, 5, 1, 12), 1_500, 0)
    (record,) = meter_tokens([event])
    assert record.key == "tok:req-9:in"
    assert record.scope.pricing_model == PricingModel.INPUT_TOKENS
    assert record.quantity == 1_500


def test_replayed_events_are_counted_once() -> None:
    records = meter_allocations(
        [AllocationInterval("a-1", SCOPE, utc(2024, 1, 31), utc(2024, 2, 2))], THROUGHPUT
    )
    first = UsageLedger().append(records)
    assert len(first.ledger) == 2 and len(first.accepted) == 2
    again = first.ledger.append(records + records)  # retry, twice over
    assert again.ledger.records == first.ledger.records
    assert len(again.accepted) == 0 and len(again.replayed) == 4


def test_conflicting_duplicate_is_an_error_and_nothing_is_written() -> None:
    ledger = (
        UsageLedger()
        .append(meter_tokens([TokenEvent("req-1", "t-lab", "p-bj", "qwen", utc(2024, 5, 1), 100, 10)]))
        .ledger
    )
    batch = meter_tokens(
        [
            TokenEvent("req-2", "t-lab", "p-bj", "qwen", utc(2024, 5, 1), 7, 7),
            TokenEvent("req-1", "t-lab", "p-bj", "qwen", utc(2024, 5, 1), 999, 10),
        ]
    )
    with pytest.raises(DuplicateUsageError) as err:
        ledger.append(batch)
    assert err.value.field == "key"
    assert sorted(ledger.records) == ["tok:req-1:in", "tok:req-1:out"]  # req-2 not written either
    with pytest.raises(DuplicateUsageError):
        ledger.append(
            meter_tokens([TokenEvent("req-1", "t-lab", "p-bj", "qwen", utc(2024, 5, 1), 100, 10)]),
            strict=True,
        )


def test_bad_allocations_are_rejected() -> None:
    with pytest.raises(InvalidTimeError):
        AllocationInterval("a", SCOPE, utc(2024, 1, 2), utc(2024, 1, 1))
    with pytest.raises(InvalidTimeError):
        AllocationInterval("a", SCOPE, utc(2024, 1, 1), utc(2024, 1, 1))
    with pytest.raises(InvalidAmountError):
        AllocationInterval("a", SCOPE, utc(2024, 1, 1), utc(2024, 1, 2), milli_devices=0)
    with pytest.raises(UnknownModelError):
        meter_allocations(
            [AllocationInterval("a", UsageScope("t", "p", "Z9000"), utc(2024, 1, 1), utc(2024, 1, 2))],
            THROUGHPUT,
        )
    with pytest.raises(InvalidAmountError):
        TokenEvent("e", "t", "p", "m", utc(2024, 1, 1), -1, 0)
