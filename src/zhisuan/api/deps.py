"""FastAPI dependencies: a database session per request and the authenticated principal."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session, sessionmaker

from zhisuan.config import Settings
from zhisuan.core.refs import MAX_ROW_ID
from zhisuan.errors import Unauthenticated
from zhisuan.identity.access import Principal, require_scope
from zhisuan.identity.keys import KeyVerifier
from zhisuan.identity.login import login_throttle
from zhisuan.identity.throttle import FailureThrottle
from zhisuan.store.base import transaction

if TYPE_CHECKING:
    from zhisuan.inventory.beats import BeatBuffer


@dataclass
class AppContext:
    """What one process shares between requests; kept on ``app.state.ctx``, never global."""

    settings: Settings
    sessions: sessionmaker[Session]
    verifier: KeyVerifier
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    login_throttle: FailureThrottle = field(default_factory=login_throttle)
    # Heartbeat times not yet written (inventory.beats); None: every beat is written at once
    # (a process without background loops has no flusher, e.g. the tests' apps).
    beats: BeatBuffer | None = None


def context(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


def db_session(ctx: Annotated[AppContext, Depends(context)]) -> Iterator[Session]:
    """One transaction per request: committed when the handler returns, rolled back on error.

    Used with ``scope="function"`` so the commit happens *before* the response is sent. With
    FastAPI's default ("request" scope, since 0.118) the exit code runs after the response went
    out, and a client that acts on the reply at once (the console logging in, then fetching with
    its new session key) could reach the database before the commit and get "unknown API key".
    """
    with transaction(ctx.sessions) as session:
        yield session


bearer = HTTPBearer(auto_error=False, description="an API key: zs_<id>_<secret>")


def client_address(request: Request) -> str:
    """The peer address (behind a reverse proxy: the proxy's; throttles then count per proxy)."""
    return request.client.host if request.client else "unknown"


def authenticated(
    request: Request,
    ctx: Annotated[AppContext, Depends(context)],
    session: Annotated[Session, Depends(db_session, scope="function")],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    if credentials is None:
        raise Unauthenticated("missing credential: send 'Authorization: Bearer <API key>'")
    return ctx.verifier.authenticate(session, credentials.credentials, ctx.clock(), client_address(request))


def with_scope(scope: str) -> Callable[[Principal], Principal]:
    def check(principal: Annotated[Principal, Depends(authenticated)]) -> Principal:
        require_scope(principal, scope)
        return principal

    return check


SessionDep = Annotated[Session, Depends(db_session, scope="function")]
ContextDep = Annotated[AppContext, Depends(context)]
Reader = Annotated[Principal, Depends(with_scope("read"))]
Writer = Annotated[Principal, Depends(with_scope("write"))]
Agent = Annotated[Principal, Depends(with_scope("agent"))]
# Numeric row ids in paths and queries: bounded by the INTEGER column they index, so an id beyond it
# is a 422 naming the parameter instead of an overflow in the database driver.
RowIdPath = Annotated[int, Path(ge=1, le=MAX_ROW_ID)]
RowIdQuery = Annotated[int | None, Query(ge=1, le=MAX_ROW_ID)]
