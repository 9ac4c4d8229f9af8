"""Shared fixtures: a migrated database per test on SQLite and on PostgreSQL, and API clients.

PostgreSQL comes from $ZHISUAN_TEST_POSTGRES_ADMIN_URL (scripts/test sets it, starting a server
if none answers). Each backend is migrated once into a template; every test gets a copy of it.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from zhisuan.store.migrate import upgrade_to_head

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def postgres_admin_url() -> str | None:
    return os.environ.get("ZHISUAN_TEST_POSTGRES_ADMIN_URL")


def with_database(admin_url: str, name: str) -> str:
    base, _, _ = admin_url.rpartition("/")
    return f"{base}/{name}"


def _create_pg_database(admin_url: str, name: str, template: str | None = None) -> None:
    with psycopg.connect(admin_url, autocommit=True) as connection:
        suffix = f" TEMPLATE {template}" if template else ""
        connection.execute(f'CREATE DATABASE "{name}"{suffix}')


def _drop_pg_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    upgrade_to_head(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str]:
    admin = postgres_admin_url()
    if not admin:
        if os.environ.get("CI") == "true":
            pytest.fail("CI must run the PostgreSQL tests: ZHISUAN_TEST_POSTGRES_ADMIN_URL is not set")
        pytest.skip("PostgreSQL not configured (run the suite through scripts/test, which provides one)")
    name = f"zhisuan_tpl_{uuid.uuid4().hex[:10]}"
    _create_pg_database(admin, name)
    from zhisuan.config import normalise_database_url

    upgrade_to_head(normalise_database_url(with_database(admin, name)))
    yield name
    _drop_pg_database(admin, name)


@contextmanager
def copy_of(backend: str, template: str | Path, tmp_path: Path) -> Iterator[str]:
    """A new database holding a copy of ``template`` (a SQLite file, or a PostgreSQL database name)."""
    if backend == "sqlite":
        path = tmp_path / f"zhisuan-{uuid.uuid4().hex[:8]}.db"
        shutil.copy(template, path)
        yield f"sqlite:///{path}"
        return
    admin = postgres_admin_url()
    assert admin
    name = f"zhisuan_t_{uuid.uuid4().hex[:12]}"
    _create_pg_database(admin, name, template=str(template))
    try:
        yield with_database(admin, name)
    finally:
        _drop_pg_database(admin, name)


def empty_template(request: pytest.FixtureRequest, backend: str) -> str | Path:
    fixture = "sqlite_template" if backend == "sqlite" else "postgres_template"
    template: str | Path = request.getfixturevalue(fixture)
    return template


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> Iterator[str]:
    """A freshly migrated, empty database of each backend."""
    with copy_of(backend, empty_template(request, backend), tmp_path) as url:
        yield url
