"""Collisions between transactions become a 409 the caller can act on, never a 500."""

from __future__ import annotations

import sqlite3

import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.exc import IntegrityError, OperationalError

from zhisuan.api.errors import install_error_handlers


def app_raising(error: Exception) -> TestClient:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/boom")
    def boom() -> None:
        raise error

    return TestClient(app, raise_server_exceptions=False)


@pytest.mark.parametrize("orig", [psycopg.errors.DeadlockDetected("deadlock detected"),
                                  psycopg.errors.SerializationFailure("could not serialize access"),
                                  sqlite3.OperationalError("database is locked")])
def test_deadlocks_and_busy_databases_are_a_retryable_conflict(orig: Exception) -> None:
    response = app_raising(OperationalError("UPDATE nodes", {}, orig)).get("/boom")
    assert response.status_code == 409 and response.headers["retry-after"] == "1"
    assert response.json()["error"]["type"] == "Conflict"


def test_a_racing_insert_that_breaks_a_constraint_is_a_conflict() -> None:
    response = app_raising(IntegrityError("INSERT INTO tenants", {}, Exception("duplicate key"))).get("/boom")
    assert response.status_code == 409 and "nothing was written" in response.json()["error"]["message"]
    assert "duplicate key" not in response.text  # the database's own words stay inside


def test_other_database_failures_are_not_disguised_as_conflicts() -> None:
    response = app_raising(OperationalError("SELECT 1", {}, Exception("connection refused"))).get("/boom")
    assert response.status_code == 500
