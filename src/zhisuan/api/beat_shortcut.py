"""The known-beat shortcut: an ASGI layer answering a repeated heartbeat before anything else runs.

A steady fleet's heartbeats are mostly byte-for-byte repeats of a beat already applied
(``inventory.known_beats``). For those, routing, the middleware stack, JSON parsing, validation,
dependencies, the thread hand-off and the key check's SQL are pure overhead: this layer reads the
body (bounded by its declared ``Content-Length``), asks the process's ``KnownBeats`` and, on a
match, buffers the beat's time and sends the remembered answer. A beat it does not know yet (the
first after a restart) — or a known one whose node this process has not heard for a heartbeat
timeout (it may look quiet to the monitor: ``core.liveness.may_wait_in_buffer``) — is checked with
others in one statement (``inventory.first_beats``) and, if it changes nothing, answered and
remembered the same way. Anything else — no beat buffer,
another path, no bearer token, no or a too large ``Content-Length``, an unknown or changed body —
is passed on unchanged, the body replayed, to the full stack (which enforces every bound). A
registration (``/agent/register``) passes too, but first makes its key's known beat forgotten: it
may have changed the node's devices.

It sits outside admission control on purpose: a known beat costs no database connection, and
answering it even while the full path sheds load keeps live nodes from being marked unreachable.
Its answers are counted in the request metrics (``zhisuan_http_requests``, route
``/agent/heartbeat``, status 200) as the full stack's would be.
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from zhisuan.api.deps import AppContext
from zhisuan.api.metrics import HttpMetrics
from zhisuan.inventory.beats import BeatBuffer
from zhisuan.inventory.first_beats import FirstBeats, client_throttled

HEARTBEAT_PATH = "/api/v1/agent/heartbeat"
REGISTER_PATH = "/api/v1/agent/register"
HEARTBEAT_ROUTE = "/agent/heartbeat"  # the route template the request metrics label heartbeats with


def bearer_and_length(scope: Scope) -> tuple[bytes | None, int]:
    token, length = None, -1
    for name, value in scope["headers"]:
        if name == b"authorization" and value[:7].lower() == b"bearer ":
            token = value[7:].strip()
        elif name == b"content-length" and value.isdigit():
            length = int(value)
    return token, length


class BeatShortcut:
    """ASGI middleware: see the module docstring."""

    def __init__(self, app: ASGIApp, *, ctx: AppContext, max_body_bytes: int,
                 metrics: HttpMetrics | None = None) -> None:
        self.app, self.ctx, self.max_body_bytes, self.metrics = app, ctx, max_body_bytes, metrics
        self.first: FirstBeats | None = None

    def first_beats(self, beats: BeatBuffer) -> FirstBeats:
        """The batch resolver of this process's beat buffer (``inventory.first_beats``)."""
        if self.first is None or self.first.beats is not beats:
            ctx = self.ctx
            self.first = FirstBeats(ctx.sessions, beats, ctx.clock, ctx.settings.heartbeat_interval_s,
                                    client_throttled(ctx.verifier.throttle))
        return self.first

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        beats = self.ctx.beats
        if (beats is None or scope["type"] != "http" or scope["path"] not in (HEARTBEAT_PATH, REGISTER_PATH)
                or scope["method"] != "POST"):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        token, length = bearer_and_length(scope)
        if scope["path"] == REGISTER_PATH:  # a registration may change the devices: the next beat in full
            if token is not None:
                beats.known.forget(token.decode("latin-1"))
            await self.app(scope, receive, send)
            return
        if token is None or not 0 < length <= self.max_body_bytes:
            await self.app(scope, receive, send)
            return
        messages, body = await read_declared_body(receive, length)
        known = beats.known.answer(token, body) if body is not None else None
        if known is not None and beats.record(known.node_id, self.ctx.clock) is None:
            known = None  # no beat of its node here for a timeout: checked (and written) like a first beat
        if known is None and body is not None and beats.known.answering():  # checked in a batch, buffered
            client = scope.get("client")
            known = await self.first_beats(beats).resolve(token, body, client[0] if client else None)
        if known is None:
            await self.app(scope, replay(messages, receive), send)
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(known.ack)).encode())]})
        await send({"type": "http.response.body", "body": known.ack})
        if self.metrics is not None:  # in zhisuan_http_requests as if it had gone the whole way
            self.metrics.answered_early(HEARTBEAT_ROUTE, time.perf_counter() - started)


async def read_declared_body(receive: Receive, length: int) -> tuple[list[Message], bytes | None]:
    """The messages read and the body, or None for the body if it is not exactly ``length`` bytes
    (the full stack then answers it as it would have)."""
    messages: list[Message] = []
    size = 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return messages, None
        size += len(message.get("body", b""))
        if size > length:
            return messages, None
        if not message.get("more_body", False):
            break
    if size != length:
        return messages, None
    return messages, b"".join(m.get("body", b"") for m in messages)


def replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed
