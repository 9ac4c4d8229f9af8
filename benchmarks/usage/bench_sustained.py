"""Sustained usage ingestion: events/s offered by N gateways, stored in PostgreSQL, backlog over time.

Open loop, every part its own process (fork), into a throw-away control plane on PostgreSQL
(``zhisuan up``, one worker, ``benchmarks/controlplane/throwaway.py``):

- per gateway a **producer** appends its share of ``--rate`` requests/s to its ``UsageSpool`` (one
  group commit per 10 ms tick, ``--fsync`` optional), spread over ``--keys`` API keys and two models.
  It writes the spool's exact bytes (checked against ``encode_event`` at start) through the spool's
  group commit, but formats them from a template instead of ``json.dumps`` per request: encoding is
  the gateway's request cost (gateway benchmarks), and on this 2-core machine it would otherwise take
  the cores the ingestion path is being measured on;
- per gateway a **shipper**: ``SpoolShipper.run`` with ``HttpUsageSink(rollup=True)``, as
  ``zhisuan gateway`` runs it (``interval_s`` 0.2 s when idle);
- this process samples once a second: requests committed to the spools ("produced"), Σ ``requests``
  in ``usage_records`` ("stored"), backlog = produced − stored, and the CPU of the server's process
  group, the PostgreSQL backends of the database, the producers and the shippers.

After ``--seconds`` the producers stop, the backlog drains (bounded by ``--drain-timeout``), and the
stored usage is checked exactly: Σ requests, Σ input and Σ output tokens equal what was spooled.
Reported: stored/s over the steady window (after ``--warmup`` s), the backlog's slope over that window
(least squares; flat ≈ 0 events/s), its maximum and last value, and the timeline.

Before/after: run the same command with ``PYTHONPATH=<other checkout>/src`` (the whole pipeline —
spool, shipper, server — then runs that code), alternating.

    uv run --no-sync python benchmarks/usage/bench_sustained.py --rate 20000 --seconds 30 --gateways 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import time
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "controlplane"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ingest import free_port  # noqa: E402
from bench_pipeline import MODELS, add_keys, pg_backend_cpu  # noqa: E402
from throwaway import Platform, prepare, serve, server_cpu_seconds  # noqa: E402

import zhisuan.billing.gateway_sink  # noqa: E402, F401 - imported once here, not in each shipper's first batch
import zhisuan.gateway.usage as usage  # noqa: E402
from zhisuan.gateway.http_sink import HttpUsageSink  # noqa: E402
from zhisuan.gateway.protocols import UsageEvent  # noqa: E402

OBJECT_LINE = (b'{"event_id":"%b-%d","key_id":"%b","tenant_id":"tenant-bench-t","model":"%b","replica":"r1",'
            b'"prompt_tokens":%d,"completion_tokens":%d,"stream":false,"status":"ok","started_at":%a,'
            b'"ended_at":%a,"estimated":false,"endpoint":"chat.completions","extra":{}}\n')
ARRAY_LINE = b'["%b-%d","%b","tenant-bench-t","%b","r1",%d,%d,false,"ok",%a,%a,false,"chat.completions",{}]\n'
TEMPLATE = {"line": ARRAY_LINE}  # the spool format of the code under test (``check_template`` picks it)
TICK_S = 0.01


def request_line(prefix: str, n: int, keys: list[str], ended: float) -> bytes:
    """Request ``n``'s spool line (``encode_event``'s exact bytes, ``check_template``)."""
    return TEMPLATE["line"] % (prefix.encode(), n, keys[n % len(keys)].encode(), MODELS[n % 2].encode(),
                       *tokens(n), ended - 0.05, ended)


def tokens(n: int) -> tuple[int, int]:
    return 100 + n % 50, 20 + n % 7


def check_template(keys: list[str]) -> None:
    """Pick the line format (arrays since this change, objects before it) that ``encode_event`` writes."""
    ended = time.time()
    event = UsageEvent("g0-7", keys[7 % len(keys)], "tenant-bench-t", MODELS[1], "r1", *tokens(7), False, "ok",
                       ended - 0.05, ended)
    TEMPLATE["line"] = ARRAY_LINE if usage.encode_event(event).startswith(b"[") else OBJECT_LINE
    assert request_line("g0", 7, keys, ended) == usage.encode_event(event), "the template drifted from the spool"


def warm_up(platform: Platform, keys: list[str]) -> None:
    """One request (1 input, 1 output token) posted before the clock starts: the server's first request
    checks the operator key and loads its mappings."""
    async def go() -> None:
        sink = HttpUsageSink(platform.url, platform.operator_key, dead_letter_dir=platform.data_dir,
                             provider="bench", rollup=True)
        now = time.time()
        await sink.ingest([UsageEvent("warm", keys[0], "tenant-bench-t", MODELS[0], "r1", 1, 1, False, "ok",
                                      now, now)])
        await sink.aclose()

    asyncio.run(go())


async def commit(spool: usage.UsageSpool, lines: list[bytes]) -> None:
    """Pre-encoded lines through the spool's own group commit (``UsageSpool.append`` minus the encoding)."""
    fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    spool._pending.extend(lines)
    spool._waiters.extend([fut])
    if not spool._flushing:
        spool._flushing = True
        asyncio.ensure_future(spool._flush_loop())
    await fut


def produce(directory: Path, gateway: int, rate: float, keys: list[str], start_at: float, seconds: float,
            fsync: bool, produced: Synchronized) -> None:  # type: ignore[type-arg]
    async def go() -> None:
        spool = usage.UsageSpool(directory, fsync=fsync)
        spool.open()
        prefix, n = f"g{gateway}", 0
        await asyncio.sleep(max(0.0, start_at - time.time()))
        while (now := time.time()) < start_at + seconds:
            due = int(rate * (now - start_at))
            if due > n:
                await commit(spool, [request_line(prefix, i, keys, now) for i in range(n, due)])
                n = due
                produced.value = n
            await asyncio.sleep(TICK_S)
        spool.close()

    asyncio.run(go())


def ship(directory: Path, server: tuple[str, str], stop: Any) -> None:
    async def go() -> None:
        sink = HttpUsageSink(server[0], server[1], dead_letter_dir=directory, provider="bench", rollup=True)
        shipper = usage.SpoolShipper(directory, sink, interval_s=0.2)
        task = asyncio.ensure_future(shipper.run())
        while not stop.is_set():
            await asyncio.sleep(0.1)
        shipper.stop()
        await task
        await sink.aclose()

    asyncio.run(go())


def proc_cpu(pid: int | None) -> float:
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stored(connection: psycopg.Connection[Any]) -> tuple[int, int, int]:
    row = connection.execute(
        "SELECT coalesce(sum(requests), 0),"
        " coalesce(sum(CASE WHEN pricing_model = 'input_tokens' THEN quantity END), 0),"
        " coalesce(sum(CASE WHEN pricing_model = 'output_tokens' THEN quantity END), 0) FROM usage_records"
        " WHERE source_kind = 'tokens'").fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


def cpu_now(platform: Platform, producers: list[Any], shippers: list[Any]) -> dict[str, float]:
    return {"server": server_cpu_seconds(platform), "postgres": pg_backend_cpu(platform),
            "producers": sum(proc_cpu(p.pid) for p in producers), "shippers": sum(proc_cpu(p.pid) for p in shippers)}


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (t, backlog): events/s the backlog grows (0 = flat)."""
    if len(points) < 2:
        return 0.0
    mt, mb = statistics.fmean(p[0] for p in points), statistics.fmean(p[1] for p in points)
    den = sum((t - mt) ** 2 for t, _ in points)
    return sum((t - mt) * (b - mb) for t, b in points) / den if den else 0.0


def run(args: argparse.Namespace) -> dict[str, Any]:
    platform = prepare("postgresql", nodes=0)
    dirs = [Path(tempfile.mkdtemp(prefix="zs-sustained-")) for _ in range(args.gateways)]
    ctx = multiprocessing.get_context("fork")
    stop = ctx.Event()
    producers: list[Any] = []
    shippers: list[Any] = []
    try:
        keys = add_keys(platform, args.keys)
        check_template(keys)
        serve(platform, free_port())
        warm_up(platform, keys)
        connection = psycopg.connect(platform.database_url, autocommit=True)
        start_at = time.time() + 2.0
        counters = [ctx.Value("q", 0) for _ in dirs]
        for g, d in enumerate(dirs):
            producers.append(ctx.Process(target=produce, args=(d, g, args.rate / args.gateways, keys, start_at,
                                                               args.seconds, args.fsync, counters[g])))
            shippers.append(ctx.Process(target=ship, args=(d, (platform.url, platform.operator_key), stop)))
        for p in producers + shippers:
            p.start()
        time.sleep(max(0.0, start_at - time.time()))
        cpu0, timeline = cpu_now(platform, producers, shippers), []
        cpu_steady: dict[str, float] = {}
        deadline = start_at + args.seconds + args.drain_timeout
        while time.time() < deadline:
            time.sleep(1.0 - (time.time() - start_at) % 1.0)
            t = round(time.time() - start_at, 1)
            made, have = sum(c.value for c in counters), stored(connection)[0] - 1  # - the warm-up
            timeline.append((t, made, have, made - have))
            if not cpu_steady and t >= args.seconds:
                cpu_steady = cpu_now(platform, producers, shippers)
            if t > args.seconds + 0.5 and not any(p.is_alive() for p in producers) and have >= made:
                break
        stop.set()
        for p in producers + shippers:
            p.join(30)
        made, got = sum(c.value for c in counters), stored(connection)
        want = (made + 1, 1 + sum(tokens(n)[0] for c in counters for n in range(c.value)),
                1 + sum(tokens(n)[1] for c in counters for n in range(c.value)))  # + the warm-up
        assert got == want, f"stored (requests, in, out) {got} != spooled {want}"
        connection.close()
        return summarise(args, timeline, cpu0, cpu_steady)
    finally:
        stop.set()
        for p in producers + shippers:
            if p.is_alive():
                p.kill()
        platform.drop()
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)


def summarise(args: argparse.Namespace, timeline: list[tuple[float, int, int, int]], cpu0: dict[str, float],
              cpu1: dict[str, float]) -> dict[str, Any]:
    steady = [p for p in timeline if args.warmup <= p[0] <= args.seconds]
    first, last = steady[0], steady[-1]
    span = last[0] - first[0]
    produced_in_window = last[1] - first[1]
    stored_in_window = last[2] - first[2]
    drained_at = next((p[0] for p in timeline if p[0] > args.seconds and p[3] <= 0), None)
    return {
        "offered_per_s": args.rate, "gateways": args.gateways, "seconds": args.seconds, "fsync": args.fsync,
        "load_average": os.getloadavg(),
        "produced_per_s": round(produced_in_window / span),
        "stored_per_s": round(stored_in_window / span),
        "backlog_slope_per_s": round(slope([(p[0], p[3]) for p in steady])),
        "backlog_max": max(p[3] for p in steady), "backlog_at_stop": last[3],
        "drained_s_after_stop": None if drained_at is None else round(drained_at - args.seconds, 1),
        # CPU until the producers stop: per request produced (producers) or stored (the rest) by then
        "cpu_us_per_request": {k: round((cpu1[k] - cpu0[k]) / max(1, last[1 if k == "producers" else 2]) * 1e6, 1)
                               for k in cpu0},
        "backlog_timeline": [p[3] for p in timeline],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=20_000, help="requests/s offered by all gateways together")
    parser.add_argument("--seconds", type=float, default=30, help="how long the gateways produce")
    parser.add_argument("--warmup", type=float, default=5, help="seconds left out of the steady window")
    parser.add_argument("--gateways", type=int, default=1)
    parser.add_argument("--keys", type=int, default=8)
    parser.add_argument("--fsync", action="store_true", help="the spool fdatasyncs each group commit (as deployed)")
    parser.add_argument("--drain-timeout", type=float, default=60)
    parser.add_argument("--out", type=Path, help="append the result as one JSON line")
    args = parser.parse_args()
    result = run(args)
    result["code"] = os.environ.get("PYTHONPATH", "this checkout")
    text = json.dumps(result)
    print(text, flush=True)
    if args.out:
        with args.out.open("a") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
