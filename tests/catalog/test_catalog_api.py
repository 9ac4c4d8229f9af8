"""The catalog over HTTP: usable memory apart from nominal, a confidence per figure, and an operator's
measurement making a part without published throughput substitutable, priceable and matchable."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

import pytest

from tests.api.conftest import Api
from tests.exchange.market_setup import STARTS, WINDOW, declare_nodes, offer, request
from zhisuan.catalog import REFERENCE_MODEL_KEY, default_catalog
from zhisuan.exchange.pricing import HOURS_PER_YEAR, PRICE_PLACES

CATALOG = default_catalog()


@pytest.mark.parametrize(
    ("name", "mib", "basis"),
    [
        ("MLU370-X4", 23308, "usable"),  # cnmon shows 23,308 MiB, not 24 x 1024 = 24,576
        ("Ascend910C", 65536, "usable"),  # per die: two dies per 128 GB package
        ("A100-SXM4-80GB", 80 * 1024, "nominal"),  # no public tool output recorded: the upper bound
        ("MLU590", 0, "unknown"),  # nothing published, nothing invented
    ],
)
def test_memory_per_device_is_the_usable_figure_when_a_tool_reported_one(world: Api, name: str, mib: int,
                                                                         basis: str) -> None:
    body = world.ok("GET", f"/catalog/models/{name}", "acme")
    assert (body["memory_mib_per_device"], body["memory_basis"]) == (mib, basis)
    model = CATALOG.get(name)
    assert body["memory_gib"] == (None if model.memory_gib is None else str(model.memory_gib))  # nominal kept


def test_every_figure_carries_its_confidence(world: Api) -> None:
    for body in world.ok("GET", "/catalog/models", "acme", vendor="huawei"):
        model = CATALOG.get(body["key"])
        assert body["confidence"] == {name: model.confidence(name) for name in body["confidence"]}
    x4 = world.ok("GET", "/catalog/models/mlu370-x4", "acme")["confidence"]
    assert (x4["memory_gib"], x4["usable_memory_mib"], x4["tflops_dense.bf16"]) == ("derived", "community", None)


def test_a_node_declared_without_an_agent_gets_the_usable_memory(world: Api) -> None:
    declare_nodes(world, "s1", "mlu", "MLU370-X4", 1, per_node=4)
    node = world.ok("GET", "/nodes/s1/mlu-1", "operator")
    assert {d["memory_mib"] for d in node["devices"]} == {23308}


def test_a_measurement_makes_an_unpublished_part_priceable_substitutable_and_matchable(world: Api) -> None:
    """MetaX publishes no C500 throughput: no PFLOPS floor, no H100-equivalents, until an operator
    measures it (0.4 of an H100 SXM5 on a BF16 training benchmark); then the offer's floor, the
    request's substitution factor and the clearing all use 0.4."""
    declare_nodes(world, "s2", "c500", "metax-c500", 2)
    pflops_offer = {"site": "s2", "model": "metax-c500", "devices": 16, "pricing_model": "pflops_year",
                    "floor_price": "150000"}
    refused = world.call("POST", "/exchange/offers", "p2", {**WINDOW, "min_term_h": 24, **pflops_offer})
    assert (refused.status_code, refused.json()["error"]["field"]) == (422, "pricing_model")
    normalised = {"amount": 4, "unit": "h100_eq", "models": ["metax-c500"], "max_price": "40"}
    refused = world.call("POST", "/exchange/requests", "acme", {**STARTS, "duration_h": 720, **normalised})
    assert (refused.status_code, refused.json()["error"]["field"]) == (422, "models.0")

    world.ok("PUT", "/catalog/models/MetaX C500/measurements/training-bf16", "operator",
             {"relative": "0.4", "benchmark": "megatron llama-7b tokens/s", "measured_at": "2026-10-30T00:00:00Z"})

    made_offer = offer(world, "p2", **pflops_offer)
    reference = CATALOG.get(REFERENCE_MODEL_KEY).per_device_tflops("bf16")
    assert reference is not None
    floor = (Decimal(150000) * Decimal("0.4") * reference / 1000 / HOURS_PER_YEAR).quantize(PRICE_PLACES,
                                                                                           ROUND_HALF_UP)
    assert Decimal(made_offer["floor_device_hour"]) == floor
    made = request(world, "acme", **normalised)
    assert made["models"] == {"metax-c500": "0.4000"}
    matches = world.ok("POST", "/exchange/clear", "operator", {})["matches"]
    mine = [m for m in matches if m["request_id"] == made["id"]]
    assert mine and {m["model"] for m in mine} == {"metax-c500"}
    assert sum(Decimal("0.4") * m["devices"] for m in mine) >= 4

