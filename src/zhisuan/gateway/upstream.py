"""Persistent HTTP/1.1 keep-alive connections to one replica, parsed with httptools.

A connection carries one exchange at a time and calls its ``Exchange`` back from the protocol
callbacks — no task switch per response chunk. ``send`` may arm a first-byte timeout: a replica
that sends no byte of its response in time fails the exchange "before the first byte" (retryable)
with ``FirstByteTimeout``, and the connection is closed (an engine stops work for a closed client) —
unless the exchange, asked when the timer fires (``Exchange.keep_waiting``), judges the request merely
queued: the timer is then armed for another window. The pool records when its replica last sent a
byte on any connection (``UpstreamPool.last_byte_at``), the evidence that it is busy and not hung.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable

import httptools  # type: ignore[import-untyped]


class FirstByteTimeout(TimeoutError):
    """The replica sent no byte of its response within the first-byte timeout."""


class Exchange:
    """Receives one upstream response. Subclasses override the callbacks."""

    def on_head(self, status: int) -> None: ...

    def on_body(self, data: bytes) -> None: ...

    def on_complete(self) -> None: ...

    def on_error(self, exc: Exception, before_first_byte: bool) -> None: ...

    def keep_waiting(self, armed_at: float, window_s: float) -> bool | Awaitable[bool]:
        """The first-byte timer (armed at ``armed_at``, monotonic) fired with no byte yet: True to wait
        one more window (the request is queued at a busy replica), False to fail it; or an awaitable
        of that answer (a probe of the replica)."""
        return False


class UpstreamConnection(asyncio.Protocol):
    def __init__(self, pool: UpstreamPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.exchange: Exchange | None = None
        self.got_bytes = False
        self.closed = False
        self.reused = False
        self.timed_out = False
        self._timer: asyncio.TimerHandle | None = None
        self._armed_at = 0.0
        self._judging: asyncio.Future[bool] | None = None

    # asyncio
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.pool.last_byte_at = time.monotonic()  # the replica is alive (see keep_waiting)
        if not self.got_bytes:
            self.got_bytes = True
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.discard(self)
        if self.exchange is not None:
            self._fail(exc or ConnectionResetError("upstream closed the connection"))

    # httptools
    def on_headers_complete(self) -> None:
        if self.exchange is not None:
            self.exchange.on_head(self.parser.get_status_code())

    def on_body(self, body: bytes) -> None:
        if self.exchange is not None:
            self.exchange.on_body(body)

    def on_message_complete(self) -> None:
        exchange, self.exchange = self.exchange, None
        if self.parser.should_keep_alive() and not self.closed:
            self.pool.release(self)
        else:
            self.close()
        if exchange is not None:
            exchange.on_complete()

    # ours
    def send(self, data: bytes, exchange: Exchange, first_byte_timeout_s: float | None = None) -> None:
        self.exchange = exchange
        self.got_bytes = False
        self.timed_out = False
        # The upstream may have closed between connect (or pooling) and now: connection_lost then
        # ran with no exchange to fail, and a write to a closed transport is silently dropped —
        # the request would wait forever. Fail it at once as "before the first byte" (retryable).
        if self.closed or self.transport is None or self.transport.is_closing():
            self._fail(ConnectionResetError("upstream closed the connection before the request was sent"))
            return
        self.transport.write(data)
        if first_byte_timeout_s is not None:
            self._arm(first_byte_timeout_s)

    def _arm(self, after_s: float) -> None:
        self._armed_at = time.monotonic()
        self._timer = asyncio.get_running_loop().call_later(after_s, self._first_byte_timeout, after_s)

    def _first_byte_timeout(self, after_s: float) -> None:
        self._timer = None
        exchange = self.exchange
        if exchange is None or self.got_bytes:
            return
        verdict = exchange.keep_waiting(self._armed_at, after_s)
        if verdict is True:
            self._arm(after_s)
        elif verdict is False:
            self._time_out(after_s)
        else:
            self._judging = asyncio.ensure_future(verdict)
            self._judging.add_done_callback(lambda done: self._judged(done, exchange, after_s))

    def _judged(self, done: asyncio.Future[bool], exchange: Exchange, after_s: float) -> None:
        self._judging = None
        if self.exchange is not exchange or self.got_bytes:
            return  # answered, or failed otherwise, while the replica was probed
        if not done.cancelled() and done.exception() is None and done.result():
            self._arm(after_s)
        else:
            self._time_out(after_s)

    def _time_out(self, after_s: float) -> None:
        self.timed_out = True
        self._fail(FirstByteTimeout(f"no response byte within {after_s:g} s"))

    def _fail(self, exc: Exception) -> None:
        exchange, self.exchange = self.exchange, None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.close()
        if exchange is not None:
            exchange.on_error(exc, not self.got_bytes)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def pause(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()


class UpstreamPool:
    def __init__(self, host: str, port: int, *, max_idle: int = 256, connect_timeout_s: float = 3.0) -> None:
        self.host = host
        self.port = port
        self.max_idle = max_idle
        self.connect_timeout_s = connect_timeout_s
        self.idle: list[UpstreamConnection] = []
        self.last_byte_at = 0.0  # monotonic time of the replica's last response byte, any connection
        self.host_header = f"{host}:{port}".encode()

    async def acquire(self) -> UpstreamConnection:
        while self.idle:
            conn = self.idle.pop()
            if not conn.closed:
                conn.reused = True
                return conn
        loop = asyncio.get_running_loop()
        _, proto = await asyncio.wait_for(
            loop.create_connection(lambda: UpstreamConnection(self), self.host, self.port), self.connect_timeout_s)
        return proto

    def release(self, conn: UpstreamConnection) -> None:
        if len(self.idle) < self.max_idle:
            self.idle.append(conn)
        else:
            conn.close()

    def discard(self, conn: UpstreamConnection) -> None:
        if conn in self.idle:
            self.idle.remove(conn)

    def close(self) -> None:
        for conn in self.idle:
            conn.close()
        self.idle.clear()
