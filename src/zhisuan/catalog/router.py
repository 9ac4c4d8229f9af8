"""HTTP routes of the accelerator catalog (read-only; every role may read it)."""

from __future__ import annotations

import dataclasses
from typing import Any

from fastapi import APIRouter, Request

from zhisuan.api.deps import Reader
from zhisuan.catalog.loader import Catalog
from zhisuan.catalog.models import AcceleratorModel
from zhisuan.errors import NotFound

router = APIRouter(tags=["catalog"])


def model_out(model: AcceleratorModel) -> dict[str, Any]:
    body = dataclasses.asdict(model)
    body["bf16_tflops"] = model.tflops_dense.bf16
    body["memory_mib_per_device"] = device_memory_mib(model)
    return body


def device_memory_mib(model: AcceleratorModel) -> int:
    memory = model.per_device_memory_gib()
    return int(memory * 1024) if memory is not None else 0


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
