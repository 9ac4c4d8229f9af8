"""Gateway → control plane usage, end to end: how fast a spooled backlog drains, and CPU per request.

The gateway's own usage path, in this process: ``--events`` requests' ``UsageEvent`` s are spooled first
(``UsageSpool``, fsync off; spread over ``--keys`` API keys of one tenant and two models, their end
times spread over the last seconds as at 20,000 requests/s), then a ``SpoolShipper`` with
``HttpUsageSink`` drains the spool into a throw-away control plane on PostgreSQL (``zhisuan up``, one
worker, a child process) and the drain is timed: requests stored/s is the rate the control plane keeps
up with — any offered rate below it leaves the backlog flat. (An open-loop run, producing while shipping,
was tried first: on this shared 2-core machine the producer and the shipper starve each other in one
process, which measures the benchmark, not ingestion.) CPU per request: the server's process group,
the PostgreSQL backends of the benchmark database (pg_stat_activity), and this process (the gateway
side: spool read, decode, roll-up, HTTP). At the end the stored usage is checked exactly: Σ requests,
Σ input and Σ output tokens in ``usage_records`` equal what was spooled.

``--gateways N`` splits the backlog over N spools drained at once by N shipper processes into the one
control plane (the wall time runs from their common start to the last one's end): what the control
plane takes from several gateways, which one shipper — a single Python process on a shared core —
cannot offer.

Codes compared in one run, alternating, each on a fresh database:
- ``rollup``: ``HttpUsageSink(rollup=True)`` (the default): sums per key × model × second;
- ``per-request``: ``HttpUsageSink(rollup=False)``: one event (two records) per request;
- ``before`` (with ``--before-src DIR``): the server runs that checkout's code (``PYTHONPATH=DIR``);
  the gateway side sends one event per request in 500-event requests (the old sink's setting).

    uv run --no-sync python benchmarks/usage/bench_pipeline.py --events 200000 \
        --codes rollup,per-request,before --before-src /tmp/zs-before/src
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "controlplane"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ingest import free_port  # noqa: E402
from throwaway import Platform, prepare, serve, server_cpu_seconds  # noqa: E402

from zhisuan.gateway.http_sink import HttpUsageSink  # noqa: E402
from zhisuan.gateway.protocols import UsageEvent  # noqa: E402
from zhisuan.gateway.usage import SpoolShipper, UsageSpool  # noqa: E402
from zhisuan.identity.keys import issue_key  # noqa: E402
from zhisuan.identity.models import Tenant, User  # noqa: E402
from zhisuan.store.base import make_engine, make_session_factory, transaction  # noqa: E402

MODELS = ("qwen-7b", "smol")


def add_keys(platform: Platform, keys: int) -> list[str]:
    engine = make_engine(platform.database_url)
    with transaction(make_session_factory(engine)) as session:
        tenant = Tenant(name="bench-t", display_name="bench")
        session.add(tenant)
        session.flush()
        user = User(username="bench-user", role="tenant", tenant_id=tenant.id)
        session.add(user)
        session.flush()
        ids = [str(issue_key(session, user, name=f"k{n}", scopes=["inference"], expires_at=None).row.key_id)
               for n in range(keys)]
    engine.dispose()
    return ids


def pg_backend_cpu(platform: Platform) -> float:
    """CPU seconds of the PostgreSQL backends connected to the benchmark database."""
    assert platform.pg_database is not None
    with psycopg.connect(platform.database_url) as connection:
        pids = [row[0] for row in connection.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (platform.pg_database,)).fetchall()]
    tick, total = os.sysconf("SC_CLK_TCK"), 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


@dataclass
class Round:
    code: str
    produced: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    stored: int = 0
    seconds: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)
    posts: int = 0


def shipper_for(server: tuple[str, str], code: str, spool_dir: Path) -> tuple[SpoolShipper, HttpUsageSink]:
    sink = HttpUsageSink(server[0], server[1], dead_letter_dir=spool_dir, provider="bench",
                         rollup=code == "rollup", max_events=500 if code == "before" else 1000)
    return SpoolShipper(spool_dir, sink, interval_s=0.05), sink


async def spool_backlog(platform: Platform, keys: list[str], code: str, args: argparse.Namespace,
                        result: Round) -> list[Path]:
    """The backlog: what ``--gateways`` gateways spooled while the control plane was busy (request n in
    spool n mod gateways), after an untimed warm-up through the first spool (the sink's first use imports
    billing's mapping, the server's first request checks the operator key with scrypt)."""
    dirs = [Path(tempfile.mkdtemp(prefix="zs-bench-spool-")) for _ in range(args.gateways)]
    spools = [UsageSpool(d, fsync=False) for d in dirs]
    for spool in spools:
        spool.open()
    run = os.urandom(3).hex()
    spools[0].append(UsageEvent(f"{run}-warm", keys[0], "tenant-bench-t", MODELS[0], "r1", 1, 1, False, "ok",
                                time.time(), time.time()))
    await spools[0].drain()
    shipper, sink = shipper_for((platform.url, platform.operator_key), code, dirs[0])
    await shipper.ship_all()
    await sink.aclose()
    for n in range(args.events):
        inp, out = 100 + n % 50, 20 + n % 7
        ended = time.time() - (args.events - n) / 20000
        spools[n % len(spools)].append(UsageEvent(f"{run}-{n}", keys[n % len(keys)], "tenant-bench-t", MODELS[n % 2],
                                                  "r1", inp, out, False, "ok", ended - 0.05, ended))
        result.produced, result.input_tokens, result.output_tokens = n + 1, result.input_tokens + inp, \
            result.output_tokens + out
        if n % 1000 == 999:
            await spools[n % len(spools)].drain()
    for spool in spools:
        await spool.drain()
        spool.close()
    return dirs


def ship_spool(server: tuple[str, str], code: str, spool_dir: Path,
               start_at: float) -> tuple[int, float, float, float, int]:
    """One gateway's shipper draining its spool from ``start_at`` (a child process: gateways are separate
    machines or processes, and one Python process decodes on one core at a time); (requests stored,
    began, ended — wall clock —, CPU seconds, posts)."""
    async def go() -> tuple[int, float, float, float, int]:
        shipper, sink = shipper_for(server, code, spool_dir)
        await asyncio.sleep(max(0.0, start_at - time.time()))
        cpu, began = time.process_time(), time.time()
        stored = await shipper.ship_all()
        ended = time.time()
        cpu = time.process_time() - cpu
        await sink.aclose()
        return stored, began, ended, cpu, sink.requests

    return asyncio.run(go())


def drive(platform: Platform, keys: list[str], code: str, args: argparse.Namespace, result: Round) -> None:
    dirs = asyncio.run(spool_backlog(platform, keys, code, args, result))
    cpu0 = (server_cpu_seconds(platform), pg_backend_cpu(platform))
    start_at = time.time() + 1.0  # every shipper process starts at once, after its fork
    with multiprocessing.get_context("fork").Pool(len(dirs)) as pool:
        done = pool.starmap(ship_spool, [((platform.url, platform.operator_key), code, d, start_at) for d in dirs])
    cpu1 = (server_cpu_seconds(platform), pg_backend_cpu(platform))
    result.stored = sum(d[0] for d in done)
    result.seconds = max(d[2] for d in done) - min(d[1] for d in done)
    result.cpu = {name: (b - a) / result.stored * 1e6 for name, a, b in
                  zip(("server_us", "postgres_us"), cpu0, cpu1, strict=True)}
    result.cpu["gateway_side_us"] = sum(d[3] for d in done) / result.stored * 1e6
    result.posts = sum(d[4] for d in done)


def one_round(code: str, src: str | None, args: argparse.Namespace) -> Round:
    platform = prepare("postgresql", nodes=0)
    saved = os.environ.get("PYTHONPATH")
    try:
        keys = add_keys(platform, args.keys)
        if src:  # the older checkout migrates to its own head at start: give it its schema
            from alembic import command

            from zhisuan.store.migrate import alembic_config

            command.downgrade(alembic_config(platform.database_url), args.before_revision)
            os.environ["PYTHONPATH"] = src
        serve(platform, free_port())
        os.environ.pop("PYTHONPATH", None)
        if saved is not None:
            os.environ["PYTHONPATH"] = saved
        result = Round(code)
        drive(platform, keys, code, args, result)
        check(platform, result, code)
        return result
    finally:
        platform.drop()


def check(platform: Platform, result: Round, code: str) -> None:
    """Everything spooled is stored exactly once: requests and tokens add up."""
    requests = "count(DISTINCT source_id)" if code == "before" else "sum(requests)"
    with psycopg.connect(platform.database_url) as connection:
        row = connection.execute(
            f"SELECT {requests}, sum(CASE WHEN pricing_model = 'input_tokens' THEN quantity ELSE 0 END), "
            "sum(CASE WHEN pricing_model = 'output_tokens' THEN quantity ELSE 0 END), count(*) FROM usage_records "
            "WHERE source_kind = 'tokens'").fetchone()
    assert row is not None
    got = (int(row[0]), int(row[1]), int(row[2]))
    want = (result.produced + 1, result.input_tokens + 1, result.output_tokens + 1)  # + the warm-up request
    assert got == want, f"{code}: stored (requests, in, out) {got} != spooled {want}"
    result.cpu["records_per_request"] = int(row[3]) / result.produced


def summary(rounds: list[Round], args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"backlog_events": args.events, "keys": args.keys, "gateways": args.gateways}
    for code in dict.fromkeys(r.code for r in rounds):
        mine = [r for r in rounds if r.code == code]
        out[code] = {
            "requests_stored_per_s": round(statistics.median(r.stored / r.seconds for r in mine)),
            **{k: round(statistics.median(r.cpu[k] for r in mine), 2) for k in mine[0].cpu},
            "posts_per_s": round(statistics.median(r.posts / r.seconds for r in mine), 1),
            "drain_seconds": [round(r.seconds, 2) for r in mine],
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000, help="requests spooled before the drain is timed")
    parser.add_argument("--keys", type=int, default=8, help="API keys the requests are spread over")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--gateways", type=int, default=1, help=(
        "gateways whose spools drain at once, each shipper its own process (the backlog is split between them)"))
    parser.add_argument("--codes", default="rollup,per-request", help="comma-separated: rollup, per-request, before")
    parser.add_argument("--before-src", help="the 'before' checkout's src directory (for code 'before')")
    parser.add_argument("--before-revision", default="0014", help="the 'before' checkout's migration head")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    rounds = []
    for _ in range(args.rounds):
        for code in args.codes.split(","):
            rounds.append(one_round(code, args.before_src if code == "before" else None, args))
            r = rounds[-1]
            print(f"{code}: {r.stored / r.seconds:,.0f} requests/s stored, {r.cpu}", flush=True)
    text = json.dumps(summary(rounds, args), indent=1)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
