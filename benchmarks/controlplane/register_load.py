"""Registrations over real HTTP, as a fleet start brings them: N agents register at once, then again.

A throw-away platform (``throwaway.prepare``: PostgreSQL or SQLite, one per-node agent key each) is
served by ``zhisuan up`` in its own process (``--workers`` API processes). ``--agents`` simulated
agents, each on its own keep-alive connection, register the nodes with the real agent's body
(``zhisuan.agent.host.registration``, 8 devices each), every agent taking the next node as soon as
its previous one is answered; an answer 503 is retried after ``Retry-After`` as the agent does.
Then every node registers again (an agent restart: same body, same key). Nothing else runs: no
heartbeats, so the figures are registrations alone.

Reported per phase: registrations/s (wall), latency p50/p95/p99/max, statuses, retries after 503,
the server's CPU per registration (user + system of its process group) and the generator's own.
The run ends by checking the database: one node per agent, 8 devices each, each key bound to its node.

    uv run python benchmarks/controlplane/register_load.py --nodes 5000 --agents 256
    uv run python benchmarks/controlplane/register_load.py --nodes 5000 --agents 256 --workers 2
    # the tree before a change (same virtualenv, its sources first on the path):
    PYTHONPATH=/tmp/reg-before/src uv run python benchmarks/controlplane/register_load.py --nodes 5000

Output: one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parent))

from heartbeat_load import API, node_devices, percentile  # noqa: E402
from raw_http import Pool  # noqa: E402
from throwaway import Platform, prepare, serve, server_cpu_seconds  # noqa: E402

from zhisuan.agent.host import registration  # noqa: E402
from zhisuan.identity.models import ApiKey  # noqa: E402
from zhisuan.inventory.models import Device, Node  # noqa: E402
from zhisuan.store.base import make_engine, make_session_factory  # noqa: E402


def body_of(number: int) -> dict[str, Any]:
    body = registration(f"sim-{number:06d}", node_devices(number), {"rack": f"r{number % 40}"})
    body["cpu_cores"], body["memory_mib"] = 128, 1_048_576
    return body


async def phase(pool: Pool, bodies: list[dict[str, Any]], keys: list[str], agents: int) -> dict[str, Any]:
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    retries = 0
    queue = list(range(len(keys)))[::-1]

    async def agent() -> None:
        nonlocal retries
        while queue:
            number = queue.pop()
            sent = time.perf_counter()
            for _ in range(20):
                answer = await pool.request("POST", f"{API}/agent/register", keys[number], bodies[number])
                if answer.status != 503:
                    break
                retries += 1
                await asyncio.sleep(float(answer.headers.get("retry-after", "1")))
            latencies.append((time.perf_counter() - sent) * 1000)
            statuses[answer.status] += 1

    start = time.perf_counter()
    await asyncio.gather(*(agent() for _ in range(agents)))
    elapsed = time.perf_counter() - start
    return {"registrations_per_s": round(len(keys) / elapsed, 1), "seconds": round(elapsed, 2),
            "p50_ms": round(percentile(latencies, 0.5), 1), "p95_ms": round(percentile(latencies, 0.95), 1),
            "p99_ms": round(percentile(latencies, 0.99), 1), "max_ms": round(max(latencies), 1),
            "statuses": dict(statuses), "retried_503": retries}


def cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run(platform: Platform, agents: int) -> dict[str, Any]:
    port = int(platform.url.rsplit(":", 1)[1])
    pool = Pool("127.0.0.1", port, agents)
    keys = platform.agent_keys
    bodies = [body_of(number) for number in range(len(keys))]
    result: dict[str, Any] = {}
    for name in ("first_registration", "re_registration"):
        server0, client0 = server_cpu_seconds(platform), cpu_self()
        result[name] = await phase(pool, bodies, keys, agents)
        server, client = server_cpu_seconds(platform) - server0, cpu_self() - client0
        result[name]["server_cpu_ms_per_registration"] = round(server / len(keys) * 1000, 3)
        result[name]["generator_cpu_ms_per_registration"] = round(client / len(keys) * 1000, 3)
    pool.close()
    return result


def landed(platform: Platform) -> dict[str, Any]:
    """What the database holds after the run: nodes, devices, keys bound to their node."""
    engine = make_engine(platform.database_url)
    try:
        with make_session_factory(engine)() as session:
            nodes = session.execute(select(func.count(Node.id))).scalar_one()
            devices = session.execute(select(func.count(Device.id))).scalar_one()
            bound = session.execute(select(func.count(ApiKey.id)).where(ApiKey.node_name.is_not(None))).scalar_one()
    finally:
        engine.dispose()
    return {"nodes": nodes, "devices": devices, "keys_bound": bound}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=5000)
    parser.add_argument("--agents", type=int, default=256, help="agents registering at once (one connection each)")
    parser.add_argument("--backend", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--workers", type=int, default=1, help="API processes")
    parser.add_argument("--port", type=int, default=0, help="0: a free loopback port")
    args = parser.parse_args()
    platform = prepare(args.backend, args.nodes)
    try:
        serve(platform, args.port or free_port(), args.workers)
        result = {"backend": args.backend, "nodes": args.nodes, "agents": args.agents, "workers": args.workers,
                  "tree": os.environ.get("PYTHONPATH") or "this checkout", "load_average": os.getloadavg()[0],
                  **asyncio.run(run(platform, args.agents)), "landed": landed(platform),
                  "load_average_after": round(os.getloadavg()[0], 2)}
    finally:
        platform.drop()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
