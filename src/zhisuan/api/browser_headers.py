"""Headers that make browsers hold the console (and the API docs) to what they need.

The console loads its script and styles from /console/ and talks to /api/v1 only, so its policy
allows nothing but its own origin: an injected ``<script>`` or inline handler does not run, and no
other site may frame it. The Swagger and ReDoc pages (/docs, /redoc) start with a small inline
script and Swagger styles elements inline, so they get the same policy with inline code allowed;
they hold no credential of their own.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

STRICT_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                 "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
DOCS_POLICY = ("default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
               "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
DOCS_PATHS = ("/docs", "/redoc")

COMMON = [
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]


def policy_for(path: str) -> bytes:
    return (DOCS_POLICY if path.startswith(DOCS_PATHS) else STRICT_POLICY).encode()


class BrowserHeaders:
    """ASGI middleware adding Content-Security-Policy, X-Frame-Options DENY, nosniff and
    Referrer-Policy to every HTTP response (JSON answers too: a browser may be pointed at one)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        policy = policy_for(scope.get("path", ""))

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(b"content-security-policy", policy), *COMMON]
                message["headers"] = [*message.get("headers", []), *(h for h in extra if h[0] not in present)]
            await send(message)

        await self.app(scope, receive, with_headers)
