"""The registration shortcut: ``POST /api/v1/agent/register`` answered in an outer ASGI layer.

When a fleet starts, thousands of agents register within seconds. Through the full stack each
registration costs ~3 ms of server CPU before its share of the database work (six middleware layers,
FastAPI's routing and dependencies, the ``NodeRegister`` model's Python validators on 60-odd fields,
thread hand-offs) and admission control lets 12 in at a time, so the registrar's batches
(``inventory.registrar``) stay small and the rest wait a second in 503s. This layer takes a plain
registration before all of that: it reads the body (bounded by its declared ``Content-Length``),
checks it (``inventory.registration_body``, else the model itself), queues it with the registrations
waiting in this process and answers when its batch has committed — the batch as large as the
registrations that arrived while the previous one was written (at most ``registrar.MAX_BATCH``).

The answer is the route's: the same body and headers (``BrowserHeaders``), and for a refused
registration the same error answer, made by the app's own exception handlers (401 for a bad key,
403 for a key of another node or site, 422 naming the field for an unknown model, …). Anything it
cannot answer exactly as the route would is passed on unchanged, the body replayed, to the full stack,
which enforces every bound and answers as before: another path or method, a query string, no bearer
token, a body that is not JSON or fails the model (the route's 422 names the field), a declared
length missing, too large or not matching the body, headers beyond the request bounds, or more than
``MAX_WAITING`` registrations already queued (admission control then sheds the surplus with 503).

It sits inside the beat shortcut, which forgets the key's known beat first (the registration may
change the node's devices), and outside admission control: a queued registration holds no slot and
no connection; a whole batch uses one connection of the request pool. Its answers are counted in the
request metrics (``zhisuan_http_requests``, route ``/agent/register``) as the route's would be.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from zhisuan.api.beat_shortcut import REGISTER_PATH, read_declared_body, replay
from zhisuan.api.browser_headers import BrowserHeaders
from zhisuan.api.metrics import HttpMetrics
from zhisuan.errors import DomainError
from zhisuan.inventory.registrar import MAX_BATCH, Pending, Registrar
from zhisuan.inventory.registration_body import plain_registration
from zhisuan.inventory.schemas import HeartbeatAck, NodeRegister

log = logging.getLogger("zhisuan")

REGISTER_ROUTE = "/api/v1/agent/register"  # the route template the request metrics label registrations with
MAX_WAITING = 4 * MAX_BATCH  # beyond it, registrations go the whole way (where admission control sheds them)


def ack_body(ack: HeartbeatAck) -> bytes:
    """The route's JSON answer, byte for byte (FastAPI's ``JSONResponse`` of the model's JSON dump)."""
    return json.dumps(ack.model_dump(mode="json"), ensure_ascii=False, allow_nan=False, indent=None,
                      separators=(",", ":")).encode()


def parse_body(body: bytes) -> NodeRegister | None:
    """The registration ``body`` holds, or None if the route must answer it (not JSON, not valid)."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        return None
    registration = plain_registration(payload)
    if registration is not None:
        return registration
    try:
        return NodeRegister.model_validate(payload)
    except (ValidationError, DomainError, RecursionError):
        return None


class RegisterShortcut:
    """ASGI middleware: see the module docstring."""

    def __init__(self, app: ASGIApp, *, registrar: Registrar, handlers: Mapping[Any, Callable[..., Any]],
                 max_body_bytes: int, max_header_bytes: int, max_headers: int,
                 metrics: HttpMetrics | None = None) -> None:
        self.app, self.registrar, self.handlers, self.metrics = app, registrar, handlers, metrics
        self.max_body_bytes, self.max_header_bytes, self.max_headers = max_body_bytes, max_header_bytes, max_headers
        self.draining: set[asyncio.Future[None]] = set()
        self.answered = 0  # registrations answered here, not by the route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http" or scope["path"] != REGISTER_PATH or scope["method"] != "POST"
                or scope.get("query_string") or self.registrar.waiting() >= MAX_WAITING):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        token, length = self.token_and_length(scope)
        if token is None or not 0 < length <= self.max_body_bytes:
            await self.app(scope, receive, send)
            return
        messages, body = await read_declared_body(receive, length)
        registration = parse_body(body) if body is not None else None
        if registration is None:
            await self.app(scope, replay(messages, receive), send)
            return
        client = scope.get("client")
        pending = Pending(token, registration, client[0] if client else "unknown")
        if self.registrar.enqueue(pending):
            drain = asyncio.get_running_loop().run_in_executor(None, self.registrar.drain)
            self.draining.add(drain)
            drain.add_done_callback(self.draining.discard)
        try:
            response = Response(ack_body(await asyncio.wrap_future(pending.answer)), media_type="application/json")
        except Exception as error:  # noqa: BLE001 — answered as the route's exception handlers answer it
            response = await self.error_response(scope, error)
        await BrowserHeaders(response)(scope, receive, send)
        self.answered += 1
        self.count(response.status_code, time.perf_counter() - started)

    def token_and_length(self, scope: Scope) -> tuple[str | None, int]:
        """The bearer token as the route reads it (``HTTPBearer``: the first Authorization header)
        and the declared length; (None, -1) if the route must answer: no token, a body type that is
        not JSON, headers beyond ``RequestBounds``' limits."""
        headers = scope["headers"]
        if len(headers) > self.max_headers or sum(len(k) + len(v) + 4 for k, v in headers) > self.max_header_bytes:
            return None, -1
        authorization: bytes | None = None
        length, declared = -1, 0
        for name, value in headers:
            if name == b"authorization" and authorization is None:
                authorization = value
            elif name == b"content-length":
                declared += 1
                length = int(value) if value.isdigit() else -1
            elif name == b"content-type" and value.split(b";", 1)[0].strip().lower() != b"application/json":
                return None, -1
        if authorization is None or declared != 1:
            return None, -1
        scheme, _, credentials = authorization.decode("latin-1").partition(" ")
        credentials = credentials.strip()
        if scheme.lower() != "bearer" or not credentials:
            return None, -1
        return credentials, length

    async def error_response(self, scope: Scope, error: Exception) -> Response:
        """What the app's exception handler for ``error`` answers; 500 as Starlette's would be if none."""
        for kind in type(error).__mro__:
            handler = self.handlers.get(kind)
            if handler is None:
                continue
            try:
                answer = handler(Request(scope), error)
                response: Response = await answer if inspect.isawaitable(answer) else answer
                return response
            except Exception:  # noqa: BLE001 — the handler re-raised (not its case): a server error
                break
        log.error("registration failed", exc_info=error)
        return PlainTextResponse("Internal Server Error", status_code=500)

    def count(self, status: int, seconds: float) -> None:
        if self.metrics is not None:  # in zhisuan_http_requests as if it had gone the whole way
            self.metrics.requests.labels("POST", REGISTER_ROUTE, str(status)).inc()
            self.metrics.latency.labels("POST", REGISTER_ROUTE).observe(seconds)
