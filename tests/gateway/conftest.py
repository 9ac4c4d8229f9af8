"""Gateway test harness: fake upstream engines as real subprocesses, and gateways running in a
background event loop so the (synchronous) official openai SDK can call them."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from tests.gateway.fake_engines import FakeQueueingEngine
from tests.ports import free_port
from zhisuan.gateway.protocols import KeyGrant, Limits
from zhisuan.gateway.server import GatewayConfig, GatewayServer

REPO = Path(__file__).resolve().parents[2]
FAKE_UPSTREAM = REPO / "benchmarks" / "gateway" / "fake_upstream.py"
T = TypeVar("T")



def wait_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise TimeoutError(url)


def wait_listening(port: int, timeout: float = 60.0) -> None:
    """Until something accepts TCP connections on ``port`` (a fixed pause lost that race on a loaded
    machine: the replica meant to drop connections refused them, like a dead one)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {port}") from None
            time.sleep(0.05)


@pytest.fixture
def fake_upstream() -> Iterator[Callable[..., int]]:
    """Starts fake OpenAI-compatible engines (benchmarks/gateway/fake_upstream.py); returns ports."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> int:
        port = free_port()
        p = subprocess.Popen([sys.executable, str(FAKE_UPSTREAM), "--port", str(port), *args])
        procs.append(p)
        if "--close-before-response" in args:  # it closes every connection, /health too: wait for it to accept
            wait_listening(port)
        else:
            wait_http(f"http://127.0.0.1:{port}/health")
        return port

    yield start
    for p in procs:
        p.terminate()
        p.wait(5)


class LoopThread:
    """An event loop on a background thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        fut: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return fut.result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


TOKEN = "sk-test-alice"


def grant(key_limits: Limits | None = None, tenant_limits: Limits | None = None, *, key_id: str = "alice",
          tenant_id: str | None = None, models: frozenset[str] | None = None) -> dict[str, Any]:
    def asdict(limits: Limits | None) -> dict[str, Any]:
        return {} if limits is None else {k: v for k, v in limits.__dict__.items() if v is not None}

    return {"token": TOKEN if key_id == "alice" else f"sk-test-{key_id}", "key_id": key_id,
            "tenant_id": tenant_id or f"t-{uuid.uuid4().hex[:8]}",
            "models": sorted(models) if models is not None else None,
            "key_limits": asdict(key_limits), "tenant_limits": asdict(tenant_limits)}


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Callable[..., GatewayServer]]:
    """Starts GatewayServers on a background loop: gateway(models={...}, keys=[...], redis_url=...)."""
    lt = LoopThread()
    servers: list[GatewayServer] = []

    def start(models: dict[str, list[dict[str, Any]]], keys: list[dict[str, Any]] | None = None,
              **kw: Any) -> GatewayServer:
        cfg = GatewayConfig(spool_dir=tmp_path / f"spool-{len(servers)}", models=models,
                            keys=keys if keys is not None else [grant()], ship_interval_s=0.05, **kw)

        async def make() -> GatewayServer:
            s = GatewayServer(cfg)
            await s.start()
            return s

        server = lt.run(make())
        server.loop_thread = lt  # type: ignore[attr-defined]
        servers.append(server)
        return server

    yield start
    for s in servers:
        lt.run(s.stop())
    lt.close()


def shipped(server: GatewayServer) -> list[Any]:
    """Ships the spool now and returns the sink's events."""
    lt: LoopThread = server.loop_thread  # type: ignore[attr-defined]

    async def go() -> None:
        await server.spool.drain()
        await server.shipper.ship_all()

    lt.run(go())
    return list(server.sink.events.values())  # type: ignore[attr-defined]


def one_replica(port: int, model: str = "fake-model", rid: str = "r1") -> dict[str, list[dict[str, Any]]]:
    return {model: [{"id": rid, "host": "127.0.0.1", "port": port}]}


__all__ = ["KeyGrant", "TOKEN", "grant", "one_replica", "shipped", "free_port"]

@pytest.fixture
def fake_engine() -> Iterator[Callable[..., FakeQueueingEngine]]:
    """Start FAKE queueing engines (``fake_engines.FakeQueueingEngine``); all are closed after the test."""
    engines: list[FakeQueueingEngine] = []

    def start(**kw: Any) -> FakeQueueingEngine:
        engines.append(FakeQueueingEngine(**kw))
        return engines[-1]

    yield start
    for e in engines:
        e.close()
