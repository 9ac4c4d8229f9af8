"""Capacity arithmetic over accelerator devices: PFLOPS and H100-equivalents. Pure, no I/O.

Devices are counted as the node agent and the schedulers count them (one per device the SMI tool
lists); a catalog unit that shows as several devices (an Ascend 910C package is 2 dies) contributes
``tflops_dense / devices_per_unit`` per device.

Precision choice: BF16 dense is the default. It is the training and serving dtype of current large
models, the figure the leasing market means by "PFLOPS" for modern parts, and — unlike FP8 — it exists
on every current training accelerator of every vendor. FP16 is equal to BF16 wherever both are
published; pass ``precision="fp16"`` for parts without BF16 (T4, V100, P100). Sparse figures are never
used (the catalog stores dense only).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Literal

from zhisuan.catalog.models import AcceleratorModel, Precision

TFLOPS_PER_PFLOPS = Decimal(1000)

# The H100 SXM5 dense figures (NVIDIA H100 datasheet, sparse figures halved). Kept here rather than
# read from the catalog so that this module stays I/O-free; a test checks they match the catalog.
H100_SXM_DENSE_TFLOPS: Mapping[Precision, Decimal] = {
    "bf16": Decimal("989.4"),
    "fp16": Decimal("989.4"),
    "fp8": Decimal("1978.9"),
    "int8": Decimal("1978.9"),
}

UnknownPolicy = Literal["raise", "skip"]
Devices = Mapping[AcceleratorModel, int] | Iterable[AcceleratorModel]


class ThroughputUnknown(ValueError):
    """Some devices have no published dense figure at the requested precision."""

    def __init__(self, precision: str, model_keys: list[str]) -> None:
        super().__init__(
            f"no published dense {precision} throughput for: {', '.join(model_keys)} "
            f"(pass unknown='skip' to leave them out, or another precision)"
        )
        self.precision = precision
        self.model_keys = model_keys


def device_counts(devices: Devices) -> dict[AcceleratorModel, int]:
    """Normalise ``devices`` (a model→count mapping, or one model per device) to model→count."""
    if isinstance(devices, Mapping):
        counts = dict(devices)
    else:
        counts = {}
        for model in devices:
            counts[model] = counts.get(model, 0) + 1
    negative = [model.key for model, count in counts.items() if count < 0]
    if negative:
        raise ValueError(f"device counts must not be negative: {', '.join(negative)}")
    return counts


def total_dense_tflops(
    devices: Devices, precision: Precision = "bf16", unknown: UnknownPolicy = "raise"
) -> Decimal:
    """Σ count × tflops_dense[precision] / devices_per_unit, in TFLOPS (TOPS for int8).

    Devices whose figure is unpublished raise ``ThroughputUnknown`` (``unknown="raise"``) or add
    nothing (``unknown="skip"``); skipping understates capacity, so it must be asked for.
    """
    total = Decimal(0)
    missing: list[str] = []
    for model, count in device_counts(devices).items():
        per_device = model.per_device_tflops(precision)
        if per_device is None:
            missing.append(model.key)
            continue
        total += per_device * count
    if missing and unknown == "raise":
        raise ThroughputUnknown(precision, sorted(missing))
    return total


def pflops(devices: Devices, precision: Precision = "bf16", unknown: UnknownPolicy = "raise") -> Decimal:
    """Dense capacity in PFLOPS: ``Σ count × tflops_dense[precision] / devices_per_unit / 1000``.

    Example: 8 × H100 SXM at BF16 = 8 × 989.4 / 1000 = 7.9152 PFLOPS.
    """
    return total_dense_tflops(devices, precision, unknown) / TFLOPS_PER_PFLOPS


def h100_equivalents(
    devices: Devices, precision: Precision = "bf16", unknown: UnknownPolicy = "raise"
) -> Decimal:
    """How many H100 SXM5 the devices equal in dense throughput at ``precision``:

    ``Σ count × tflops_dense[precision] / devices_per_unit  ÷  H100_SXM_DENSE_TFLOPS[precision]``.

    Example: 16 × A100 at BF16 = 16 × 312 / 989.4 ≈ 5.0455 H100-equivalents. Memory, interconnect and
    software maturity are not in this number; it compares raw dense math only.
    """
    return total_dense_tflops(devices, precision, unknown) / H100_SXM_DENSE_TFLOPS[precision]
