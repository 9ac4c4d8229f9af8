"""Concurrency-1 latency of several targets, measured request by request in turn (A, B, C, A, B, …)
so that background noise — another process's disk flushes, a busy core — hits every target alike.

    python benchmarks/gateway/interleaved.py --target up=http://127.0.0.1:9001/v1/chat/completions,none \
        --target zhisuan=http://127.0.0.1:8000/v1/chat/completions,sk-... --duration 6 [--stream]

Prints one JSON line: {name: {requests, errors, p50_ms, p90_ms, p99_ms}}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any
from urllib.parse import urlsplit

from load import Conn  # type: ignore[import-not-found]


def request_bytes(url: str, key: str, stream: bool, max_tokens: int) -> tuple[str, int, bytes]:
    u = urlsplit(url)
    host, port = u.hostname or "127.0.0.1", u.port or 80
    body = json.dumps({"model": "fake-model", "messages": [{"role": "user", "content": "Hello there, how are you?"}],
                       "max_tokens": max_tokens, "stream": stream}).encode()
    head = (f"POST {u.path} HTTP/1.1\r\nhost: {host}:{port}\r\nauthorization: Bearer {key}\r\n"
            f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n").encode()
    return host, port, head + body


async def one(conn: Conn, request: bytes) -> tuple[int, float]:
    loop = asyncio.get_running_loop()
    conn.done = loop.create_future()
    t = time.perf_counter()
    assert conn.transport is not None
    conn.transport.write(request)
    status = await conn.done
    return status, time.perf_counter() - t


async def run(targets: dict[str, tuple[str, str]], duration: float, warmup: float, stream: bool,
              max_tokens: int) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    reqs = {name: request_bytes(url, key, stream, max_tokens) for name, (url, key) in targets.items()}
    conns = {}
    for name, (host, port, _) in reqs.items():
        _, conns[name] = await loop.create_connection(Conn, host, port)
    lat: dict[str, list[float]] = {name: [] for name in targets}
    errors = dict.fromkeys(targets, 0)
    t0 = time.perf_counter()
    while (now := time.perf_counter()) < t0 + warmup + duration:
        for name, (_, _, request) in reqs.items():
            status, secs = await one(conns[name], request)
            if now < t0 + warmup:
                continue
            if status == 200:
                lat[name].append(secs)
            else:
                errors[name] += 1
    out: dict[str, Any] = {}
    for name, xs in lat.items():
        xs.sort()

        def pct(p: float, xs: list[float] = xs) -> float:
            return xs[min(len(xs) - 1, int(p * len(xs)))] * 1000 if xs else float("nan")

        out[name] = {"requests": len(xs), "errors": errors[name], "p50_ms": pct(0.5), "p90_ms": pct(0.9),
                     "p99_ms": pct(0.99)}
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--target", action="append", required=True, help="name=url,key")
    p.add_argument("--duration", type=float, default=6.0)
    p.add_argument("--warmup", type=float, default=0.5)
    p.add_argument("--stream", action="store_true")
    p.add_argument("--max-tokens", type=int, default=5)
    a = p.parse_args()
    targets = {}
    for t in a.target:
        name, _, rest = t.partition("=")
        url, _, key = rest.partition(",")
        targets[name] = (url, key or "none")
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    print(json.dumps(asyncio.run(run(targets, a.duration, a.warmup, a.stream, a.max_tokens))))


if __name__ == "__main__":
    main()
