"""Bounds on what a request may be, checked before anything routes or parses it.

- headers: at most ``max_header_bytes`` in all and ``max_headers`` of them (431);
- URL: no NUL character in the path or a query parameter (422 naming it): PostgreSQL cannot store
  one and no name holds one;
- body: at most ``max_body_bytes``, whether declared by Content-Length or streamed in chunks (413);
- JSON body: nested at most ``max_json_depth`` deep (422), so parsing it cannot exhaust the stack.

The body is read here in full (it is small by the bound above) and replayed to the app. Reading
it here, outside FastAPI, matters: FastAPI turns any exception raised while it reads a body into
"400 error parsing the body", which would hide a streamed body's 413.
"""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qsl, unquote

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# A JSON string literal (escapes included); removed before counting brackets, so "[" in text is no nesting.
JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
JSON_BRACKET = re.compile(rb"[\[\]{}]")


def json_depth(body: bytes) -> int:
    """How deeply ``body``'s arrays and objects nest (0 for a scalar); cheap, without parsing it."""
    depth = deepest = 0
    for match in JSON_BRACKET.finditer(JSON_STRING.sub(b"", body)):
        if match.group() in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def nul_in_url(scope: Scope) -> str | None:
    """The URL part holding a NUL character ("path" or the query parameter's name), if any."""
    if "\x00" in scope.get("path", ""):
        return "path"
    query = scope.get("query_string", b"").decode("latin-1")
    if "%00" in query or "\x00" in query:
        for name, value in parse_qsl(query, keep_blank_values=True):
            if "\x00" in name or "\x00" in value:
                return unquote(name).replace("\x00", "") or "query"
        return "query"
    return None


class BodyTooLarge(Exception):
    pass


class RequestBounds:
    """ASGI middleware enforcing the bounds of the module docstring on every HTTP request."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, max_header_bytes: int = 16_384,
                 max_headers: int = 100, max_json_depth: int = 32) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_header_bytes = max_header_bytes
        self.max_headers = max_headers
        self.max_json_depth = max_json_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = scope.get("headers") or []
        if len(headers) > self.max_headers or sum(len(k) + len(v) + 4 for k, v in headers) > self.max_header_bytes:
            await refuse(send, 431, "HeadersTooLarge",
                         f"request headers exceed {self.max_headers} headers or {self.max_header_bytes} bytes")
            return
        where = nul_in_url(scope)
        if where is not None:
            await refuse(send, 422, "InvalidInput", f"{where}: must not contain a NUL character", where)
            return
        declared = dict(headers).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await self.refuse_size(send)
            return
        try:
            body = await self.read_body(receive)
        except BodyTooLarge:
            await self.refuse_size(send)
            return
        if body and self.is_json(scope) and json_depth(body) > self.max_json_depth:
            await refuse(send, 422, "InvalidInput", f"JSON body nested deeper than {self.max_json_depth} levels")
            return
        await self.app(scope, replay(body, receive), send)

    async def read_body(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise BodyTooLarge()
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    @staticmethod
    def is_json(scope: Scope) -> bool:
        content_type = dict(scope.get("headers") or []).get(b"content-type", b"").lower()
        return b"json" in content_type

    async def refuse_size(self, send: Send) -> None:
        await refuse(send, 413, "PayloadTooLarge", f"request body larger than {self.max_body_bytes} bytes")


def replay(body: bytes, receive: Receive) -> Receive:
    """A receive callable that hands the app the already-read body, then defers to the server."""
    sent = False

    async def receive_again() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return receive_again


async def refuse(send: Send, status: int, kind: str, message: str, field: str | None = None) -> None:
    body = json.dumps({"error": {"type": kind, "message": message, "field": field}}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def uvicorn_options(max_header_bytes: int) -> dict[str, object]:
    """How ``zhisuan up`` runs uvicorn: with the h11 parser, whose ``h11_max_incomplete_event_size``
    caps the request head the server buffers (httptools has no such cap, so a client could stream
    an endless header block into memory before ``RequestBounds`` ever sees it). The API is not the
    hot path (the /v1 gateway runs its own server), so h11's speed is enough."""
    return {"http": "h11", "h11_max_incomplete_event_size": max_header_bytes + 8192,  # + the request line
            "timeout_keep_alive": 5}
