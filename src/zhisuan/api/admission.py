"""Admission control: a bounded number of requests in flight per route class, the rest shed with 503.

Why: a request runs its sync dependencies and handler in worker threads (several hand-offs) and
holds its database connection from its first statement to its commit. With more requests in
flight than connections, threads block on the pool while the connections they wait for belong to
requests queued for a thread: the process locks up until the pool times out, and abandoned
requests keep queueing behind. Admitting at most as many requests as the pool has connections
(and fewer than there are threads) makes that wait impossible; what exceeds it waits a moment in a
bounded queue and is then refused with ``503`` and ``Retry-After`` before it does any database work,
so the platform stays responsive under overload and recovers the moment the load drops.

Classes (``route_class``): ``agent`` (``/api/v1/agent/…``: registrations, heartbeats, worker
syncs) and ``api`` (everything else), so a flood of one cannot shut out the other; console assets
and API docs are not gated (no database).
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

# The console's playground streams from the /v1 gateway without touching the database; it bounds its
# own streams (console.playground.MAX_STREAMS) rather than hold an API slot for a minute.
UNGATED_PREFIXES = ("/console/", "/docs", "/openapi.json", "/api/v1/playground/")


def route_class(path: str) -> str | None:
    """``agent``, ``api``, or None for paths that never touch the database."""
    if path.startswith("/api/v1/agent/"):
        return "agent"
    if path == "/" or path.startswith(UNGATED_PREFIXES):
        return None
    return "api"


class Gate:
    """At most ``limit`` holders; up to ``max_waiting`` callers wait (FIFO) for a slot, at most
    ``wait_s`` each. A freed slot passes straight to the first waiter, so none is skipped."""

    def __init__(self, limit: int, max_waiting: int, wait_s: float) -> None:
        self.limit, self.max_waiting, self.wait_s = limit, max_waiting, wait_s
        self.active = 0
        self.waiting: deque[asyncio.Future[None]] = deque()

    async def enter(self) -> bool:
        """True once a slot is held (the caller must ``leave``); False if shed."""
        if self.active < self.limit and not self.waiting:
            self.active += 1
            return True
        if len(self.waiting) >= self.max_waiting:
            return False
        slot: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiting.append(slot)
        try:
            await asyncio.wait({slot}, timeout=self.wait_s)
        except BaseException:  # the client went away while waiting
            self._give_up(slot)
            raise
        if slot.done():
            return True
        self._give_up(slot)
        return False

    def _give_up(self, slot: asyncio.Future[None]) -> None:
        if slot.done() and not slot.cancelled():
            self.leave()  # the slot was handed over just as the wait ended: pass it on
        else:
            slot.cancel()
            self.waiting.remove(slot)

    def leave(self) -> None:
        while self.waiting:
            slot = self.waiting.popleft()
            if not slot.done():
                slot.set_result(None)  # the slot moves to this waiter; ``active`` is unchanged
                return
        self.active -= 1


@dataclass(frozen=True)
class AdmissionLimits:
    agent: int
    api: int
    wait_s: float
    retry_after_s: int

    @property
    def total(self) -> int:
        return self.agent + self.api


class Admission:
    """ASGI middleware gating each route class (see the module docstring)."""

    def __init__(self, app: ASGIApp, *, limits: AdmissionLimits) -> None:
        self.app = app
        self.retry_after = str(limits.retry_after_s).encode()
        self.gates = {name: Gate(limit, max_waiting=4 * limit, wait_s=limits.wait_s)
                      for name, limit in (("agent", limits.agent), ("api", limits.api))}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = route_class(scope.get("path", "")) if scope["type"] == "http" else None
        if kind is None:
            await self.app(scope, receive, send)
            return
        gate = self.gates[kind]
        if not await gate.enter():
            await self.shed(send, kind)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            gate.leave()

    async def shed(self, send: Send, kind: str) -> None:
        body = json.dumps({"error": {"type": "Overloaded", "field": None, "message":
                                     f"the control plane is at capacity for {kind} requests; retry after "
                                     f"{self.retry_after.decode()} s"}}).encode()
        await send({"type": "http.response.start", "status": 503,
                    "headers": [(b"content-type", b"application/json"), (b"retry-after", self.retry_after),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
