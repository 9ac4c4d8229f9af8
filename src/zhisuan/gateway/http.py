"""A small HTTP/1.1 server on asyncio protocols + httptools: keep-alive, pipelined requests handled
in order, chunked streaming responses with flow control, and disconnect notification.

Bounds (``HttpLimits``), each answered with a JSON error and the connection closed:
- request line (URL) longer than ``max_url_bytes`` → 414; request head (request line and headers)
  larger than ``max_head_bytes`` or with more than ``max_headers`` headers → 431;
- a body announced (``content-length``) or received larger than ``max_body_bytes`` → 413;
- slow clients: a request head not complete within ``head_timeout_s`` of its first byte, or a body not
  complete within ``body_timeout_s`` of the head → 408 (a slowloris holds a connection no longer);
- an idle keep-alive connection (no request in flight, none started) is closed after ``idle_timeout_s``.
A response being generated or streamed is never cut by these timers: they run only while the gateway
waits for the client.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any

import httptools  # type: ignore[import-untyped]

log = logging.getLogger(__name__)
MAX_BODY = 16 << 20

REASONS = {200: b"OK", 400: b"Bad Request", 401: b"Unauthorized", 403: b"Forbidden", 404: b"Not Found",
           405: b"Method Not Allowed", 408: b"Request Timeout", 413: b"Payload Too Large", 414: b"URI Too Long",
           429: b"Too Many Requests", 431: b"Request Header Fields Too Large", 500: b"Internal Server Error",
           502: b"Bad Gateway", 503: b"Service Unavailable", 504: b"Gateway Timeout"}


@dataclass(frozen=True)
class HttpLimits:
    max_url_bytes: int = 8 << 10
    max_head_bytes: int = 32 << 10
    max_headers: int = 100
    max_body_bytes: int = MAX_BODY
    head_timeout_s: float = 10.0
    body_timeout_s: float = 60.0
    idle_timeout_s: float = 75.0


DEFAULT_LIMITS = HttpLimits()


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
    def __init__(self, handler: Handler, limits: HttpLimits = DEFAULT_LIMITS) -> None:
        self.handler = handler
        self.limits = limits
        self._in_head = False  # between a request's first byte and the end of its headers
        self._in_body = False  # between the end of its headers and the end of its body
        self._head_bytes = 0
        self._header_count = 0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._deadline: float | None = None
        self._on_deadline: tuple[int, bytes] = (0, b"")
        self.loop = asyncio.get_event_loop()
        self.transport: asyncio.Transport | None = None
        self.peer: str | None = None  # the client's address (failed key checks are throttled per address)
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
        peer = transport.get_extra_info("peername")
        self.peer = str(peer[0]) if isinstance(peer, tuple) and peer else None
        self._arm(self.limits.idle_timeout_s, 0, b"")

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        if not self._in_body:
            # Count head bytes before httptools buffers them (it keeps a partial header in memory).
            end = data.find(b"\r\n\r\n")
            self._head_bytes += len(data) if end < 0 else end
            if self._head_bytes > self.limits.max_head_bytes:
                self._error_close(431, b"request header fields too large")
                return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._error_close(400, b"upgrades are not supported")
        except httptools.HttpParserError:
            self._error_close(400, b"malformed HTTP request")

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._cancel_timer()  # releases this connection now, not when the timer would fire
        cb, self.on_lost = self.on_lost, None
        if cb is not None:
            cb()

    def pause_writing(self) -> None:
        if self.on_pause is not None:
            self.on_pause()

    def resume_writing(self) -> None:
        if self.on_resume is not None:
            self.on_resume()

    # timers: only while waiting for the client (see the module doc)
    def _arm(self, after_s: float, status: int, message: bytes) -> None:
        """Set the connection's one deadline. Cheap per request (no timer made or cancelled): the timer
        is re-made only when the deadline moves earlier than it; when it fires early it re-arms."""
        self._deadline = deadline = self.loop.time() + after_s
        self._on_deadline = (status, message)
        if self._timer is None or deadline < self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = deadline
            self._timer = self.loop.call_at(deadline, self._fire)

    def _disarm(self) -> None:
        self._deadline = None  # the timer, if any, finds nothing to do

    def _cancel_timer(self) -> None:
        self._deadline = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fire(self) -> None:
        self._timer = None
        deadline = self._deadline
        if deadline is None or self.closed:
            return
        if self.loop.time() < deadline:  # moved later since the timer was set
            self._timer_at = deadline
            self._timer = self.loop.call_at(deadline, self._fire)
            return
        self._deadline = None
        self._timed_out(*self._on_deadline)

    def _timed_out(self, status: int, message: bytes) -> None:
        if not status:  # an idle keep-alive connection: close without a word
            self.abort()
        else:
            self._error_close(status, message)

    # httptools
    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = {}
        self._body = []
        self._body_len = 0
        self._in_head = True
        self._header_count = 0
        if not self._busy:  # a pipelined request waits its turn; its clock starts then (``_done``)
            self._arm(self.limits.head_timeout_s, 408, b"request head not received in time")

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > self.limits.max_url_bytes:
            self._error_close(414, b"request line too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > self.limits.max_headers:
            self._error_close(431, b"too many request header fields")
            return
        self._headers[name.lower()] = value

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._in_body = True
        self._head_bytes = 0
        length = self._headers.get(b"content-length", b"0")
        if length.isdigit() and int(length) > self.limits.max_body_bytes:
            self._error_close(413, b"request body too large")
            return
        if not self._busy:
            self._arm(self.limits.body_timeout_s, 408, b"request body not received in time")

    def on_body(self, body: bytes) -> None:
        if self.closed:
            return
        self._body_len += len(body)
        if self._body_len > self.limits.max_body_bytes:
            self._error_close(413, b"request body too large")
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        self._in_body = False
        self._head_bytes = 0
        self._disarm()
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
        elif self._in_head:
            self._arm(self.limits.head_timeout_s, 408, b"request head not received in time")
        elif self._in_body:
            self._arm(self.limits.body_timeout_s, 408, b"request body not received in time")
        else:
            self._arm(self.limits.idle_timeout_s, 0, b"")

    def _error_close(self, status: int, message: bytes) -> None:
        self._disarm()
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
        self._disarm()
        if self.transport is not None:
            self.transport.close()
        self.closed = True


async def serve(handler: Handler, host: str, port: int, *, reuse_port: bool = False,
                limits: HttpLimits = DEFAULT_LIMITS) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: HttpConnection(handler, limits), host, port, backlog=2048,
                                    reuse_port=reuse_port or None)
