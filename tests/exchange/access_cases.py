"""Access cases of the exchange's routes, in the format of ``tests/api/test_access.py``'s CASES.

They are part of that table (``CASES``), whose setup calls ``setup_exchange``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.api.conftest import Api

WINDOW = {"start": "2026-11-02T00:00:00Z", "end": "2027-01-01T00:00:00Z"}
STARTS = {"earliest_start": "2026-11-02T00:00:00Z", "latest_start": "2026-11-03T00:00:00Z", "duration_h": 240}


def one_h100_offer() -> dict[str, Any]:
    return {**WINDOW, "site": "s1", "model": "h100-sxm", "devices": 1, "pricing_model": "device_hour",
            "floor_price": "10"}


def one_h100_request() -> dict[str, Any]:
    return {**STARTS, "amount": 1, "models": ["h100-sxm"], "max_price": "20"}


def setup_exchange(api: Api) -> None:
    """Offer 1 (p1, one H100 at s1), request 1 (acme), one clearing: match 1 (acme × p1), proposed."""
    api.ok("POST", "/exchange/offers", "p1", one_h100_offer())
    api.ok("POST", "/exchange/requests", "acme", one_h100_request())
    assert len(api.ok("POST", "/exchange/clear", "operator", {})["matches"]) == 1


Body = Callable[[], Any] | None
EXCHANGE_CASES: list[tuple[str, str, Body, dict[str, int], int]] = [
    ("POST", "/exchange/offers", one_h100_offer, {"anonymous": 401, "operator": 422, "p1": 201, "p2": 422}, 403),
    ("GET", "/exchange/offers", None, {"anonymous": 401}, 200),
    ("GET", "/exchange/offers/1", None, {"anonymous": 401, "operator": 200, "p1": 200}, 404),
    ("POST", "/exchange/offers/1/withdraw", lambda: {},
     {"anonymous": 401, "operator": 409, "p1": 409, "p2": 404}, 403),
    ("POST", "/exchange/requests", one_h100_request,
     {"anonymous": 401, "operator": 422, "acme": 201, "beta": 201}, 403),
    ("GET", "/exchange/requests", None, {"anonymous": 401}, 200),
    ("GET", "/exchange/requests/1", None, {"anonymous": 401, "operator": 200, "acme": 200}, 404),
    ("POST", "/exchange/requests/1/withdraw", lambda: {},
     {"anonymous": 401, "operator": 409, "acme": 409, "beta": 404}, 403),
    ("GET", "/exchange/book", None, {"anonymous": 401}, 200),
    ("POST", "/exchange/clear", lambda: {}, {"anonymous": 401, "operator": 200}, 403),
    ("GET", "/exchange/matches", None, {"anonymous": 401}, 200),
    ("GET", "/exchange/matches/1", None, {"anonymous": 401, "operator": 200, "acme": 200, "p1": 200}, 404),
    ("POST", "/exchange/matches/1/accept", lambda: {},
     {"anonymous": 401, "operator": 422, "acme": 200, "p1": 200}, 404),
]
