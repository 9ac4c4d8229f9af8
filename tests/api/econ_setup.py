"""Shared set-up for the market and billing API tests (plain helpers over the ``world`` fixture)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from tests.api.conftest import Api

START = "2026-11-01T00:00:00Z"


def a800_node(api: Api, name: str = "a800-1", site: str = "s1") -> dict[str, Any]:
    """A hand-declared node with eight A800s."""
    body = {"site": site, "name": name, "cpu_cores": 128, "memory_mib": 1_024_000,
            "accelerators": [{"model": "a800", "count": 8}]}
    return api.ok("POST", "/nodes", "operator", body)  # type: ignore[no-any-return]


@contextmanager
def clock_at(api: Api, instant: str) -> Iterator[None]:
    """Run with the app's clock (the tests' settable ``Clock``) at ``instant``, then put it back."""
    clock = api.client.app.state.ctx.clock  # type: ignore[attr-defined]
    saved, clock.now = clock.now, datetime.fromisoformat(instant)
    try:
        yield
    finally:
        clock.now = saved


def price_book(api: Api, name: str = "std", overrides: bool = True, **extra: Any) -> dict[str, Any]:
    """Book ``name``, created at START and in force from then (a book cannot take effect in the past)."""
    rates = [
        {"model": "h100-sxm", "pricing_model": "device_hour", "unit_price": "20.00", "spot_discount": "0.4",
         "reserved_discounts": [{"min_months": 12, "discount": "0.15"}]},
        {"model": "h100-sxm", "pricing_model": "device_hour", "unit_price": "18.00", "tenant": "beta"},
        {"model": "a800", "pricing_model": "server_month", "unit_price": "60000"},
        {"model": "qwen-7b", "pricing_model": "input_tokens", "unit_price": "2.00"},
        {"model": "qwen-7b", "pricing_model": "output_tokens", "unit_price": "6.00"},
    ]
    if not overrides:
        rates = [rate for rate in rates if "tenant" not in rate]
    body = {"name": name, "effective_from": START, "rates": rates, **extra}
    with clock_at(api, START):
        return api.ok("POST", "/pricebooks", "operator", body)  # type: ignore[no-any-return]


def quota_contract(api: Api, tenant: str = "acme", provider: str = "p1", **extra: Any) -> dict[str, Any]:
    body = {"tenant": tenant, "providers": [provider], "capacity": {"kind": "quota", "model": "h100-sxm", "quota": 4},
            "pricing_model": "device_hour", "unit_price": "15", "start": START, "closed_months": 12, **extra}
    return api.ok("POST", "/contracts", "operator", body)  # type: ignore[no-any-return]


def setup_economics(api: Api) -> None:
    """For the access table: price book 'std' and a draft quota contract 1 of acme on p1 (from 2026-11-01)."""
    price_book(api, overrides=False)  # a tenant override would (rightly) keep the tenant from being deleted
    quota_contract(api)
