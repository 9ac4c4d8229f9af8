"""Usage ingestion into PostgreSQL: token events/s the control plane stores, and its CPU per event.

A throw-away control plane (``benchmarks/controlplane/throwaway.py``: fresh PostgreSQL database,
``zhisuan up`` in a child process, one worker = one core) takes ``POST /api/v1/usage/token-events``
batches the way a gateway's ``HttpUsageSink`` sends them (1000 events per request, each with its
tenant, provider, model, tokens and API key id). Two modes:

- ``--rate 0`` (closed loop): ``--senders`` requests in flight, as fast as the server takes them —
  the ceiling.
- ``--rate R`` (open loop): events are *offered* at R/s (a producer fills a queue, like gateways
  filling their spools); the senders drain it. Reported per window: events stored/s and the backlog
  (offered, not yet stored). Keeping up = the backlog stays flat (near one batch per sender).

Before vs after in the same run: ``--before-src DIR`` is another checkout's ``src`` (e.g.
``git worktree add --detach /tmp/zs-before <commit>``); the server of a "before" round runs with
``PYTHONPATH=DIR`` so it imports that code. Rounds alternate (after, before, after, …), each on a
fresh database; medians and ratios are printed. Server CPU = user + system time of the server's
process group (/proc), divided by events stored.

    uv run --no-sync python benchmarks/usage/bench_ingest.py --rate 0 --seconds 20 --rounds 2 \
        --before-src /tmp/zs-before/src
    uv run --no-sync python benchmarks/usage/bench_ingest.py --rate 20000 --seconds 60 --rounds 1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "controlplane"))
from throwaway import Platform, prepare, serve, server_cpu_seconds  # noqa: E402

from zhisuan.identity.keys import issue_key  # noqa: E402
from zhisuan.identity.models import Tenant, User  # noqa: E402
from zhisuan.store.base import make_engine, make_session_factory, transaction  # noqa: E402

BATCH = 1000
MODELS = ("qwen-7b", "smol")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def add_tenant(platform: Platform) -> str:
    """A tenant with one user and key; returns the key's public id (the events' ``api_key_id``)."""
    engine = make_engine(platform.database_url)
    with transaction(make_session_factory(engine)) as session:
        tenant = Tenant(name="bench-t", display_name="bench")
        session.add(tenant)
        session.flush()
        user = User(username="bench-user", role="tenant", tenant_id=tenant.id)
        session.add(user)
        session.flush()
        issued = issue_key(session, user, name="bench", scopes=["inference"], expires_at=None)
        key_id = issued.row.key_id
    engine.dispose()
    return str(key_id)


def body(run: str, start: int, key_id: str) -> bytes:
    """One request: ``BATCH`` events numbered from ``start`` (both token sides non-zero: two records each)."""
    at = datetime.now(UTC).isoformat()
    events = [f'{{"event_id":"gw:{run}-{n}","tenant":"bench-t","provider":"bench","model":"{MODELS[n % 2]}",'
              f'"at":"{at}","input_tokens":{100 + n % 50},"output_tokens":{20 + n % 7},"api_key_id":"{key_id}"}}'
              for n in range(start, start + BATCH)]
    return ('{"events":[' + ",".join(events) + "]}").encode()


@dataclass
class Round:
    code: str
    stored: int = 0
    offered: int = 0
    seconds: float = 0.0
    cpu_s: float = 0.0
    windows: list[tuple[float, float, int]] = field(default_factory=list)  # (t, events/s in window, backlog)

    @property
    def rate(self) -> float:
        return self.stored / self.seconds

    @property
    def cpu_us_per_event(self) -> float:
        return self.cpu_s / self.stored * 1e6


async def drive(platform: Platform, key_id: str, args: argparse.Namespace, result: Round) -> None:
    run = os.urandom(4).hex()
    queue: asyncio.Queue[int] = asyncio.Queue()
    headers = {"Authorization": f"Bearer {platform.operator_key}", "Content-Type": "application/json"}
    url = platform.url + "/api/v1/usage/token-events"
    next_start = 0
    deadline = time.monotonic() + args.seconds

    async def produce() -> None:
        nonlocal next_start
        begin = time.monotonic()
        while time.monotonic() < deadline:
            due = int((time.monotonic() - begin) * args.rate) // BATCH
            while next_start // BATCH < due:
                queue.put_nowait(next_start)
                next_start += BATCH
                result.offered += BATCH
            await asyncio.sleep(0.005)

    async def send(client: httpx.AsyncClient) -> None:
        nonlocal next_start
        while time.monotonic() < deadline:
            if args.rate:
                try:
                    start = await asyncio.wait_for(queue.get(), timeout=0.1)
                except TimeoutError:
                    continue
            else:
                start, next_start = next_start, next_start + BATCH
                result.offered += BATCH
            response = await client.post(url, content=body(run, start, key_id), headers=headers)
            if response.status_code != 200 or json.loads(response.content)["status"] != "accepted":
                raise RuntimeError(f"ingestion refused a batch: {response.status_code} {response.text[:300]}")
            result.stored += BATCH

    async def watch() -> None:
        last_t, last_n = time.monotonic(), 0
        begin = last_t
        while time.monotonic() < deadline:
            await asyncio.sleep(args.window)
            now, n = time.monotonic(), result.stored
            result.windows.append((now - begin, (n - last_n) / (now - last_t), result.offered - n))
            last_t, last_n = now, n

    cpu0, t0 = server_cpu_seconds(platform), time.monotonic()
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=args.senders)) as client:
        tasks = [send(client) for _ in range(args.senders)] + [watch()] + ([produce()] if args.rate else [])
        await asyncio.gather(*tasks)
    result.seconds, result.cpu_s = time.monotonic() - t0, server_cpu_seconds(platform) - cpu0


def one_round(code: str, src: str | None, args: argparse.Namespace) -> Round:
    platform = prepare("postgresql", nodes=0)
    saved = os.environ.get("PYTHONPATH")
    try:
        key_id = add_tenant(platform)
        if src:
            os.environ["PYTHONPATH"] = src
        serve(platform, free_port())
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved
        result = Round(code)
        asyncio.run(drive(platform, key_id, args, result))
        with psycopg.connect(platform.database_url) as connection:
            rows = connection.execute("SELECT count(*) FROM usage_records").fetchone()
        assert rows is not None and rows[0] == 2 * result.stored, f"{rows} rows for {result.stored} events"
        return result
    finally:
        platform.drop()


def report(rounds: list[Round], args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"rate_offered": args.rate, "seconds": args.seconds, "senders": args.senders}
    for code in ("after", "before"):
        mine = [r for r in rounds if r.code == code]
        if not mine:
            continue
        out[code] = {"events_per_s": statistics.median(r.rate for r in mine),
                     "server_cpu_us_per_event": statistics.median(r.cpu_us_per_event for r in mine),
                     "final_backlog": [r.windows[-1][2] if r.windows else None for r in mine],
                     "windows": [[(round(t), round(v), b) for t, v, b in r.windows] for r in mine]}
    if "before" in out:
        out["ratio_events_per_s"] = out["after"]["events_per_s"] / out["before"]["events_per_s"]
        out["ratio_cpu_per_event"] = out["after"]["server_cpu_us_per_event"] / out["before"]["server_cpu_us_per_event"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=0, help="events/s offered (0 = closed loop)")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--senders", type=int, default=2, help="requests in flight")
    parser.add_argument("--window", type=float, default=5, help="seconds per reported window")
    parser.add_argument("--rounds", type=int, default=1, help="rounds per code (alternating)")
    parser.add_argument("--before-src", help="the 'before' checkout's src directory (omit: after only)")
    parser.add_argument("--out", type=Path, help="write the JSON result here too")
    args = parser.parse_args()
    rounds = []
    for _ in range(args.rounds):
        rounds.append(one_round("after", None, args))
        print(f"after: {rounds[-1].rate:,.0f} events/s, {rounds[-1].cpu_us_per_event:.1f} µs CPU/event", flush=True)
        if args.before_src:
            rounds.append(one_round("before", args.before_src, args))
            print(f"before: {rounds[-1].rate:,.0f} events/s, {rounds[-1].cpu_us_per_event:.1f} µs CPU/event",
                  flush=True)
    result = report(rounds, args)
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
