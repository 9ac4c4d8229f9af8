"""Operators record measured relative throughput (PUT/GET /catalog/.../measurements); bad input names
the field; the exchange's substitution factors and the market's PFLOPS capacity prefer the measurement."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest

from tests.api.conftest import Api
from tests.exchange.market_setup import request
from zhisuan.catalog.loader import default_catalog
from zhisuan.catalog.throughput import MeasuredThroughput
from zhisuan.core.economics import contracts as cc
from zhisuan.market.service import capacity_pflops, entitlement_milli

PATH = "/catalog/models/{model}/measurements/{workload_class}"
GOOD = {"relative": "0.55", "benchmark": "megatron-gpt3-13b tokens/s", "measured_at": "2026-10-30T12:00:00Z"}


def measure(world: Api, who: str, model: str = "h800", workload_class: str = "training-bf16",
            **change: Any) -> Any:
    body = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    return world.call("PUT", PATH.format(model=model, workload_class=workload_class), who, body)


def test_an_operator_records_a_measurement_it_is_listed_audited_and_the_latest_wins(world: Api) -> None:
    first = measure(world, "operator")
    assert first.status_code == 200, first.text
    assert first.json()["model"] == "h800" and first.json()["relative"] == "0.55"
    assert first.json()["datasheet_relative"] == "1.0000"  # H800 dense bf16 = H100's 989.4
    assert measure(world, "operator", relative="0.61", measured_at="2026-10-31T12:00:00Z").status_code == 200
    listed = world.ok("GET", "/catalog/measurements", "acme", model="H800")
    assert [row["relative"] for row in listed] == ["0.61", "0.55"]  # newest first
    made = request(world, "acme", amount=8, unit="h100_eq", models=["h800"], max_price="20")
    assert made["models"] == {"h800": "0.6100"}  # the latest measurement, not the datasheet's 1.0
    actions = [e["action"] for e in world.ok("GET", "/audit", "operator")]
    assert actions.count("catalog.measurement.record") == 2


BAD: list[tuple[str, dict[str, Any], int, str]] = [
    ("acme", {}, 403, ""),
    ("p1", {}, 403, ""),
    ("operator", {"model": "quantum-9000"}, 404, "model"),
    ("operator", {"workload_class": "training-int4"}, 422, "workload_class"),
    ("operator", {"relative": "0"}, 422, "relative"),
    ("operator", {"relative": "-0.3"}, 422, "relative"),
    ("operator", {"relative": "NaN"}, 422, "relative"),
    ("operator", {"relative": None}, 422, "relative"),
    ("operator", {"benchmark": ""}, 422, "benchmark"),
    ("operator", {"benchmark": "   "}, 422, "benchmark"),
    ("operator", {"measured_at": "2027-01-01T00:00:00Z"}, 422, "measured_at"),
    ("operator", {"measured_at": "2026-10-30T12:00:00"}, 422, "measured_at"),
    ("operator", {"colour": "blue"}, 422, "colour"),
]


@pytest.mark.parametrize(("who", "change", "status", "field"), BAD)
def test_bad_measurements_are_refused_naming_the_field(world: Api, who: str, change: dict[str, Any], status: int,
                                                       field: str) -> None:
    body = dict(change)  # the parameters are shared by both databases' runs: never mutate them
    target = {k: body.pop(k) for k in ("model", "workload_class") if k in body}
    response = measure(world, who, **target, **body)
    assert response.status_code == status, response.text
    if field:
        assert response.json()["error"]["field"] == field, response.text
    assert world.ok("GET", "/catalog/measurements", "operator") == []


def test_pflops_capacity_of_a_contract_prefers_the_measurement() -> None:
    """A pflops_year contract over 8 A800: 8 × 312 / 1000 = 2.496 PFLOPS on the datasheet; measured at
    0.5 of an H100 it is 8 × 0.5 × 989.4 / 1000 = 3.9576 PFLOPS (and a measurement of another class
    does not move it)."""
    catalog = default_catalog()
    a800 = catalog.get("a800").key
    assert capacity_pflops(catalog, a800, 8) == Decimal("2.496")
    at = datetime(2026, 10, 1, tzinfo=UTC)
    bf16 = MeasuredThroughput(a800, "training-bf16", Decimal("0.5"), "bench", at)
    assert capacity_pflops(catalog, a800, 8, measured={(a800, "training-bf16"): bf16}) == Decimal("3.9576")
    int8 = MeasuredThroughput(a800, "inference-int8", Decimal("0.5"), "bench", at)
    assert capacity_pflops(catalog, a800, 8, measured={(a800, "inference-int8"): int8}) == Decimal("2.496")


def test_a_pflops_entitlement_holds_devices_at_the_measured_throughput() -> None:
    """3.9576 PFLOPS of A800: 12.685 devices (×1000 = milli) at the datasheet's 312 TFLOPS, 8 at a
    measured 0.5 of an H100 (494.7 TFLOPS)."""
    catalog = default_catalog()
    a800 = catalog.get("a800").key
    capacity = cc.Capacity(cc.CapacityKind.PFLOPS, a800, pflops=Decimal("3.9576"))
    row = SimpleNamespace(model=a800)
    assert entitlement_milli(catalog, row, capacity) == 12685  # type: ignore[arg-type]
    measured = {(a800, "training-bf16"): MeasuredThroughput(a800, "training-bf16", Decimal("0.5"), "bench",
                                                            datetime(2026, 10, 1, tzinfo=UTC))}
    assert entitlement_milli(catalog, row, capacity, measured) == 8000  # type: ignore[arg-type]
