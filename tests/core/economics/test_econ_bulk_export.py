"""The columnar fleet path gives the object path's invoices; pure CSV/JSON export."""

import csv
import io
import json
from decimal import Decimal

import numpy as np
import pytest
from tests.core.economics.econ_helpers import THROUGHPUT, book, rate, utc

from zhisuan.core.economics.bulk import AllocationColumns, aggregate_columns
from zhisuan.core.economics.errors import InvalidTimeError, UnknownModelError
from zhisuan.core.economics.export import invoice_to_csv_text, invoice_to_json_obj
from zhisuan.core.economics.metering import AllocationInterval, UsageScope, meter_allocations
from zhisuan.core.economics.periods import billing_period, epoch_seconds, from_epoch
from zhisuan.core.economics.pricebook import PriceBookVersion, PricingModel, Tier
from zhisuan.core.economics.rating import RatingContext, invoices_from_aggregates, rate_period

D = Decimal
P = PricingModel
BOOK = book(
    (
        utc(2024, 1, 1),
        [
            rate("A800", P.DEVICE_HOUR, "7.50", spot_discount=D("0.3")),
            rate("H800", P.DEVICE_HOUR, "16.00"),
            rate("A800", P.SERVER_MONTH, "75000"),
        ],
    ),
    (
        utc(2024, 3, 16, 7, 30),
        [
            rate("A800", P.DEVICE_HOUR, "6.90"),
            rate("H800", P.DEVICE_HOUR, "13.3"),
            rate("A800", P.SERVER_MONTH, "70000"),
        ],
    ),
)
CTX = RatingContext(BOOK, THROUGHPUT)
SCOPES = (
    UsageScope("t-a", "p-1", "A800"),
    UsageScope("t-a", "p-2", "H800"),
    UsageScope("t-b", "p-1", "A800", tier=Tier.SPOT),
    UsageScope("t-b", "p-1", "A800", P.SERVER_MONTH),
)


def random_columns(n: int, seed: int) -> AllocationColumns:
    rng = np.random.default_rng(seed)
    start = epoch_seconds(utc(2024, 2, 20)) + rng.integers(0, 45 * 86_400, n)
    return AllocationColumns(
        SCOPES,
        np.arange(n, dtype=np.int64),
        rng.integers(0, len(SCOPES), n),
        start,
        start + rng.integers(1, 5 * 86_400, n),
        rng.integers(1, 8_001, n),
    )


def as_intervals(cols: AllocationColumns) -> list[AllocationInterval]:
    return [
        AllocationInterval(str(i), cols.scopes[int(s)], from_epoch(int(a)), from_epoch(int(b)), int(m))
        for i, s, a, b, m in zip(
            cols.allocation_ids, cols.scope_index, cols.start, cols.end, cols.milli_devices, strict=True
        )
    ]


@pytest.mark.parametrize("month", [2, 3, 4])
def test_columnar_path_equals_object_path(month: int) -> None:
    cols = random_columns(400, seed=month)
    period = billing_period(2024, month)
    records = meter_allocations(as_intervals(cols), THROUGHPUT, cuts=CTX.cuts())
    by_objects = rate_period(records, period, CTX)
    by_columns = invoices_from_aggregates(
        aggregate_columns(cols, period, CTX.cuts(), THROUGHPUT), period, CTX
    )
    assert [invoice_to_json_obj(i) for i in by_columns] == [invoice_to_json_obj(i) for i in by_objects]
    assert sum(i.total for i in by_objects) > 0


def test_columnar_validation() -> None:
    one = np.array([1], dtype=np.int64)
    with pytest.raises(InvalidTimeError):
        AllocationColumns(SCOPES, one, one * 0, one * 10, one * 10, one)
    cols = AllocationColumns((UsageScope("t", "p", "Z9"),), one, one * 0, one, one * 10, one)
    with pytest.raises(UnknownModelError):
        aggregate_columns(cols, billing_period(1970, 1), [], THROUGHPUT)


def march_invoice() -> object:
    ctx = RatingContext(
        BOOK.with_version(PriceBookVersion(3, utc(2024, 4, 1), BOOK.versions[1].rates)), THROUGHPUT
    )
    records = meter_allocations(
        [AllocationInterval("a-1", SCOPES[0], utc(2024, 3, 16), utc(2024, 3, 17), 2_000)],
        THROUGHPUT,
        cuts=ctx.cuts(),
    )
    (invoice,) = rate_period(records, billing_period(2024, 3), ctx)
    return invoice


def test_csv_export() -> None:
    # 2 A800 × 7.5 h at 7.50 = 112.50 (v1), then 2 × 16.5 h at 6.90 = 227.70 (v2); total 340.20.
    rows = list(csv.DictReader(io.StringIO(invoice_to_csv_text(march_invoice()))))  # type: ignore[arg-type]
    assert [(r["line_no"], r["amount"], r["price_source"]) for r in rows] == [
        ("1", "112.50", "book:public@v1"),
        ("2", "227.70", "book:public@v2"),
        ("TOTAL", "340.20", ""),
    ]
    assert rows[0]["billable_quantity"] == "15.000000" and rows[0]["unit"] == "device-hour"


def test_json_export_is_serialisable_with_string_money_and_trace() -> None:
    obj = invoice_to_json_obj(march_invoice())  # type: ignore[arg-type]
    assert json.loads(json.dumps(obj)) == obj
    assert obj["total"] == "340.20" and obj["period"] == "2024-03"
    assert obj["lines"][1]["usage_record_keys"] == [f"alloc:a-1:{epoch_seconds(utc(2024, 3, 16, 7, 30))}"]
