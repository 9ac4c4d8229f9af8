"""Operators' measured relative throughput: record, list, and the figure pricing and matching use.

Every consumer of a model's throughput asks ``effective_tflops`` / ``effective_relative`` here with the
measurements loaded once per operation (``load_measurements``): a measured ratio for the workload class
wins over the datasheet ratio (``throughput.relative_throughput``). As effective TFLOPS, a measured
ratio reads ``relative × per_device_tflops(h100-sxm, p)`` — the work of that many reference devices.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from pydantic import Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from zhisuan.catalog.loader import Catalog
from zhisuan.catalog.models import AcceleratorModel
from zhisuan.catalog.records import ThroughputMeasurement
from zhisuan.catalog.throughput import (
    REFERENCE_MODEL_KEY,
    InvalidMeasurement,
    MeasuredThroughput,
    Measurements,
    RelativeThroughput,
    WorkloadClass,
    latest_measurements,
    precision_of,
)
from zhisuan.errors import InvalidInput, NotFound
from zhisuan.identity import audit
from zhisuan.identity.access import Principal, require_role
from zhisuan.identity.schemas import Strict

DEFAULT_WORKLOAD_CLASS: WorkloadClass = "training-bf16"  # what the exchange and PFLOPS pricing compare


class MeasurementIn(Strict):
    relative: Decimal = Field(gt=0, le=1000, description="benchmark throughput on one device of the model / "
                              "the same on one H100 SXM5 (0.42 = 42% of an H100's work)")
    benchmark: str = Field(min_length=1, max_length=200, description="the benchmark the ratio comes from")
    measured_at: datetime | None = Field(default=None, description="when it was measured (UTC); default now")
    note: str = Field(default="", max_length=500)


class MeasurementOut(Strict):
    id: int
    model: str
    workload_class: str
    relative: Decimal
    datasheet_relative: Decimal | None
    reference: str
    benchmark: str
    note: str
    measured_at: datetime
    recorded_by: str
    recorded_at: datetime


def to_value(row: ThroughputMeasurement) -> MeasuredThroughput:
    return MeasuredThroughput(row.model_key, row.workload_class, row.relative,  # type: ignore[arg-type]
                              row.benchmark, row.measured_at, row.reference_key)


def load_measurements(session: Session) -> Measurements:
    """The latest measurement of every (model key, workload class)."""
    rows = session.scalars(select(ThroughputMeasurement)).all()
    return latest_measurements(to_value(row) for row in rows)


def effective_relative(catalog: Catalog, model: AcceleratorModel, measured: Measurements,
                       workload_class: str = DEFAULT_WORKLOAD_CLASS) -> RelativeThroughput | None:
    return catalog.relative_throughput(model, workload_class, measured)


def effective_tflops(catalog: Catalog, model: AcceleratorModel, measured: Measurements,
                     workload_class: str = DEFAULT_WORKLOAD_CLASS) -> Decimal | None:
    """Per-device TFLOPS at the class's precision: measured ratio × the reference's figure when an
    operator recorded one, else the datasheet figure; None when neither exists."""
    precision = precision_of(workload_class)
    found = measured.get((model.key, workload_class))
    reference = catalog.get(REFERENCE_MODEL_KEY).per_device_tflops(precision)
    if found is not None and found.reference_key == REFERENCE_MODEL_KEY and reference is not None:
        return found.relative * reference
    return model.per_device_tflops(precision)


def resolve(catalog: Catalog, name: str) -> AcceleratorModel:
    model = catalog.resolve(name)
    if model is None:
        close = ", ".join(catalog.close_matches(name)) or "none"
        raise NotFound(f"accelerator model '{name}' is not in the catalog (close: {close})", field="model")
    return model


def record(session: Session, catalog: Catalog, principal: Principal, name: str, workload_class: str,
           body: MeasurementIn, now: datetime) -> ThroughputMeasurement:
    """Operators only; audited. Bad input → 422 naming the field (model, workload_class, measured_at …)."""
    require_role(principal, "operator")
    model = resolve(catalog, name)
    measured_at = body.measured_at or now
    if measured_at.tzinfo is not None and measured_at > now:
        raise InvalidInput(f"measured_at {measured_at.isoformat()} is in the future", field="measured_at")
    try:
        value = MeasuredThroughput(model.key, workload_class, body.relative,  # type: ignore[arg-type]
                                   body.benchmark, measured_at)
    except InvalidMeasurement as error:
        raise InvalidInput(str(error), field=error.field) from error
    row = ThroughputMeasurement(model_key=model.key, workload_class=value.workload_class, relative=value.relative,
                                reference_key=value.reference_key, benchmark=value.benchmark.strip(),
                                note=body.note, measured_at=value.measured_at, recorded_by=principal.username,
                                recorded_at=now)
    session.add(row)
    session.flush()
    audit.record(session, principal, "catalog.measurement.record", "accelerator_model", model.key,
                 detail={"workload_class": row.workload_class, "relative": str(row.relative),
                         "benchmark": row.benchmark})
    return row


def listing(session: Session, catalog: Catalog, name: str | None = None) -> list[MeasurementOut]:
    """Every recorded measurement (history, newest first), of one model when ``name`` is given."""
    query = select(ThroughputMeasurement).order_by(ThroughputMeasurement.measured_at.desc(),
                                                   ThroughputMeasurement.id.desc())
    if name is not None:
        query = query.where(ThroughputMeasurement.model_key == resolve(catalog, name).key)
    return [out(catalog, row) for row in session.scalars(query)]


def out(catalog: Catalog, row: ThroughputMeasurement) -> MeasurementOut:
    datasheet = catalog.relative_throughput(row.model_key, row.workload_class, {})
    return MeasurementOut(id=row.id, model=row.model_key, workload_class=row.workload_class, relative=row.relative,
                          datasheet_relative=datasheet.relative.quantize(Decimal("0.0001")) if datasheet else None,
                          reference=row.reference_key, benchmark=row.benchmark, note=row.note,
                          measured_at=row.measured_at, recorded_by=row.recorded_by, recorded_at=row.recorded_at)
