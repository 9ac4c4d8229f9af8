"""Load generator for the control plane: N simulated node agents register, then heartbeat at an interval.

Each simulated agent sends the real agent's bodies (``zhisuan.agent.host.registration`` /
``heartbeat``: 8 devices per node here) with its own per-node agent key, like ``zhisuan agent``.
Beats are spread evenly over the interval; every node beats on its own schedule, so a slow server
shows as lag (a beat sent late) as well as latency. Bounded: ``--duration`` seconds of beats, then it
stops. Reports: registration rate; beats sent and achieved rate; latency p50/p95/p99/max (from the
scheduled send time — a beat that waited for a connection counts that wait — and from the actual
send); errors by status; 503s shed; nodes seen ``unreachable`` while beating (polled every 2 s with
the operator key, and at the end); the generator's own CPU and the server's.

    # its own platform on a throw-away PostgreSQL database (dropped at the end), 1,000 nodes, 10 s beats:
    uv run python benchmarks/controlplane/heartbeat_load.py --nodes 1000 --interval 10 --duration 60
    uv run python benchmarks/controlplane/heartbeat_load.py --backend sqlite --nodes 300 --duration 60
    # an already running control plane (agent keys issued through its API):
    uv run python benchmarks/controlplane/heartbeat_load.py --url http://127.0.0.1:8420 --operator-key zs_…

Output: one JSON object on stdout (``--json``) or a short table.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import resource
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

sys.path.insert(0, str(Path(__file__).resolve().parent))

from raw_http import Answer, Pool  # noqa: E402
from throwaway import Platform, prepare, serve, server_cpu_seconds  # noqa: E402

from zhisuan.agent.detection import DetectedDevice  # noqa: E402
from zhisuan.agent.host import heartbeat, registration  # noqa: E402

API = "/api/v1"
DEVICES_PER_NODE = 8


def node_devices(number: int) -> list[DetectedDevice]:
    return [DetectedDevice(index=i, uuid=f"GPU-{number:06d}-{i}", reported_name="NVIDIA H100 80GB HBM3",
                           model_key="h100-sxm", memory_mib=81559, healthy=True, health_detail="",
                           vendor="nvidia", tool="nvidia-smi")
            for i in range(DEVICES_PER_NODE)]


@dataclass
class Tally:
    latencies_ms: list[float] = field(default_factory=list)  # from the scheduled time
    service_ms: list[float] = field(default_factory=list)  # from the actual send
    statuses: Counter[int] = field(default_factory=Counter)
    transport_errors: int = 0
    timeouts: int = 0  # no answer within the generator's timeout (the wait for a free connection included)
    unreachable: set[str] = field(default_factory=set)
    seen_unreachable: set[str] = field(default_factory=set)  # wrongly or not (a shed node is quiet)
    # node → (sent, answered) of its last acknowledged beat (or registration)
    last_ok: dict[str, tuple[float, float]] = field(default_factory=dict)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def register_all(pool: Pool, names: list[str], keys: list[str], concurrency: int,
                       tally: Tally) -> tuple[float, Counter[int]]:
    statuses: Counter[int] = Counter()
    queue = list(zip(names, keys, strict=True))
    start = time.perf_counter()

    async def worker() -> None:
        while queue:
            name, key = queue.pop()
            number = int(name.rsplit("-", 1)[1])
            body = registration(name, node_devices(number), {"rack": f"r{number % 40}"})
            body["cpu_cores"], body["memory_mib"] = 128, 1_048_576
            for _ in range(20):  # a shed registration (503) is retried after Retry-After, as the agent does
                sent = time.perf_counter()
                answer = await pool.request("POST", f"{API}/agent/register", key, body)
                if answer.status != 503:
                    break
                await asyncio.sleep(float(answer.headers.get("retry-after", "1")))
            statuses[answer.status] += 1
            if answer.status == 200:
                tally.last_ok[name] = (sent, time.perf_counter())

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - start, statuses


async def beat_node(pool: Pool, name: str, key: str, body: dict[str, Any], first: float, interval: float,
                    until: float, tally: Tally) -> None:
    due = first
    while due < until:
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        sent = time.perf_counter()
        try:
            answer: Answer = await pool.request("POST", f"{API}/agent/heartbeat", key, body)
        except (OSError, asyncio.IncompleteReadError):
            tally.transport_errors += 1
        else:
            done = time.perf_counter()
            tally.statuses[answer.status] += 1
            if answer.status == 200:
                tally.last_ok[name] = (sent, done)
                tally.latencies_ms.append((done - due) * 1000)
                tally.service_ms.append((done - sent) * 1000)
        due += interval


async def poll_unreachable(pool: Pool, operator_key: str, until: float, timeout_s: float, tally: Tally) -> None:
    """Nodes listed unreachable although a beat of theirs was acknowledged before this poll was
    sent, and was itself sent less than the timeout before the poll's answer came back: the mark
    (no later than the poll's snapshot) came less than the timeout after that beat committed (no
    earlier than it was sent). A node whose beats were shed or late *is* quiet: marking it is the
    documented behaviour, not counted."""
    while time.perf_counter() < until:
        await asyncio.sleep(2)
        polled = time.perf_counter()
        answer = await pool.request("GET", f"{API}/nodes?status=unreachable&limit=1000", operator_key)
        returned = time.perf_counter()
        if answer.status != 200:
            continue
        for node in answer.json():
            tally.seen_unreachable.add(f"{node['site']}/{node['name']}")
            sent, answered = tally.last_ok.get(node["name"], (float("-inf"), float("-inf")))
            if answered < polled and returned - sent < timeout_s:
                tally.unreachable.add(f"{node['site']}/{node['name']}")


async def run(url: str, operator_key: str, keys: list[str], interval: float, duration: float,
              connections: int, register_concurrency: int, timeout_s: float) -> dict[str, Any]:
    parsed = urlparse(url)
    pool = Pool(parsed.hostname or "127.0.0.1", parsed.port or 80, connections)
    names = [f"sim-{number:06d}" for number in range(len(keys))]
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    tally = Tally()
    register_s, register_statuses = await register_all(pool, names, keys, register_concurrency, tally)
    start = time.perf_counter() + 0.5
    until = start + duration
    spacing = interval / max(1, len(keys))
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    beats = [beat_node(pool, name, key, heartbeat(name, node_devices(number)), start + number * spacing,
                       interval, until, tally)
             for number, (name, key) in enumerate(zip(names, keys, strict=True))]
    await asyncio.gather(poll_unreachable(pool, operator_key, until, timeout_s, tally), *beats)
    cpu2 = resource.getrusage(resource.RUSAGE_SELF)
    pool.close()
    ok = tally.latencies_ms
    return {
        "nodes": len(keys), "interval_s": interval, "duration_s": duration,
        "register_s": round(register_s, 2), "register_per_s": round(len(keys) / register_s, 1),
        "register_statuses": dict(register_statuses),
        "beats_ok": len(ok), "beats_per_s": round(len(ok) / duration, 1),
        "target_per_s": round(len(keys) / interval, 1),
        "p50_ms": round(percentile(ok, 0.50), 2), "p95_ms": round(percentile(ok, 0.95), 2),
        "p99_ms": round(percentile(ok, 0.99), 2), "max_ms": round(max(ok, default=float("nan")), 1),
        "service_p50_ms": round(percentile(tally.service_ms, 0.5), 2),
        "service_p99_ms": round(percentile(tally.service_ms, 0.99), 2),
        "statuses": dict(tally.statuses), "shed_503": tally.statuses.get(503, 0),
        "transport_errors": tally.transport_errors,
        "wrongly_unreachable": sorted(tally.unreachable),
        "generator_cpu_s_per_1000_requests": round(
            1000 * (cpu2.ru_utime + cpu2.ru_stime - cpu1.ru_utime - cpu1.ru_stime)
            / max(1, sum(tally.statuses.values())), 3),
        "generator_cpu_register_s": round(cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime, 2),
    }


def issue_keys_through_api(url: str, operator_key: str, site: str, count: int) -> list[str]:
    import httpx

    with httpx.Client(base_url=url + API, headers={"Authorization": f"Bearer {operator_key}"}, timeout=60) as c:
        return [c.post(f"/sites/{site}/agent-keys", json={}).raise_for_status().json()["key"] for _ in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between one node's beats")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of heartbeating")
    parser.add_argument("--backend", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--url", help="target a running control plane instead of starting one")
    parser.add_argument("--operator-key", help="with --url: an operator key (it issues the agent keys)")
    parser.add_argument("--site", default="bench", help="with --url: the site the agents join")
    parser.add_argument("--port", type=int, default=18420)
    parser.add_argument("--workers", type=int, default=1, help="API processes of the started platform")
    parser.add_argument("--connections", type=int, default=64, help="keep-alive connections to the API")
    parser.add_argument("--register-concurrency", type=int, default=16)
    parser.add_argument("--legacy-scrypt-n", type=int, default=None,
                        help="store the agent keys as scrypt at this cost, as keys issued before SHA-256 digests")
    parser.add_argument("--timeout", type=float, default=30.0, help="the server's heartbeat timeout (s)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    gc.freeze()  # the generator's own setup objects: keep its collections short
    platform: Platform | None = None
    try:
        if args.url:
            url, operator_key = args.url.rstrip("/"), args.operator_key
            keys = issue_keys_through_api(url, operator_key, args.site, args.nodes)
        else:
            platform = prepare(args.backend, args.nodes, args.legacy_scrypt_n)
            serve(platform, args.port, args.workers)
            url, operator_key, keys = platform.url, platform.operator_key, platform.agent_keys
        cpu_before = server_cpu_seconds(platform) if platform else 0.0
        result = asyncio.run(run(url, operator_key, keys, args.interval, args.duration, args.connections,
                                 args.register_concurrency, args.timeout))
        if platform is not None:
            result["server_cpu_s"] = round(server_cpu_seconds(platform) - cpu_before, 1)
            result["backend"], result["workers"] = args.backend, args.workers
    finally:
        if platform is not None:
            platform.drop()
    if args.json:
        print(json.dumps(result))
    else:
        for name, value in result.items():
            print(f"{name:32} {value}")
    if result["wrongly_unreachable"]:
        print(f"{len(result['wrongly_unreachable'])} node(s) marked unreachable while beating", file=sys.stderr)


if __name__ == "__main__":
    main()
