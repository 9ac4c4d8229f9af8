"""A running API over a fresh database, and a small world of two tenants and two providers."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from tests.conftest import (
    _create_pg_database,
    _drop_pg_database,
    copy_of,
    empty_template,
    postgres_admin_url,
    with_database,
)
from zhisuan.api.app import create_app
from zhisuan.bootstrap import ensure_first_operator
from zhisuan.catalog.loader import default_catalog
from zhisuan.cli import client as cli_client
from zhisuan.config import Settings


class Clock:
    """A settable clock, so expiry and heartbeat timeouts are tested without sleeping."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class Api:
    client: TestClient
    keys: dict[str, str] = field(default_factory=dict)

    def call(self, method: str, path: str, who: str | None, body: Any = None, **params: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.keys[who]}"} if who else {}
        return self.client.request(method, f"/api/v1{path}", json=body, headers=headers, params=params or None)

    def ok(self, method: str, path: str, who: str | None, body: Any = None, **params: Any) -> Any:
        response = self.call(method, path, who, body, **params)
        assert response.status_code < 300, response.text
        return None if response.status_code == 204 else response.json()


def cli_against(world: Api, monkeypatch: pytest.MonkeyPatch, who: str = "operator") -> CliRunner:
    """A runner for the ``zhisuan`` CLI whose HTTP calls go to ``world``'s in-process app as ``who``."""
    def routed(method: str, url: str, **kwargs: Any) -> Any:
        kwargs.pop("timeout", None)
        return world.client.request(method, url.removeprefix("http://zhisuan.test"), **kwargs)

    monkeypatch.setattr(cli_client.httpx, "request", routed)
    monkeypatch.setenv("ZHISUAN_SERVER", "http://zhisuan.test")
    monkeypatch.setenv("ZHISUAN_API_KEY", world.keys[who])
    return CliRunner()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make_settings(database_url: str, data_dir: Path) -> Settings:
    return Settings(data_dir=data_dir, database_url=database_url, register_local_site=False,
                    run_background_loops=False, scrypt_n=2**12, heartbeat_timeout_s=30)


@pytest.fixture
def api(database_url: str, tmp_path: Path, clock: Clock) -> Iterator[Api]:
    """The API over an empty database holding only the first operator."""
    settings = make_settings(database_url, tmp_path)
    app = create_app(settings, clock=clock, catalog=default_catalog())
    first = ensure_first_operator(app.state.ctx.sessions, settings)
    assert first is not None
    with TestClient(app) as client:
        yield Api(client=client, keys={"operator": first.api_key})


def issue(api: Api, user: str, role: str, **affiliation: str) -> str:
    api.ok("POST", "/users", "operator", {"username": user, "role": role, **affiliation})
    return str(api.ok("POST", "/keys", "operator", {"user": user, "name": f"{user} key"})["key"])


def build_world(api: Api) -> None:
    """Tenants acme and beta, providers p1 and p2 (sites s1, s2), each with a user and a key."""
    for tenant in ("acme", "beta"):
        api.ok("POST", "/tenants", "operator", {"name": tenant})
        api.keys[tenant] = issue(api, f"{tenant}-user", "tenant", tenant=tenant)
    for number in ("1", "2"):
        api.ok("POST", "/providers", "operator", {"name": f"p{number}", "revenue_share": "0.7"})
        api.keys[f"p{number}"] = issue(api, f"p{number}-user", "provider", provider=f"p{number}")
        api.ok("POST", "/sites", "operator",
               {"name": f"s{number}", "engine": "slurm", "region": "cn-east-1", "provider": f"p{number}"})
        api.keys[f"agent{number}"] = api.ok("POST", f"/sites/s{number}/agent-keys", "operator", {})["key"]


@pytest.fixture(scope="session")
def world_templates() -> Iterator[dict[str, tuple[str | Path, dict[str, str]]]]:
    """Per backend: a database holding the built world, and the world's keys (built once)."""
    templates: dict[str, tuple[str | Path, dict[str, str]]] = {}
    yield templates
    admin = postgres_admin_url()
    if "postgresql" in templates and admin:
        _drop_pg_database(admin, str(templates["postgresql"][0]))


@pytest.fixture
def world(request: pytest.FixtureRequest, backend: str, tmp_path_factory: pytest.TempPathFactory,
          world_templates: dict[str, tuple[str | Path, dict[str, str]]], tmp_path: Path, clock: Clock) -> Iterator[Api]:
    """The API over a copy of a database where the small world of ``build_world`` exists."""
    if backend not in world_templates:
        world_templates[backend] = make_world_template(request, backend, tmp_path_factory.mktemp("world"))
    template, keys = world_templates[backend]
    with copy_of(backend, template, tmp_path) as url:
        app = create_app(make_settings(url, tmp_path), clock=clock, catalog=default_catalog())
        with TestClient(app) as client:
            yield Api(client=client, keys=dict(keys))


def make_world_template(request: pytest.FixtureRequest, backend: str, where: Path) -> tuple[str | Path, dict[str, str]]:
    empty = empty_template(request, backend)
    if backend == "sqlite":
        path = where / "world.db"
        shutil.copy(empty, path)
        url, template = f"sqlite:///{path}", str(path)
    else:
        admin = postgres_admin_url()
        assert admin
        template = f"zhisuan_world_{uuid.uuid4().hex[:10]}"
        _create_pg_database(admin, template, template=str(empty))
        url = with_database(admin, template)
    settings = make_settings(url, where)
    app = create_app(settings, clock=Clock(), catalog=default_catalog())
    first = ensure_first_operator(app.state.ctx.sessions, settings)
    assert first is not None
    with TestClient(app) as client:
        built = Api(client=client, keys={"operator": first.api_key})
        build_world(built)
    app.state.engine.dispose()  # PostgreSQL copies a template only when nobody is connected to it
    return template, built.keys


def h100_node(name: str, count: int = 8, healthy: Callable[[int], bool] = lambda i: True) -> dict[str, Any]:
    return {
        "name": name, "cpu_cores": 128, "memory_mib": 2_048_000, "labels": {"rack": "r1"},
        "devices": [{"index": i, "uuid": f"GPU-{name}-{i}", "model": "NVIDIA H100 80GB HBM3",
                     "memory_mib": 81559, "healthy": healthy(i)} for i in range(count)],
    }
