"""CPU per Redis command of the gateway's client, side by side in one process, one run:

    uv run --no-sync python benchmarks/gateway/bench_redis_client.py --before-src /tmp/before/src --rounds 3

- ``before``: the hand-written RESP client (``zhisuan/gateway/resp.py`` of the ``--before-src`` tree;
  skipped without it);
- ``redis-py``: redis-py's own ``execute_command`` (a pooled connection per command);
- ``pipelined``: ``PipelinedRedis`` (what the gateway uses now).

Each does INCRBY on Redis 7 at 127.0.0.1:6379 (DB 0, key ``zs:bench:redis-client``, deleted at the
end) from ``c`` concurrent tasks; CPU = this process's user + system time over the commands, median
of ``--rounds``, the clients taking turns within each round.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import resource
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from zhisuan.gateway.redis_access import PipelinedRedis, async_client

KEY = "zs:bench:redis-client"
URL = "redis://127.0.0.1:6379/0"
Execute = Callable[..., Awaitable[Any]]


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def old_client(src: Path) -> Any:
    spec = importlib.util.spec_from_file_location("before_resp", src / "zhisuan" / "gateway" / "resp.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.RedisClient()


async def measure(execute: Execute, concurrency: int, commands: int) -> tuple[float, float]:
    """(µs of CPU per command, commands per second)."""
    async def worker(n: int) -> None:
        for _ in range(n):
            await execute("INCRBY", KEY, 1)

    await worker(50)  # connect, warm up
    c0, t0 = cpu_s(), time.perf_counter()
    await asyncio.gather(*(worker(commands // concurrency) for _ in range(concurrency)))
    return 1e6 * (cpu_s() - c0) / commands, commands / (time.perf_counter() - t0)


async def main(a: argparse.Namespace) -> None:
    raw = async_client(URL)
    pipelined = PipelinedRedis.from_url(URL)
    clients: dict[str, Execute] = {"redis-py": raw.execute_command, "pipelined": pipelined.execute}
    before = old_client(a.before_src) if a.before_src else None
    if before is not None:
        clients = {"before": before.execute, **clients}
    print("| client | c | CPU per command (µs), median | commands/s, median |\n|---|---|---|---|")
    try:
        for concurrency in (1, 32):
            results: dict[str, list[tuple[float, float]]] = {name: [] for name in clients}
            for _ in range(a.rounds):
                for name, execute in clients.items():
                    results[name].append(await measure(execute, concurrency, a.commands))
            for name, rows in results.items():
                print(f"| {name} | {concurrency} | {statistics.median(r[0] for r in rows):.1f} "
                      f"| {statistics.median(r[1] for r in rows):,.0f} |", flush=True)
    finally:
        await raw.execute_command("DEL", KEY)
        await raw.aclose()
        await pipelined.close()
        if before is not None:
            await before.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--before-src", type=Path, default=None, help="a source tree with zhisuan/gateway/resp.py")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--commands", type=int, default=6400)
    asyncio.run(main(ap.parse_args()))
