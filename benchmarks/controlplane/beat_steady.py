"""Heartbeats alone, at fleet scale: N nodes already registered, beating at an interval.

``heartbeat_load.py`` registers every simulated agent through the API first; at 10,000 nodes that
alone takes minutes (registration is measured there). Here the nodes, their 8 devices each and the
binding of each agent key to its node are written straight into the throw-away database, as a
control plane restarted under a registered fleet would find them (``health_digest`` empty: each
node's first beat is applied in full and its key checked, later ones are cheap). Then
the same simulated agents as ``heartbeat_load.py`` beat (same bodies, same spacing, same polling for
nodes wrongly marked unreachable) — all of it from ``heartbeat_load`` and ``throwaway``.

Reported: over the whole run and over its steady part (after the first ``--warmup`` seconds: the
first beats after a (re)start check keys); achieved beats/s, latency from the scheduled send time,
503s, transport errors, wrongly unreachable nodes, the server's CPU and the generator's own.

    uv run python benchmarks/controlplane/beat_steady.py --nodes 10000 --duration 60
    uv run python benchmarks/controlplane/beat_steady.py --nodes 10000 --workers 2 --duration 60
    # overload, then back to normal: 3x the nodes' rate for 20 s from t=20 s, reported per 5 s window
    uv run python benchmarks/controlplane/beat_steady.py --nodes 3000 --surge 3 --surge-at 20 --surge-s 20

Works unchanged against an older checkout (run it with that checkout's interpreter) for before/after.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select, update

sys.path.insert(0, str(Path(__file__).resolve().parent))

from heartbeat_load import API, Tally, node_devices, percentile, poll_unreachable  # noqa: E402
from raw_http import Pool  # noqa: E402
from throwaway import SITE, Platform, prepare, serve, server_cpu_seconds  # noqa: E402

from zhisuan.agent.host import heartbeat  # noqa: E402
from zhisuan.identity.models import ApiKey  # noqa: E402
from zhisuan.inventory.models import Device, Node, Site  # noqa: E402
from zhisuan.store.base import make_engine, make_session_factory, transaction  # noqa: E402


def seed_nodes(platform: Platform) -> list[str]:
    """One registered node per agent key (bound to it), 8 healthy H100s each; their names."""
    engine = make_engine(platform.database_url)
    names = [f"sim-{number:06d}" for number in range(len(platform.agent_keys))]
    now = datetime.now(UTC)
    with transaction(make_session_factory(engine)) as session:
        site_id = session.execute(select(Site.id).where(Site.name == SITE)).scalar_one()
        ids = session.execute(insert(Node).returning(Node.id, Node.name), [
            {"site_id": site_id, "name": name, "status": "ready", "drained": False, "cpu_cores": 128,
             "memory_mib": 1_048_576, "labels": {"rack": f"r{number % 40}"}, "managed_by": "agent",
             "registered_at": now, "last_heartbeat_at": now} for number, name in enumerate(names)]).all()
        by_name = {name: node_id for node_id, name in ids}
        session.execute(insert(Device), [
            {"node_id": by_name[name], "index": d.index, "uuid": d.uuid, "model": d.model_key,
             "reported_name": d.reported_name, "memory_mib": d.memory_mib, "health": "healthy",
             "health_detail": "", "available": True, "extra": {}}
            for number, name in enumerate(names) for d in node_devices(number)])
        for key, name in zip(platform.agent_keys, names, strict=True):
            session.execute(update(ApiKey).where(ApiKey.key_id == key.split("_")[1]).values(node_name=name))
    engine.dispose()
    return names


async def beat(pool: Pool, name: str, key: str, body: dict[str, Any], due: float, tally: Tally,
               sent_log: list[tuple[float, float, int]]) -> None:
    sent = time.perf_counter()
    try:
        answer = await pool.request("POST", f"{API}/agent/heartbeat", key, body)
    except (OSError, asyncio.IncompleteReadError):
        tally.transport_errors += 1
        return
    done = time.perf_counter()
    tally.statuses[answer.status] += 1
    sent_log.append((due, (done - due) * 1000, answer.status))
    if answer.status == 200:
        tally.last_ok[name] = (sent, done)


async def node_loop(pool: Pool, name: str, key: str, body: dict[str, Any], first: float, interval: float,
                    until: float, surge: tuple[float, float, float], tally: Tally,
                    sent_log: list[tuple[float, float, int]]) -> None:
    """Beats every ``interval`` — every ``interval / factor`` inside the surge window."""
    factor, surge_from, surge_to = surge
    due = first
    while due < until:
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await beat(pool, name, key, body, due, tally, sent_log)
        due += interval / factor if surge_from <= due < surge_to else interval


def window_stats(log: list[tuple[float, float, int]], start: float, end: float) -> dict[str, Any]:
    inside = [(lat, status) for due, lat, status in log if start <= due < end]
    ok = [lat for lat, status in inside if status == 200]
    span = max(1e-9, end - start)
    return {"beats_ok_per_s": round(len(ok) / span, 1), "shed_503_per_s": round(
        sum(1 for _, s in inside if s == 503) / span, 1), "p50_ms": round(percentile(ok, 0.5), 1),
        "p99_ms": round(percentile(ok, 0.99), 1)}


def fleet_beat_just_now(platform: Platform) -> None:
    """Every node beat a moment ago (as when the control plane restarts under a beating fleet): none
    is quiet because the setup took longer than the heartbeat timeout."""
    engine = make_engine(platform.database_url)
    with transaction(make_session_factory(engine)) as session:
        session.execute(update(Node).values(last_heartbeat_at=datetime.now(UTC)))
    engine.dispose()


async def run(platform: Platform, names: list[str], args: argparse.Namespace) -> dict[str, Any]:
    fleet_beat_just_now(platform)
    pool = Pool("127.0.0.1", args.port, args.connections)
    tally, log = Tally(), []
    start = time.perf_counter() + 0.5
    until = start + args.duration
    surge = (args.surge, start + args.surge_at, start + args.surge_at + args.surge_s) if args.surge > 1 \
        else (1.0, float("inf"), float("inf"))
    spacing = args.interval / max(1, len(names))
    cpu0, server0 = resource.getrusage(resource.RUSAGE_SELF), server_cpu_seconds(platform)
    loops = [node_loop(pool, name, key, heartbeat(name, node_devices(number)), start + number * spacing,
                       args.interval, until, surge, tally, log)
             for number, (name, key) in enumerate(zip(names, platform.agent_keys, strict=True))]
    await asyncio.gather(poll_unreachable(pool, platform.operator_key, until, args.timeout, tally), *loops)
    cpu1, server1 = resource.getrusage(resource.RUSAGE_SELF), server_cpu_seconds(platform)
    pool.close()
    requests = sum(tally.statuses.values())
    result: dict[str, Any] = {
        "nodes": len(names), "interval_s": args.interval, "duration_s": args.duration, "workers": args.workers,
        "offered_per_s": round(len(names) / args.interval, 1),
        "whole": window_stats(log, start, until),
        "steady": window_stats(log, start + args.warmup, until),
        "statuses": dict(tally.statuses), "transport_errors": tally.transport_errors,
        "wrongly_unreachable": len(tally.unreachable),
        "server_cpu_s": round(server1 - server0, 1),
        "server_cpu_ms_per_request": round(1000 * (server1 - server0) / max(1, requests), 2),
        "generator_cpu_s": round(cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime, 1),
    }
    if args.surge > 1:
        result["windows"] = {f"{t:.0f}-{t + 5:.0f}s": window_stats(log, start + t, start + t + 5)
                             for t in range(0, int(args.duration), 5)}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=20.0, help="seconds left out of the 'steady' figures")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--port", type=int, default=18440)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--legacy-scrypt-n", type=int, default=None,
                        help="store the agent keys as scrypt at this cost, as keys issued before SHA-256 digests")
    parser.add_argument("--timeout", type=float, default=30.0, help="the server's heartbeat timeout (s)")
    parser.add_argument("--surge", type=float, default=1.0, help="beat this many times faster in the surge window")
    parser.add_argument("--surge-at", type=float, default=20.0)
    parser.add_argument("--surge-s", type=float, default=20.0)
    parser.add_argument("--server-arg", action="append", default=[], help="extra 'zhisuan up' argument")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    platform = prepare("postgresql", args.nodes, args.legacy_scrypt_n)
    try:
        names = seed_nodes(platform)
        serve(platform, args.port, args.workers, args.server_arg)
        result = asyncio.run(run(platform, names, args))
    finally:
        platform.drop()
    print(json.dumps(result) if args.json else json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
