"""Exchanges of the gateway with a replica: a whole response, or an SSE stream relayed chunk by chunk
(see ``proxy`` for the metering rules they serve)."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable
from typing import Any

from zhisuan.gateway.http import HttpConnection
from zhisuan.gateway.openai_body import extract_usage
from zhisuan.gateway.router import Replica
from zhisuan.gateway.upstream import Exchange, UpstreamConnection

RETRY, DONE, FAILED = 0, 1, 2
UPSTREAM_HEAD = b"POST %s HTTP/1.1\r\nhost: %s\r\n%scontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
# A stream chunk carrying generated text (one token per chunk in llama.cpp and vLLM).
CONTENT = re.compile(rb'"(?:content|text)":\s*"[^"]')
EMPTY_CHOICES = re.compile(rb'"choices":\s*\[\]')


class FutureExchange(Exchange):
    """Resolves ``self.future`` once: DONE on completion, RETRY for a failure before the first byte
    (another replica may serve it), FAILED after it."""

    __slots__ = ()
    future: asyncio.Future[int]
    # (replica, arrival time) while the request awaits the replica's response head: its queue wait
    # (Replica.wait_ended), the autoscaler's queue-time measure.
    waiting: tuple[Replica, float] | None
    # How long after its arrival a request may keep waiting for its first byte at a replica that is
    # busy (proxy: ``max_queued_s``), and how many first-byte windows it was given past the first.
    queue_limit_s: float
    extended: int

    def keep_waiting(self, armed_at: float, window_s: float) -> bool | Awaitable[bool]:
        """Queued, not hung: the replica sent a byte (of any request, on any connection) since this
        request's timer was armed — or, when it sent none, its slots probe proves it alive and busy
        (``slots_probe``) — and the request has waited less than ``queue_limit_s``."""
        if self.waiting is None:
            return False
        replica, arrived = self.waiting
        if time.monotonic() - arrived >= self.queue_limit_s:
            return False
        if replica.pool.last_byte_at > armed_at:
            self.extended += 1
            return True
        return self._probed_busy(replica, window_s)

    async def _probed_busy(self, replica: Replica, window_s: float) -> bool:
        busy = await replica.slots_probe.busy(window_s)
        self.extended += busy
        return busy

    def head_arrived(self) -> None:
        if self.waiting is not None:
            replica, arrived = self.waiting
            self.waiting = None
            replica.wait_ended(arrived, time.monotonic())

    def abandon_wait(self) -> None:
        """No head came (failed, retried elsewhere): no longer waiting, and no wait measured."""
        if self.waiting is not None:
            replica, arrived = self.waiting
            self.waiting = None
            replica.wait_ended(arrived, None)

    def on_complete(self) -> None:
        if not self.future.done():
            self.future.set_result(DONE)

    def on_error(self, exc: Exception, before_first_byte: bool) -> None:
        if not self.future.done():
            self.future.set_result(RETRY if before_first_byte else FAILED)


class BufferedExchange(FutureExchange):
    """A whole (non-streaming) response."""

    __slots__ = ("future", "status", "chunks", "waiting", "queue_limit_s", "extended")

    def __init__(self, future: asyncio.Future[int]) -> None:
        self.future = future
        self.status = 0
        self.chunks: list[bytes] = []
        self.waiting = None
        self.queue_limit_s = 0.0
        self.extended = 0

    def on_head(self, status: int) -> None:
        self.head_arrived()
        self.status = status

    def on_body(self, data: bytes) -> None:
        self.chunks.append(data)


class StreamExchange(FutureExchange):
    """Relays an SSE stream chunk by chunk from the protocol callbacks, counting content chunks and
    holding back the usage chunk and ``[DONE]`` until the usage event is committed."""

    def __init__(self, future: asyncio.Future[int], client: HttpConnection, upstream: UpstreamConnection,
                 client_wants_usage: bool, started: float, event_id: str) -> None:
        self.future = future
        self.event_id = event_id
        self.client = client
        self.upstream = upstream
        self.client_wants_usage = client_wants_usage
        self.started = started
        self.status = 0
        self.error_chunks: list[bytes] = []
        self.buf = b""
        self.held: list[bytes] = []
        self.content_chunks = 0
        self.usage: dict[str, Any] | None = None
        self.ttft: float | None = None
        self.disconnected = False
        self.streaming = False
        self.waiting = None
        self.queue_limit_s = 0.0
        self.extended = 0

    def on_head(self, status: int) -> None:
        self.head_arrived()
        self.status = status
        if status == 200:
            self.streaming = True
            self.client.on_lost = self._client_lost
            self.client.on_pause = self.upstream.pause
            self.client.on_resume = self.upstream.resume
            self.client.start_stream(extra=b"x-request-id: %s\r\n" % self.event_id.encode())

    def on_body(self, data: bytes) -> None:
        if not self.streaming:
            self.error_chunks.append(data)
            return
        buf = self.buf + data if self.buf else data
        events = buf.split(b"\n\n")
        self.buf = events.pop()
        out = []
        for ev in events:
            if not ev:
                continue
            if ev.startswith(b"data: [DONE]"):
                self.held.append(ev + b"\n\n")
            elif b'"usage"' in ev and (usage := extract_usage(ev)) is not None:
                self.usage = usage
                if self.client_wants_usage:
                    self.held.append(ev + b"\n\n")
                elif not EMPTY_CHOICES.search(ev):  # usage riding on a content chunk: pass it on
                    out.append(ev + b"\n\n")
            else:
                if CONTENT.search(ev):
                    self.content_chunks += 1
                    if self.ttft is None:
                        self.ttft = time.monotonic() - self.started
                out.append(ev + b"\n\n")
        if out:
            self.client.write_chunk(b"".join(out))


    def _client_lost(self) -> None:
        self.disconnected = True
        self.upstream.close()  # stops the engine generating for nobody
        if not self.future.done():
            self.future.set_result(FAILED)
