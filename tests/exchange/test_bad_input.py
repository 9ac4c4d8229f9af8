"""Bad offers and requests get a 4xx naming the field, and nothing is written."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import Api
from tests.exchange.market_setup import STARTS, WINDOW, fleet

OFFER = {**WINDOW, "site": "s1", "model": "h800", "devices": 8, "pricing_model": "device_hour", "floor_price": "10"}
REQUEST = {**STARTS, "amount": 8, "models": ["h800"], "duration_h": 720, "max_price": "20"}

BAD_OFFERS: list[tuple[str, dict[str, Any], int, str]] = [
    ("p1", {"floor_price": "-1"}, 422, "floor_price"),
    ("p1", {"floor_price": "0"}, 422, "floor_price"),
    ("p1", {"floor_price": "1e12"}, 422, "floor_price"),
    ("p1", {"end": "2026-11-01T00:00:00Z"}, 422, "end"),
    ("p1", {"start": "2026-11-02T00:30:00Z"}, 422, "start"),
    ("p1", {"min_term_h": 100_000}, 422, "min_term_h"),
    ("p1", {"site": "s2"}, 422, "site"),
    ("p1", {"provider": "p2"}, 422, "provider"),
    ("p1", {"model": "tpu-v9"}, 422, "model"),
    ("p1", {"model": None}, 422, "model"),
    ("p1", {"devices": 0}, 422, "devices"),
    ("p1", {"devices": 17}, 422, "devices"),
    ("p1", {"pricing_model": "per_token"}, 422, "pricing_model"),
    ("p1", {"nodes": ["s2/c-1"], "model": None, "devices": 0}, 404, "nodes.0"),
    ("operator", {}, 422, "provider"),
    ("acme", {}, 403, ""),
]

BAD_REQUESTS: list[tuple[str, dict[str, Any], int, str]] = [
    ("acme", {"latest_start": "2026-11-01T00:00:00Z"}, 422, "latest_start"),
    ("acme", {"earliest_start": "2026-11-02T00:00:01Z"}, 422, "earliest_start"),
    ("acme", {"max_price": "-5"}, 422, "max_price"),
    ("acme", {"max_price": "1000000"}, 422, "max_price"),
    ("acme", {"amount": 0}, 422, "amount"),
    ("acme", {"duration_h": 0}, 422, "duration_h"),
    ("acme", {"models": ["h800", "quantum-9000"]}, 422, "models.1"),
    ("acme", {"models": []}, 422, "models"),
    ("acme", {"models": [], "constraints": {"min_memory_gib": "100000"}}, 422, "constraints"),
    ("acme", {"unit": "h100_eq", "models": ["h800", "metax-c500"]}, 422, "models.1"),
    ("acme", {"min_fill": 4}, 422, "min_fill"),
    ("acme", {"allow_partial": True, "min_fill": 9}, 422, "min_fill"),
    ("acme", {"unit": "racks"}, 422, "unit"),
    ("acme", {"tenant": "beta"}, 422, "tenant"),
    ("operator", {}, 422, "tenant"),
    ("p1", {}, 403, ""),
]


def assert_refused(world: Api, path: str, who: str, body: dict[str, Any], status: int, field: str) -> None:
    before = len(world.ok("GET", path, "operator"))
    response = world.call("POST", path, who, body)
    assert response.status_code == status, response.text
    if field:
        assert response.json()["error"]["field"] == field, response.text
    assert len(world.ok("GET", path, "operator")) == before


@pytest.mark.parametrize(("who", "change", "status", "field"), BAD_OFFERS)
def test_bad_offer_names_the_field(world: Api, who: str, change: dict[str, Any], status: int, field: str) -> None:
    fleet(world)
    body = {k: v for k, v in {**OFFER, **change}.items() if v is not None}
    assert_refused(world, "/exchange/offers", who, body, status, field)


@pytest.mark.parametrize(("who", "change", "status", "field"), BAD_REQUESTS)
def test_bad_request_names_the_field(world: Api, who: str, change: dict[str, Any], status: int, field: str) -> None:
    assert_refused(world, "/exchange/requests", who, {**REQUEST, **change}, status, field)


def test_constraints_resolve_to_catalog_models(world: Api) -> None:
    made = world.ok("POST", "/exchange/requests", "acme",
                    {**REQUEST, "models": [], "constraints": {"min_memory_gib": "64", "stack": "cann"}})
    assert made["models"] and all(k.startswith("ascend") for k in made["models"])
    assert "ascend-910b3" in made["models"] and "ascend-910b4" not in made["models"]  # 32 GiB
    assert made["models"]["ascend-910b3"] == "0.2981"  # 294.912 / 989.4 (derived from Huawei's platform config)
    assert made["models"]["ascend-910b2"] == "0.3577"  # 353.8944 / 989.4
    maca = world.ok("POST", "/exchange/requests", "acme", {**REQUEST, "models": [], "constraints": {"stack": "maca"}})
    assert maca["models"] == {"metax-c500": "0"}  # no published throughput: not usable when normalised
