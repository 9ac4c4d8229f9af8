"""A minimal asyncio Redis (RESP2) client: one pipelined connection, replies matched in order.

Only what the gateway needs (EVALSHA/EVAL, INCRBY, GET, PING). It reconnects on the next call after
the connection drops; calls in flight when it drops fail with ConnectionError.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any


class RedisError(Exception):
    pass


class _Incomplete(Exception):
    pass


Incomplete = _Incomplete  # raised by ``parse`` on a partial reply


def encode(args: tuple[Any, ...]) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


def parse(buf: bytes | bytearray, pos: int) -> tuple[Any, int]:
    """One reply from ``buf`` at ``pos`` → (value, next pos); raises _Incomplete."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        raise _Incomplete
    kind, line = buf[pos : pos + 1], bytes(buf[pos + 1 : end])
    pos = end + 2
    if kind == b"+":
        return line.decode(), pos
    if kind == b"-":
        return RedisError(line.decode()), pos
    if kind == b":":
        return int(line), pos
    if kind == b"$":
        n = int(line)
        if n < 0:
            return None, pos
        if len(buf) < pos + n + 2:
            raise _Incomplete
        return bytes(buf[pos : pos + n]), pos + n + 2
    if kind == b"*":
        n = int(line)
        if n < 0:
            return None, pos
        items = []
        for _ in range(n):
            item, pos = parse(buf, pos)
            items.append(item)
        return items, pos
    raise RedisError(f"bad reply type {kind!r}")


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.buf = bytearray()
        self.waiters: deque[asyncio.Future[Any]] = deque()
        self.transport: asyncio.Transport | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        pos = 0
        while self.waiters:
            try:
                value, pos = parse(self.buf, pos)
            except _Incomplete:
                break
            fut = self.waiters.popleft()
            if not fut.done():
                if isinstance(value, RedisError):
                    fut.set_exception(value)
                else:
                    fut.set_result(value)
        del self.buf[:pos]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        while self.waiters:
            fut = self.waiters.popleft()
            if not fut.done():
                fut.set_exception(ConnectionError("redis connection lost"))


class RedisClient:
    def __init__(self, host: str = "127.0.0.1", port: int = 6379, db: int = 0) -> None:
        self.host, self.port, self.db = host, port, db
        self._proto: _Protocol | None = None
        self._connecting: asyncio.Lock | None = None

    @classmethod
    def from_url(cls, url: str) -> RedisClient:
        rest = url.split("://", 1)[-1]
        hostport, _, db = rest.partition("/")
        host, _, port = hostport.partition(":")
        return cls(host or "127.0.0.1", int(port or 6379), int(db or 0))

    async def _connection(self) -> _Protocol:
        proto = self._proto
        if proto is not None and not proto.closed:
            return proto
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._proto is None or self._proto.closed:
                loop = asyncio.get_running_loop()
                _, proto = await loop.create_connection(_Protocol, self.host, self.port)
                self._proto = proto
                if self.db:
                    await self._send(proto, ("SELECT", self.db))
        assert self._proto is not None
        return self._proto

    @staticmethod
    def _send(proto: _Protocol, args: tuple[Any, ...]) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        proto.waiters.append(fut)
        assert proto.transport is not None
        proto.transport.write(encode(args))
        return fut

    async def execute(self, *args: Any) -> Any:
        proto = await self._connection()
        return await self._send(proto, args)

    async def close(self) -> None:
        if self._proto is not None and self._proto.transport is not None:
            self._proto.transport.close()
        self._proto = None
