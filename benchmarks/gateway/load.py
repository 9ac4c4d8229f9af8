"""Closed-loop HTTP load client: N keep-alive connections, each sending the next request as soon as
the previous response has fully arrived (streamed responses included). raw asyncio + httptools +
uvloop, so that one client process can drive several thousand requests/s.

    python benchmarks/gateway/load.py --url http://127.0.0.1:8000/v1/chat/completions \
        --key sk-... --concurrency 32 --duration 8 [--stream]

Prints one JSON line: requests, errors, seconds, rps, p50_ms, p90_ms, p99_ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from urllib.parse import urlsplit

import httptools


class Conn(asyncio.Protocol):
    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.done: asyncio.Future[int] | None = None
        self.transport: asyncio.Transport | None = None
        self.status = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()

    def on_message_complete(self) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_result(self.status)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_exception(ConnectionError("closed"))


async def worker(host: str, port: int, request: bytes, deadline: float, lat: list[float], errors: list[int]) -> None:
    loop = asyncio.get_running_loop()
    _, conn = await loop.create_connection(Conn, host, port)
    while time.perf_counter() < deadline:
        conn.done = loop.create_future()
        t = time.perf_counter()
        assert conn.transport is not None
        conn.transport.write(request)
        try:
            status = await conn.done
        except ConnectionError:
            errors.append(0)
            _, conn = await loop.create_connection(Conn, host, port)
            continue
        if status == 200:
            lat.append(time.perf_counter() - t)
        else:
            errors.append(status)
    assert conn.transport is not None
    conn.transport.close()


async def run(url: str, key: str, concurrency: int, duration: float, stream: bool, max_tokens: int,
              warmup: float) -> dict[str, float]:
    u = urlsplit(url)
    host, port = u.hostname or "127.0.0.1", u.port or 80
    body = json.dumps({"model": "fake-model", "messages": [{"role": "user", "content": "Hello there, how are you?"}],
                       "max_tokens": max_tokens, "stream": stream}).encode()
    request = (f"POST {u.path} HTTP/1.1\r\nhost: {host}:{port}\r\nauthorization: Bearer {key}\r\n"
               f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n").encode() + body
    if warmup:
        await asyncio.gather(*(worker(host, port, request, time.perf_counter() + warmup, [], [])
                               for _ in range(concurrency)))
    lat: list[float] = []
    errors: list[int] = []
    t0 = time.perf_counter()
    await asyncio.gather(*(worker(host, port, request, t0 + duration, lat, errors) for _ in range(concurrency)))
    secs = time.perf_counter() - t0
    lat.sort()

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else float("nan")

    return {"requests": len(lat), "errors": len(errors), "seconds": secs, "rps": len(lat) / secs,
            "p50_ms": pct(0.50), "p90_ms": pct(0.90), "p99_ms": pct(0.99)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--key", default="none")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--duration", type=float, default=8.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--stream", action="store_true")
    p.add_argument("--max-tokens", type=int, default=5)
    a = p.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    print(json.dumps(asyncio.run(run(a.url, a.key, a.concurrency, a.duration, a.stream, a.max_tokens, a.warmup))))


if __name__ == "__main__":
    main()
