"""Benchmark: rate one month of a 10,000-accelerator fleet with one allocation change per device per hour.

    uv run python benchmarks/economics/bench_rating.py [--devices 10000] [--tenants 300] [--providers 40]

Fleet: A800 / H800 / Ascend 910B devices owned by ``--providers`` providers. Every device changes
hands at a random second of every hour of June 2024 (≈ 721 intervals per device, the first starting
in May, the last ending in July) to a random tenant, on demand or spot. The price book changes
mid-month (2024-06-16 07:30 UTC), so each allocation is priced at the version in force.

Timed: columnar metering + aggregation (``bulk.aggregate_columns``), pricing + invoices
(``rating.invoices_from_aggregates``) and settlement (``rating.settle``). Fleet generation is not
timed. Memory: peak traced allocation during rating (tracemalloc, second run) and process peak RSS.
``--object-sample N`` also times the object path (UsageRecord per piece) on N devices for comparison.
"""

import argparse
import resource
import time
import tracemalloc
from datetime import UTC, datetime
from decimal import Decimal

import numpy as np

from zhisuan.core.economics.bulk import AllocationColumns, aggregate_columns
from zhisuan.core.economics.metering import AllocationInterval, Throughput, UsageScope, meter_allocations
from zhisuan.core.economics.periods import billing_period, epoch_seconds, from_epoch
from zhisuan.core.economics.pricebook import PriceBook, PriceBookVersion, PricingModel, RateEntry, Tier
from zhisuan.core.economics.rating import RatingContext, invoices_from_aggregates, settle

D = Decimal
MODELS = {"A800": D(312), "H800": D(989), "Ascend910B": D(313)}
PERIOD = billing_period(2024, 6)


def price_book() -> PriceBook:
    def rates(a800: str, h800: str, ascend: str) -> tuple[RateEntry, ...]:
        return tuple(
            RateEntry(m, PricingModel.DEVICE_HOUR, D(p), spot_discount=D("0.35"))
            for m, p in (("A800", a800), ("H800", h800), ("Ascend910B", ascend))
        )

    return PriceBook(
        "bench",
        (
            PriceBookVersion(1, datetime(2024, 1, 1, tzinfo=UTC), rates("7.50", "16.00", "9.00")),
            PriceBookVersion(2, datetime(2024, 6, 16, 7, 30, tzinfo=UTC), rates("6.90", "13.30", "8.20")),
        ),
    )


def fleet(devices: int, tenants: int, providers: int, seed: int) -> AllocationColumns:
    rng = np.random.default_rng(seed)
    model_of = rng.integers(0, len(MODELS), devices)
    provider_of = rng.integers(0, providers, devices)
    hours = PERIOD.seconds // 3600 + 1
    base = epoch_seconds(PERIOD.start) + 3600 * np.arange(-1, hours, dtype=np.int64)
    changes = base[None, :] + rng.integers(0, 3600, (devices, hours + 1))  # one change per device-hour
    start, end = changes[:, :-1].ravel(), changes[:, 1:].ravel()
    n = start.size
    tenant, tier = rng.integers(0, tenants, n), rng.integers(0, 2, n)
    device = np.repeat(np.arange(devices), hours)
    codes = ((tenant * providers + provider_of[device]) * len(MODELS) + model_of[device]) * 2 + tier
    unique, scope_index = np.unique(codes, return_inverse=True)
    names = list(MODELS)
    scopes = tuple(
        UsageScope(
            f"t{c // 2 // len(MODELS) // providers}",
            f"p{c // 2 // len(MODELS) % providers}",
            names[c // 2 % len(MODELS)],
            tier=(Tier.ON_DEMAND, Tier.SPOT)[c % 2],
        )
        for c in unique.tolist()
    )
    return AllocationColumns(
        scopes,
        np.arange(n, dtype=np.int64),
        scope_index.astype(np.int64),
        start,
        end,
        np.full(n, 1000, dtype=np.int64),
    )


def rate_month(cols: AllocationColumns, ctx: RatingContext, shares: dict[str, Decimal]) -> dict[str, float]:
    t0 = time.perf_counter()
    aggregates = aggregate_columns(cols, PERIOD, ctx.cuts(), ctx.throughput)
    t1 = time.perf_counter()
    invoices = invoices_from_aggregates(aggregates, PERIOD, ctx)
    t2 = time.perf_counter()
    summary = settle(invoices, PERIOD, shares)
    t3 = time.perf_counter()
    print(
        f"  aggregates {len(aggregates):,}  invoices {len(invoices):,}  "
        f"lines {sum(len(i.lines) for i in invoices):,}  revenue {summary.revenue:,} CNY  "
        f"payouts {summary.payouts:,}  margin {summary.margin:,}"
    )
    return {"meter+aggregate": t1 - t0, "price+invoice": t2 - t1, "settle": t3 - t2, "total": t3 - t0}


def object_sample(cols: AllocationColumns, ctx: RatingContext, rows: int) -> None:
    intervals = [
        AllocationInterval(
            str(i),
            cols.scopes[int(cols.scope_index[i])],
            from_epoch(int(cols.start[i])),
            from_epoch(int(cols.end[i])),
            int(cols.milli_devices[i]),
        )
        for i in range(rows)
    ]
    t0 = time.perf_counter()
    records = meter_allocations(intervals, ctx.throughput, ctx.cuts())
    seconds = time.perf_counter() - t0
    print(
        f"  object path: {len(records):,} UsageRecords from {rows:,} intervals in {seconds:.2f} s "
        f"({rows / seconds:,.0f} intervals/s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--tenants", type=int, default=300)
    parser.add_argument("--providers", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--object-sample", type=int, default=0, help="also meter N devices' intervals as objects"
    )
    args = parser.parse_args()
    t0 = time.perf_counter()
    cols = fleet(args.devices, args.tenants, args.providers, args.seed)
    print(
        f"fleet: {args.devices:,} devices, {len(cols.start):,} allocation intervals, "
        f"{len(cols.scopes):,} scopes "
        f"(generated in {time.perf_counter() - t0:.1f} s, not timed)"
    )
    ctx = RatingContext(price_book(), Throughput("bf16", MODELS))
    shares = {f"p{i}": D("0.85") for i in range(args.providers)}
    timings = rate_month(cols, ctx, shares)
    print("  time: " + ", ".join(f"{k} {v:.2f} s" for k, v in timings.items()))
    tracemalloc.start()
    rate_month(cols, ctx, shares)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(
        f"  memory: rating peak traced {peak / 2**20:,.0f} MiB; process peak RSS "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB (includes the fleet arrays)"
    )
    if args.object_sample:
        object_sample(cols, ctx, args.object_sample * (len(cols.start) // args.devices))


if __name__ == "__main__":
    main()
