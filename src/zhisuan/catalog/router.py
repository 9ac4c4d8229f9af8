"""HTTP routes of the accelerator catalog (read-only; every role may read it)."""

from __future__ import annotations

import dataclasses
from typing import Any

from fastapi import APIRouter, Request

from zhisuan.api.deps import ContextDep, Reader, SessionDep, Writer
from zhisuan.catalog import measurements
from zhisuan.catalog.loader import Catalog
from zhisuan.catalog.models import FIGURE_FIELDS, AcceleratorModel
from zhisuan.errors import NotFound

router = APIRouter(tags=["catalog"])


def model_out(model: AcceleratorModel) -> dict[str, Any]:
    """The model as stored, plus what readers ask for most: BF16, memory a job can use, confidences.

    ``memory_mib_per_device`` is the usable figure an SMI tool reported when one was recorded
    (``memory_basis`` "usable"), else the nominal upper bound (``"nominal"``), else 0 (``"unknown"``).
    """
    body = dataclasses.asdict(model)
    body["bf16_tflops"] = model.tflops_dense.bf16
    body["memory_mib_per_device"] = device_memory_mib(model)
    body["memory_basis"] = memory_basis(model)
    body["confidence"] = {name: model.confidence(name) for name in FIGURE_FIELDS}
    return body


def device_memory_mib(model: AcceleratorModel) -> int:
    """MiB one device offers when no agent reported it: the tool-reported usable figure when the catalog
    records one, else nominal ``memory_gib x 1024 / devices_per_unit``, else 0. Inventory and site sync
    declare devices with it, so placement never counts memory a card does not show."""
    return model.per_device_memory_mib() or 0


def memory_basis(model: AcceleratorModel) -> str:
    if model.usable_memory_mib is not None:
        return "usable"
    return "unknown" if model.memory_gib is None else "nominal"


@router.get("/catalog/models")
def list_models(request: Request, _principal: Reader, vendor: str | None = None) -> list[dict[str, Any]]:
    catalog: Catalog = request.app.state.catalog
    return [model_out(m) for m in catalog.all() if vendor is None or m.vendor == vendor.lower()]


@router.get("/catalog/models/{name}")
def get_model(name: str, request: Request, _principal: Reader) -> dict[str, Any]:
    catalog: Catalog = request.app.state.catalog
    model = catalog.resolve(name)
    if model is None:
        raise NotFound(f"accelerator model '{name}' is not in the catalog", field="model")
    return model_out(model)


@router.put("/catalog/models/{name}/measurements/{workload_class}", response_model=measurements.MeasurementOut)
def record_measurement(name: str, workload_class: str, body: measurements.MeasurementIn, request: Request,
                       session: SessionDep, principal: Writer, ctx: ContextDep) -> measurements.MeasurementOut:
    """Operators only: record a measured relative throughput (the matcher and pricing prefer it)."""
    catalog: Catalog = request.app.state.catalog
    row = measurements.record(session, catalog, principal, name, workload_class, body, ctx.clock())
    return measurements.out(catalog, row)


@router.get("/catalog/measurements", response_model=list[measurements.MeasurementOut])
def list_measurements(request: Request, session: SessionDep, _principal: Reader,
                      model: str | None = None) -> list[measurements.MeasurementOut]:
    return measurements.listing(session, request.app.state.catalog, model)
