"""Shared fixtures for the economics tests (plain functions; imported by the test modules).

Accelerator throughput assumed in every worked example (dense, no sparsity, BF16 precision):

* A800 SXM: 312 TFLOPS BF16 dense (NVIDIA A100/A800 datasheet).
* Ascend 910B: 313 TFLOPS — Huawei states ~313 TFLOPS FP16 for 910B2-class parts; the 910B
  computes BF16 at the same dense rate, so we use 313 as its BF16 figure.
* H800 SXM: 989 TFLOPS BF16 dense (NVIDIA H100/H800 datasheet, 1,979 is the sparse figure).
"""

from datetime import UTC, datetime
from decimal import Decimal

from zhisuan.core.economics.metering import Throughput
from zhisuan.core.economics.pricebook import PriceBook, PriceBookVersion, PricingModel, RateEntry

D = Decimal
THROUGHPUT = Throughput("bf16", {"A800": D(312), "Ascend910B": D(313), "H800": D(989)})


def utc(*parts: int) -> datetime:
    """``utc(2024, 1, 31, 22)`` → 2024-01-31T22:00:00+00:00."""
    return datetime(*parts, tzinfo=UTC)  # type: ignore[arg-type, misc]


def rate(model: str, pricing: PricingModel, price: str, **scope: object) -> RateEntry:
    return RateEntry(model, pricing, D(price), **scope)  # type: ignore[arg-type]


def book(*versions: tuple[datetime, list[RateEntry]], book_id: str = "public") -> PriceBook:
    return PriceBook(
        book_id,
        tuple(PriceBookVersion(n, at, tuple(rates)) for n, (at, rates) in enumerate(versions, start=1)),
    )
