"""Who may call each exchange route, per role (the table in ``access_cases``), and that every
exchange route has a case."""

from __future__ import annotations

import pytest

from tests.api.conftest import Api
from tests.api.test_access import ROLES, _same_shape, setup_objects
from tests.exchange.access_cases import EXCHANGE_CASES, Body, setup_exchange


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("method", "path", "body", "expected", "default"), EXCHANGE_CASES,
                         ids=[f"{m} {p}" for m, p, *_ in EXCHANGE_CASES])
def test_exchange_access(world: Api, role: str, method: str, path: str, body: Body, expected: dict[str, int],
                         default: int) -> None:
    setup_objects(world)
    setup_exchange(world)
    response = world.call(method, path, None if role == "anonymous" else role, body() if body else None)
    want = expected.get(role, default)
    assert response.status_code == want, f"{role}: {response.status_code} {response.text}"
    if want >= 400:
        assert response.json()["error"]["message"]


def test_every_exchange_route_has_an_access_case(world: Api) -> None:
    # From the OpenAPI paths: with FastAPI 0.165 ``app.routes`` lists included routers, not their routes.
    paths = world.client.app.openapi()["paths"]  # type: ignore[attr-defined]
    routes = [(method.upper(), path.removeprefix("/api/v1")) for path, item in paths.items()
              if path.startswith("/api/v1/exchange") for method in item]
    assert len(routes) == 13
    missing = [f"{m} {p}" for m, p in routes if not any(c == m and _same_shape(cp, p) for c, cp, *_ in EXCHANGE_CASES)]
    assert not missing
