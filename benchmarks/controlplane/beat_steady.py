"""Heartbeats alone, at fleet scale: N nodes already registered, beating at an interval.

``heartbeat_load.py`` registers every simulated agent through the API first; at 10,000 nodes that
alone takes minutes (registration is measured there). Here the nodes, their 8 devices each and the
binding of each agent key to its node are written straight into the throw-away database, as a
control plane restarted under a registered fleet would find them: each node's last applied report
(``health_digest``) is the one its agent sends, so a first beat costs one read and a key digest
check (``inventory.beats.quick_beat``); ``--fresh-reports`` leaves it empty (the worst case: every
first beat applied in full, as if every node's health had changed while the control plane was down).
The server process is new: nothing in memory, its start-up grace running (``core.liveness``). Then
the same simulated agents as ``heartbeat_load.py`` beat (same bodies, same spacing, same polling for
nodes wrongly marked unreachable) — all of it from ``heartbeat_load`` and ``throwaway``. Like the
real agent (``agent.runner``), a simulated agent answered 503 waits ``Retry-After`` stretched by up
to 100 % at random and sends again, at most 4 times; then it gives that beat up.

Reported: over the whole run and over its steady part (after the first ``--warmup`` seconds);
achieved beats/s, latency from the scheduled send time (a shed and retried beat counts its waits),
503s, transport errors, wrongly unreachable nodes (and any marked at all), the time until every node
had a beat acknowledged (``all_heard_s``) and until the run settled (``settled_s``: from then on every
5-s window has p99 < 50 ms and no 503), the server's CPU (whole run, and per request in the steady
part) and the generator's own.

    uv run python benchmarks/controlplane/beat_steady.py --nodes 10000 --duration 60
    uv run python benchmarks/controlplane/beat_steady.py --nodes 10000 --workers 2 --duration 60
    # overload, then back to normal: 3x the nodes' rate for 60 s from t=40 s, reported per 5 s window
    uv run python benchmarks/controlplane/beat_steady.py --nodes 10000 --surge 3 --surge-at 40 --surge-s 60 \
        --duration 150

``--probe`` logs, inside the server, every GC pause, every background pass (wall and CPU) and every
stall of a 2-ms sampling thread, folded into the same 5-s windows (``pause_probe.py``). The
generator's own collector is frozen before the clock starts (``quiet_generator_gc``): its full
collections were the p99 windows every 30 s of session 5; ``--generator-gc default`` brings them back.

Works unchanged against an older checkout (run it with that checkout's interpreter) for before/after.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import os
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, insert, select, update

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pause_probe  # noqa: E402
from heartbeat_load import API, Tally, node_devices, percentile, poll_unreachable  # noqa: E402
from raw_http import Pool  # noqa: E402
from throwaway import SITE, Platform, prepare, serve, server_cpu_seconds  # noqa: E402

from zhisuan.agent.host import heartbeat  # noqa: E402
from zhisuan.agent.runner import shed_backoff_s  # noqa: E402
from zhisuan.identity.models import ApiKey  # noqa: E402
from zhisuan.inventory.models import Device, Node, Site  # noqa: E402
from zhisuan.inventory.schemas import Heartbeat  # noqa: E402
from zhisuan.inventory.service import report_digest  # noqa: E402
from zhisuan.store.base import make_engine, make_session_factory, transaction  # noqa: E402

SHED_RETRIES = 4  # as agent.runner._post
REQUEST_TIMEOUT_S = 30.0


def seed_nodes(platform: Platform, fresh_reports: bool) -> list[str]:
    """One registered node per agent key (bound to it), 8 healthy H100s each; their names."""
    engine = make_engine(platform.database_url)
    names = [f"sim-{number:06d}" for number in range(len(platform.agent_keys))]
    now = datetime.now(UTC)
    steady = None if fresh_reports else report_digest(
        Heartbeat.model_validate(heartbeat("any", node_devices(0))).devices)
    with transaction(make_session_factory(engine)) as session:
        site_id = session.execute(select(Site.id).where(Site.name == SITE)).scalar_one()
        ids = session.execute(insert(Node).returning(Node.id, Node.name), [
            {"site_id": site_id, "name": name, "status": "ready", "drained": False, "cpu_cores": 128,
             "memory_mib": 1_048_576, "labels": {"rack": f"r{number % 40}"}, "managed_by": "agent",
             "registered_at": now, "last_heartbeat_at": now, "health_digest": steady}
            for number, name in enumerate(names)]).all()
        by_name = {name: node_id for node_id, name in ids}
        session.execute(insert(Device), [
            {"node_id": by_name[name], "index": d.index, "uuid": d.uuid, "model": d.model_key,
             "reported_name": d.reported_name, "memory_mib": d.memory_mib, "health": "healthy",
             "health_detail": "", "available": True, "extra": {}}
            for number, name in enumerate(names) for d in node_devices(number)])
        keys = ApiKey.__table__.c
        session.connection().execute(  # one prepared statement for every key (executemany)
            update(ApiKey.__table__).where(keys.key_id == bindparam("kid")).values(node_name=bindparam("bound")),
            [{"kid": key.split("_")[1], "bound": name} for key, name in zip(platform.agent_keys, names, strict=True)])
    engine.dispose()
    return names


async def beat(pool: Pool, name: str, key: str, body: dict[str, Any], due: float, tally: Tally,
               sent_log: list[tuple[float, float, int]]) -> None:
    """One beat, sent again after each 503 as the real agent does (``shed_backoff_s``). Logged: its
    final answer, its latency from ``due``; every 503 counted in ``tally.statuses``."""
    for attempt in range(SHED_RETRIES + 1):
        sent = time.perf_counter()
        try:
            answer = await asyncio.wait_for(pool.request("POST", f"{API}/agent/heartbeat", key, body),
                                            REQUEST_TIMEOUT_S)
        except (OSError, asyncio.IncompleteReadError):
            tally.transport_errors += 1
            return
        except TimeoutError:
            tally.timeouts += 1
            return
        done = time.perf_counter()
        tally.statuses[answer.status] += 1
        if answer.status == 503 and "retry-after" in answer.headers and attempt < SHED_RETRIES:
            await asyncio.sleep(shed_backoff_s(answer.headers["retry-after"]))
            continue
        sent_log.append((due, (done - due) * 1000, answer.status))
        if answer.status == 200:
            tally.last_ok[name] = (sent, done)
        return


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
        if surge_from <= due < surge_to:
            due += interval / factor
            if due >= surge_to:  # back on its own phase: the fleet's beats stay spread over the interval
                due = first + math.ceil((due - first) / interval) * interval
        else:
            due += interval
        while due < time.perf_counter() - interval:  # retried past its next beats: those are skipped
            due += interval


class FirstAcks:
    """When each node's first beat was acknowledged (read off ``tally.last_ok`` every 0.5 s)."""

    def __init__(self, tally: Tally, nodes: int) -> None:
        self.tally, self.nodes = tally, nodes
        self.at: dict[str, float] = {}

    async def watch(self, until: float) -> None:
        while time.perf_counter() < until and len(self.at) < self.nodes:
            await asyncio.sleep(0.5)
            now = time.perf_counter()
            for name in self.tally.last_ok.keys() - self.at.keys():
                self.at[name] = now


def window_stats(log: list[tuple[float, float, int]], start: float, end: float) -> dict[str, Any]:
    inside = [(lat, status) for due, lat, status in log if start <= due < end]
    ok = [lat for lat, status in inside if status == 200]
    span = max(1e-9, end - start)
    return {"beats_ok_per_s": round(len(ok) / span, 1), "shed_503_per_s": round(
        sum(1 for _, s in inside if s == 503) / span, 1), "p50_ms": round(percentile(ok, 0.5), 1),
        "p99_ms": round(percentile(ok, 0.99), 1)}


def settle_times(log: list[tuple[float, float, int]], start: float, until: float,
                 first_ok: dict[str, float]) -> dict[str, float | None]:
    """``all_heard_s``: when the last node had its first beat acknowledged; ``settled_s``: the start
    of the first 5-s window from which on every window has p99 < 50 ms and no 503."""
    settled = None
    for t in range(0, int(until - start), 5):
        stats = window_stats(log, start + t, start + t + 5)
        good = stats["p99_ms"] < 50 and stats["shed_503_per_s"] == 0
        settled = (settled if settled is not None else float(t)) if good else None
    return {"all_heard_s": round(max(first_ok.values()) - start, 1) if first_ok else None,
            "settled_s": settled}


def fleet_beat_just_now(platform: Platform) -> None:
    """Every node beat a moment ago (as when the control plane restarts under a beating fleet): none
    is quiet because the setup took longer than the heartbeat timeout."""
    engine = make_engine(platform.database_url)
    with transaction(make_session_factory(engine)) as session:
        session.execute(update(Node).values(last_heartbeat_at=datetime.now(UTC)))
    engine.dispose()


def quiet_generator_gc() -> None:
    """Keep the generator's own full collections out of the latencies it measures.

    Latency counts from a beat's scheduled send time, so a pause of the *generator* delays every beat
    due during it. Its heap is 10,000 coroutines plus the log of every answer (1,000 tuples a second):
    with the default thresholds a full collection came about every 30 s and took 100–900 ms (0.1–0.2 s
    on a quiet machine) — the "one 5-s window in six with p99 166–235 ms" of session 5, measured
    here with ``--probe`` (BENCHMARKS.md, session 6). Everything built so far is frozen (never scanned
    again) and full collections are put off past the run; young collections go on (a few ms)."""
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, 1_000_000)


async def run(platform: Platform, names: list[str], args: argparse.Namespace) -> dict[str, Any]:
    fleet_beat_just_now(platform)
    if args.generator_gc == "frozen":  # before the clock starts: its one full collection delays no beat
        quiet_generator_gc()
    pool = Pool("127.0.0.1", args.port, args.connections)
    tally, log = Tally(), []
    start, start_wall = time.perf_counter() + 0.5, time.time() + 0.5
    until = start + args.duration
    surge = (args.surge, start + args.surge_at, start + args.surge_at + args.surge_s) if args.surge > 1 \
        else (1.0, float("inf"), float("inf"))
    spacing = args.interval / max(1, len(names))
    cpu0, server0 = resource.getrusage(resource.RUSAGE_SELF), server_cpu_seconds(platform)
    steady_cpu: list[float] = []

    async def sample_steady_cpu() -> None:
        await asyncio.sleep(max(0.0, start + args.warmup - time.perf_counter()))
        steady_cpu.append(server_cpu_seconds(platform))
        steady_cpu.append(float(sum(tally.statuses.values())))

    loops = [node_loop(pool, name, key, heartbeat(name, node_devices(number)), start + number * spacing,
                       args.interval, until, surge, tally, log)
             for number, (name, key) in enumerate(zip(names, platform.agent_keys, strict=True))]
    first_ok = FirstAcks(tally, len(names))
    await asyncio.gather(poll_unreachable(pool, platform.operator_key, until, args.timeout, tally),
                         sample_steady_cpu(), first_ok.watch(until), *loops)
    cpu1, server1 = resource.getrusage(resource.RUSAGE_SELF), server_cpu_seconds(platform)
    pool.close()
    requests = sum(tally.statuses.values())
    result: dict[str, Any] = {
        "nodes": len(names), "backend": args.backend, "interval_s": args.interval, "duration_s": args.duration,
        "workers": args.workers,
        "offered_per_s": round(len(names) / args.interval, 1),
        "whole": window_stats(log, start, until),
        "steady": window_stats(log, start + args.warmup, until),
        "statuses": dict(tally.statuses), "transport_errors": tally.transport_errors,
        "timeouts_30s": tally.timeouts,
        "wrongly_unreachable": len(tally.unreachable), "marked_unreachable": len(tally.seen_unreachable),
        **settle_times(log, start, until, first_ok.at),
        "server_cpu_s": round(server1 - server0, 1),
        "server_cpu_ms_per_request": round(1000 * (server1 - server0) / max(1, requests), 2),
        "steady_server_cpu_ms_per_request": round(1000 * (server1 - steady_cpu[0]) / max(
            1, requests - steady_cpu[1]), 3) if steady_cpu else None,
        "generator_cpu_s": round(cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime, 1),
        "generator_gc": args.generator_gc,
    }
    if args.windows or args.surge > 1:
        result["windows"] = {f"{t:.0f}-{t + 5:.0f}s": window_stats(log, start + t, start + t + 5)
                             for t in range(0, int(args.duration), 5)}
    if args.probe:
        probed = Path(os.environ["ZHISUAN_PAUSE_PROBE"])
        result["probe_server"] = pause_probe.summarise(probed, start_wall, args.duration)
        result["probe_generator"] = pause_probe.summarise(probed, start_wall, args.duration, "generator")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=20.0, help="seconds left out of the 'steady' figures")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--backend", choices=("postgresql", "sqlite"), default="postgresql",
                        help="sqlite: the one-box case (one process: SQLite has one writer)")
    parser.add_argument("--port", type=int, default=18440)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--legacy-scrypt-n", type=int, default=None,
                        help="store the agent keys as scrypt at this cost, as keys issued before SHA-256 digests")
    parser.add_argument("--timeout", type=float, default=30.0, help="the server's heartbeat timeout (s)")
    parser.add_argument("--surge", type=float, default=1.0, help="beat this many times faster in the surge window")
    parser.add_argument("--surge-at", type=float, default=20.0)
    parser.add_argument("--surge-s", type=float, default=20.0)
    parser.add_argument("--server-arg", action="append", default=[], help="extra 'zhisuan up' argument")
    parser.add_argument("--fresh-reports", action="store_true",
                        help="seed no last report: every node's first beat is applied in full (worst case)")
    parser.add_argument("--windows", action="store_true", help="report every 5-s window")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--generator-gc", choices=("frozen", "default"), default="frozen",
                        help="the generator's own collector: frozen before the beats start (default), or as "
                             "Python sets it (as up to session 5: its full collections land in the latencies)")
    parser.add_argument("--probe", action="store_true",
                        help="log the server's GC pauses, background passes and stalls (pause_probe.py), per window")
    args = parser.parse_args()
    if args.probe:  # inherited by the server process
        os.environ["ZHISUAN_PAUSE_PROBE"] = tempfile.mkdtemp(prefix="zs-probe-")
        os.environ["PYTHONPATH"] = os.pathsep.join(
            [str(Path(__file__).resolve().parent / "probe_site"), *filter(None, [os.environ.get("PYTHONPATH")])])
        pause_probe.watch_gc(pause_probe.Log(Path(os.environ["ZHISUAN_PAUSE_PROBE"]), "generator"))
    platform = prepare(args.backend, args.nodes, args.legacy_scrypt_n)
    try:
        names = seed_nodes(platform, args.fresh_reports)
        serve(platform, args.port, args.workers, args.server_arg)
        result = asyncio.run(run(platform, names, args))
    finally:
        platform.drop()
    print(json.dumps(result) if args.json else json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
