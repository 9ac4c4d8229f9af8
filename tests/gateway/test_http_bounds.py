"""Bounds of the gateway's HTTP server: head and body sizes, slow and idle clients, and bodies the JSON
parser cannot take — each answered with a 4xx in OpenAI's error shape (never a 500) or a closed socket."""

from __future__ import annotations

import socket
import time
from typing import Any

import httpx

from tests.gateway.conftest import TOKEN, one_replica
from zhisuan.gateway.http import HttpLimits
from zhisuan.gateway.server import GatewayServer

LIMITS = HttpLimits(max_url_bytes=1024, max_head_bytes=4096, max_headers=20, max_body_bytes=64 << 10,
                    head_timeout_s=0.5, body_timeout_s=0.5, idle_timeout_s=0.5)


def start(gateway: Any, fake_upstream: Any) -> GatewayServer:
    return gateway(one_replica(fake_upstream()), http=LIMITS)  # type: ignore[no-any-return]


def connect(server: GatewayServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=5)


def read_all(sock: socket.socket) -> bytes:
    """Everything until the server closes the connection (raises if it stays open for 5 s)."""
    out = b""
    while chunk := sock.recv(65536):
        out += chunk
    return out


def status(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1])


def test_oversized_request_line_headers_and_body_are_refused(gateway: Any, fake_upstream: Any) -> None:
    server = start(gateway, fake_upstream)
    url, auth = server.base_url + "/chat/completions", {"Authorization": f"Bearer {TOKEN}"}
    assert httpx.post(server.base_url + "/chat/completions?" + "a" * 2000, headers=auth, json={}).status_code == 414
    assert httpx.post(url, headers={**auth, "x-big": "b" * 5000}, json={}).status_code == 431
    many = {f"x-h{i}": "1" for i in range(30)}
    assert httpx.post(url, headers={**auth, **many}, json={}).status_code == 431
    response = httpx.post(url, headers=auth, content=b"[" + b"0," * (40 << 10) + b"0]")
    assert response.status_code == 413
    assert response.json()["error"]["message"] == "request body too large"
    # A head that never ends is cut at the size bound, not buffered without end.
    with connect(server) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nx-long: " + b"c" * 8000)
        assert status(read_all(sock)) == 431


def test_deeply_nested_or_unparseable_json_is_a_400(gateway: Any, fake_upstream: Any) -> None:
    server = start(gateway, fake_upstream)
    url, auth = server.base_url + "/chat/completions", {"Authorization": f"Bearer {TOKEN}"}
    response = httpx.post(url, headers=auth, content=b"[" * 20000 + b"]" * 20000)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "json_too_deep"
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    for bad in (b'{"model": "fake-model"', b"\xff\xfe", b"[1, 2]", b"null", b'"x"'):
        assert httpx.post(url, headers=auth, content=bad).status_code == 400, bad


def test_slow_and_idle_clients_are_cut_off(gateway: Any, fake_upstream: Any) -> None:
    server = start(gateway, fake_upstream)
    with connect(server) as sock:  # slowloris: a head trickling in
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n")
        started = time.monotonic()
        assert status(read_all(sock)) == 408
        assert time.monotonic() - started < 3
    with connect(server) as sock:  # a body announced and never sent
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{")
        assert status(read_all(sock)) == 408
    with connect(server) as sock:  # idle keep-alive after a served request: closed quietly
        sock.sendall(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        raw = read_all(sock)
        assert status(raw) == 200 and raw.count(b"HTTP/1.1") == 1
    with connect(server) as sock:  # a connection that never sends anything
        assert read_all(sock) == b""


def test_odd_prompt_shapes_are_counted_not_crashed_on() -> None:
    from zhisuan.gateway.openai_body import estimate_prompt_tokens, prompt_text_bytes

    deep: list[object] = ["ab"]
    for _ in range(5000):  # deeper than Python recursion allows
        deep = [deep]
    assert prompt_text_bytes({"input": deep}) == 2
    odd = {"messages": [{"role": "user", "content": [{"type": "text", "text": 5}, {"text": "héllo"}]}, "x", None]}
    assert prompt_text_bytes(odd) == 1 + 6
    assert estimate_prompt_tokens(odd) == 2
