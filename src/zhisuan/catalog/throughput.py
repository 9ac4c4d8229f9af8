"""Relative throughput per workload class: measured figures first, datasheet figures as fallback.

Matching and PFLOPS pricing compare accelerators by how much work one device does relative to one
reference device (an H100 SXM5). The datasheet ratio is the dense peak ratio at the workload's
precision::

    datasheet_relative(model, class) = per_device_tflops(model, p) / per_device_tflops(reference, p)

where ``p`` is the precision named by the class (``training-bf16`` → bf16). Peaks overstate some
parts (a domestic card that reaches 40% of peak in practice is priced as if it reached 70%), so an
operator may record a MEASURED ratio per model and workload class — the benchmark's throughput on
one device of the model divided by the same benchmark's throughput on one reference device — and
every lookup prefers it. Pure: no I/O, no clock; measurements come in as values.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Literal, cast, get_args

from zhisuan.catalog.models import PRECISIONS, AcceleratorModel, Precision

WorkloadClass = Literal[
    "training-bf16", "training-fp16", "training-fp8",
    "inference-bf16", "inference-fp16", "inference-fp8", "inference-int8",
]  # fmt: skip
WORKLOAD_CLASSES: tuple[WorkloadClass, ...] = get_args(WorkloadClass)
REFERENCE_MODEL_KEY = "h100-sxm"

Basis = Literal["measured", "datasheet"]
# (model key, workload class) → the operator's measurement for that pair.
Measurements = Mapping[tuple[str, str], "MeasuredThroughput"]


class InvalidMeasurement(ValueError):
    """A measured throughput record is malformed; the message starts with ``field '<name>'`` and
    ``field`` holds that name."""

    @property
    def field(self) -> str:
        return str(self).split("'")[1]


def precision_of(workload_class: str) -> Precision:
    """The precision a workload class runs at: the part after the dash (``inference-int8`` → int8)."""
    if workload_class not in WORKLOAD_CLASSES:
        raise InvalidMeasurement(
            f"field 'workload_class': unknown {workload_class!r}; expected one of {', '.join(WORKLOAD_CLASSES)}"
        )
    precision = workload_class.rsplit("-", 1)[1]
    assert precision in PRECISIONS  # every class above ends in a catalog precision
    return cast(Precision, precision)


@dataclass(frozen=True)
class MeasuredThroughput:
    """One operator measurement: ``relative`` reference devices' worth of work per device.

    ``relative = benchmark throughput on one device of model_key / the same on one reference device``
    (so 0.42 means one device does 42% of an H100 SXM5's work on this benchmark).
    """

    model_key: str
    workload_class: WorkloadClass
    relative: Decimal
    benchmark: str
    measured_at: datetime
    reference_key: str = REFERENCE_MODEL_KEY

    def __post_init__(self) -> None:
        precision_of(self.workload_class)
        if not isinstance(self.relative, Decimal) or not self.relative.is_finite() or self.relative <= 0:
            raise InvalidMeasurement(f"field 'relative': expected a positive Decimal, got {self.relative!r}")
        if not self.benchmark.strip():
            raise InvalidMeasurement("field 'benchmark': name the benchmark the ratio comes from")
        if self.measured_at.tzinfo is None or self.measured_at.utcoffset() is None:
            raise InvalidMeasurement("field 'measured_at': expected a timezone-aware (UTC) time")


@dataclass(frozen=True)
class RelativeThroughput:
    """The answer of a lookup: the ratio, and whether it was measured or read off datasheets."""

    model_key: str
    workload_class: WorkloadClass
    relative: Decimal
    basis: Basis
    reference_key: str
    measurement: MeasuredThroughput | None = None


def latest_measurements(records: Iterable[MeasuredThroughput]) -> dict[tuple[str, str], MeasuredThroughput]:
    """Index records by (model key, workload class), keeping the most recent of each pair."""
    latest: dict[tuple[str, str], MeasuredThroughput] = {}
    for record in records:
        key = (record.model_key, record.workload_class)
        if key not in latest or record.measured_at > latest[key].measured_at:
            latest[key] = record
    return latest


def relative_throughput(
    model: AcceleratorModel,
    reference: AcceleratorModel,
    workload_class: str,
    measured: Measurements | None = None,
) -> RelativeThroughput | None:
    """Measured ratio for (model, class) when recorded against ``reference``, else the datasheet ratio.

    Returns ``None`` when neither exists (no measurement and a null datasheet figure at the class's
    precision) — the caller must not guess; a matcher treats the model as not substitutable.
    """
    precision = precision_of(workload_class)
    known_class = cast(WorkloadClass, workload_class)
    record = (measured or {}).get((model.key, workload_class))
    if record is not None and record.reference_key == reference.key:
        return RelativeThroughput(model.key, known_class, record.relative, "measured", reference.key, record)
    if model.key == reference.key:
        return RelativeThroughput(model.key, known_class, Decimal(1), "datasheet", reference.key)
    own, baseline = model.per_device_tflops(precision), reference.per_device_tflops(precision)
    if own is None or baseline is None:
        return None
    return RelativeThroughput(model.key, known_class, own / baseline, "datasheet", reference.key)
