"""A write is committed before its response leaves the server.

A client acting on a reply at once — the console logging in and then fetching with its new session
key — must find what the reply announced. This calls the ASGI app directly and looks at the database
from a fresh session at the very moment the last body chunk of the response is sent: the row must be
there already. (With FastAPI's default dependency scope the commit ran after the response was sent,
and the console test failed now and then with "unknown API key".)
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from sqlalchemy import select

from tests.api.conftest import Api
from zhisuan.identity.models import ApiKey, Tenant


def call_and_inspect(api: Api, path: str, body: dict[str, Any], key: str | None, inspect: Any) -> dict[str, Any]:
    """POST through the raw ASGI interface; run ``inspect`` when the final body chunk is sent."""
    app = api.client.app
    payload = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    if key:
        headers.append((b"authorization", f"Bearer {key}".encode()))
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "headers": headers,
             "client": ("127.0.0.1", 1), "server": ("testserver", 80), "root_path": ""}
    seen: dict[str, Any] = {"body": b""}
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if delivered:
            await asyncio.sleep(3600)
        delivered = True
        return {"type": "http.request", "body": payload, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            seen["status"] = message["status"]
        elif message["type"] == "http.response.body":
            seen["body"] += message.get("body", b"")
            if not message.get("more_body", False):
                seen["found_at_send"] = inspect(json.loads(seen["body"]))

    asyncio.run(app(scope, receive, send))  # type: ignore[arg-type]
    assert seen["status"] < 300, seen
    return seen


def test_created_tenant_is_committed_when_the_response_is_sent(api: Api) -> None:
    sessions = api.client.app.state.ctx.sessions  # type: ignore[attr-defined]

    def tenant_exists(_: dict[str, Any]) -> bool:
        with sessions() as session:
            return session.scalar(select(Tenant).where(Tenant.name == "early-bird")) is not None

    seen = call_and_inspect(api, "/api/v1/tenants", {"name": "early-bird"}, api.keys["operator"], tenant_exists)
    assert seen["found_at_send"] is True


def test_login_session_key_is_committed_when_the_response_is_sent(api: Api) -> None:
    sessions = api.client.app.state.ctx.sessions  # type: ignore[attr-defined]
    api.ok("POST", "/users", "operator", {"username": "ops2", "role": "operator", "password": "a long password 1"})

    def key_exists(reply: dict[str, Any]) -> bool:
        key_id = reply["key"].split("_")[1]
        with sessions() as session:
            return session.scalar(select(ApiKey).where(ApiKey.key_id == key_id)) is not None

    seen = call_and_inspect(api, "/api/v1/auth/login", {"username": "ops2", "password": "a long password 1"},
                            None, key_exists)
    assert seen["found_at_send"] is True
