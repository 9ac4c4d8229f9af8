"""The one place where domain errors and request-validation failures become HTTP responses.

Every error body has the same shape: ``{"error": {"type", "message", "field"}}``.
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from zhisuan.errors import (
    Conflict,
    DomainError,
    Forbidden,
    InvalidInput,
    NotFound,
    TooManyRequests,
    Unauthenticated,
)

STATUS_BY_ERROR: dict[type[DomainError], int] = {
    NotFound: 404,
    Conflict: 409,
    InvalidInput: 422,
    Unauthenticated: 401,
    Forbidden: 403,
    TooManyRequests: 429,
}


def error_body(kind: str, message: str, field: str | None = None) -> dict[str, Any]:
    return {"error": {"type": kind, "message": message, "field": field}}


def _status_of(exc: DomainError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]  # type: ignore[index]
    return 400


async def _domain_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    status = _status_of(exc)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if isinstance(exc, TooManyRequests):
        headers = {"Retry-After": str(max(1, math.ceil(exc.retry_after_s)))}
    return JSONResponse(error_body(type(exc).__name__, exc.message, exc.field), status, headers=headers)


def describe_validation_error(errors: list[Any]) -> tuple[str, str | None]:
    """Turn pydantic's error list into one sentence that names the first offending field."""
    first = errors[0]
    location = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path")]
    field = ".".join(location) or None
    message = first.get("msg", "invalid value")
    extra = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    return (f"{field}: {message}{extra}" if field else f"{message}{extra}"), field


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    message, field = describe_validation_error(list(exc.errors()))
    return JSONResponse(error_body("InvalidInput", message, field), 422)


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return JSONResponse(error_body("HTTPError", str(exc.detail)), exc.status_code, headers=exc.headers)


# What the databases say when two transactions collide: PostgreSQL's deadlock and serialization
# failures (SQLSTATE 40P01, 40001) and SQLite's busy timeout. The transaction was rolled back whole.
RETRYABLE_SQLSTATES = {"40P01", "40001"}


def is_concurrent_change(exc: OperationalError) -> bool:
    return getattr(exc.orig, "sqlstate", None) in RETRYABLE_SQLSTATES or "database is locked" in str(exc.orig)


async def _integrity_error(_request: Request, exc: Exception) -> JSONResponse:
    """A constraint the services did not pre-check (a racing insert of the same name, an exclusion
    constraint of the ledger): nothing was written, the caller may look again."""
    return JSONResponse(error_body("Conflict", "a concurrent change conflicts with this request; nothing was written"),
                        409)


async def _operational_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, OperationalError)
    if not is_concurrent_change(exc):
        raise exc
    return JSONResponse(error_body("Conflict", "a concurrent change collided with this request; nothing was "
                                               "written, retry it"), 409, headers={"Retry-After": "1"})


async def _pool_timeout(_request: Request, exc: Exception) -> JSONResponse:
    """No database connection came free in time: the process is past its capacity. Say so and
    when to come back, rather than fail the request as an error of the platform."""
    return JSONResponse(error_body("Overloaded", "the control plane is at capacity; retry after 2 s"), 503,
                        headers={"Retry-After": "2"})


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(PoolTimeout, _pool_timeout)
    app.add_exception_handler(IntegrityError, _integrity_error)
    app.add_exception_handler(OperationalError, _operational_error)
    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
