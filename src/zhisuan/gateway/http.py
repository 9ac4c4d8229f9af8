"""A small HTTP/1.1 server on asyncio protocols + httptools: keep-alive, pipelined requests handled
in order, chunked streaming responses with flow control, and disconnect notification."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Coroutine
from email.utils import formatdate
from typing import Any

import httptools  # type: ignore[import-untyped]

log = logging.getLogger(__name__)
MAX_BODY = 16 << 20

REASONS = {200: b"OK", 400: b"Bad Request", 401: b"Unauthorized", 403: b"Forbidden", 404: b"Not Found",
           405: b"Method Not Allowed", 413: b"Payload Too Large", 429: b"Too Many Requests",
           500: b"Internal Server Error", 502: b"Bad Gateway", 503: b"Service Unavailable",
           504: b"Gateway Timeout"}


class Request:
    __slots__ = ("method", "path", "headers", "body", "keep_alive")

    def __init__(self, method: bytes, path: bytes, headers: dict[bytes, bytes], body: bytes, keep_alive: bool) -> None:
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body
        self.keep_alive = keep_alive


Handler = Callable[["HttpConnection", Request], Coroutine[Any, Any, None]]

_date = [b"", 0.0]


def http_date(loop: asyncio.AbstractEventLoop) -> bytes:
    now = loop.time()
    if now - _date[1] >= 1.0:  # type: ignore[operator]
        _date[0] = formatdate(usegmt=True).encode()
        _date[1] = now
    return _date[0]  # type: ignore[return-value]


class HttpConnection(asyncio.Protocol):
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.loop = asyncio.get_event_loop()
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.closed = False
        self._url = b""
        self._headers: dict[bytes, bytes] = {}
        self._body: list[bytes] = []
        self._body_len = 0
        self._busy = False
        self._queue: deque[Request] = deque()
        self._keep_alive = True
        # Set by a streaming exchange: called on disconnect, and on write back-pressure.
        self.on_lost: Callable[[], None] | None = None
        self.on_pause: Callable[[], None] | None = None
        self.on_resume: Callable[[], None] | None = None

    # asyncio
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._error_close(400, b"upgrades are not supported")
        except httptools.HttpParserError:
            self._error_close(400, b"malformed HTTP request")

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        cb, self.on_lost = self.on_lost, None
        if cb is not None:
            cb()

    def pause_writing(self) -> None:
        if self.on_pause is not None:
            self.on_pause()

    def resume_writing(self) -> None:
        if self.on_resume is not None:
            self.on_resume()

    # httptools
    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = {}
        self._body = []
        self._body_len = 0

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.lower()] = value

    def on_body(self, body: bytes) -> None:
        self._body_len += len(body)
        if self._body_len > MAX_BODY:
            self._error_close(413, b"request body too large")
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self.closed:
            return
        path = self._url.split(b"?", 1)[0]
        req = Request(self.parser.get_method(), path, self._headers, b"".join(self._body),
                      self.parser.should_keep_alive())
        if self._busy:
            self._queue.append(req)
        else:
            self._start(req)

    # handling
    def _start(self, req: Request) -> None:
        self._busy = True
        self._keep_alive = req.keep_alive
        task: asyncio.Task[None] = self.loop.create_task(self.handler(self, req))
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._busy = False
        self.on_lost = self.on_pause = self.on_resume = None
        if not task.cancelled() and task.exception() is not None:
            log.error("gateway handler failed", exc_info=task.exception())
            self._error_close(500, b"internal gateway error")
            return
        if self.closed:
            return
        if not self._keep_alive:
            assert self.transport is not None
            self.transport.close()
            return
        if self._queue:
            self._start(self._queue.popleft())

    def _error_close(self, status: int, message: bytes) -> None:
        if self.closed or self.transport is None:
            return
        body = b'{"error":{"message":"%s","type":"invalid_request_error","param":null,"code":null}}' % message
        self.respond(status, body, keep_alive=False)
        self.transport.close()
        self.closed = True

    # responses
    def respond(self, status: int, body: bytes, content_type: bytes = b"application/json",
                extra: bytes = b"", keep_alive: bool | None = None) -> None:
        if self.closed or self.transport is None:
            return
        ka = self._keep_alive if keep_alive is None else keep_alive
        self.transport.write(b"".join((
            b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\ndate: %s\r\n" % (
                status, REASONS.get(status, b"Unknown"), content_type, len(body), http_date(self.loop)),
            extra,
            b"" if ka else b"connection: close\r\n",
            b"\r\n",
            body,
        )))

    def start_stream(self, status: int = 200, content_type: bytes = b"text/event-stream", extra: bytes = b"") -> None:
        if self.closed or self.transport is None:
            return
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\n"
            b"date: %s\r\n%s\r\n"
            % (status, REASONS.get(status, b"Unknown"), content_type, http_date(self.loop), extra))

    def write_chunk(self, data: bytes) -> None:
        if data and not self.closed and self.transport is not None:
            self.transport.write(b"%x\r\n%s\r\n" % (len(data), data))

    def end_stream(self, last: bytes = b"") -> None:
        if self.closed or self.transport is None:
            return
        if last:
            self.transport.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(last), last))
        else:
            self.transport.write(b"0\r\n\r\n")

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.close()
        self.closed = True


async def serve(handler: Handler, host: str, port: int, *, reuse_port: bool = False) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: HttpConnection(handler), host, port, backlog=2048,
                                    reuse_port=reuse_port or None)
