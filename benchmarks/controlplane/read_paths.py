"""Reads with a large fleet: ``GET /api/v1/nodes?limit=100`` (first and a deep page, and filtered by the
console's site, status and model filters), ``GET /api/v1/fleet/summary`` and ``GET /api/v1/sites``,
with ``--nodes`` nodes of 8 devices each on a throw-away database, while the fleet changes
(``--churn``, on by default).

The fleet is inserted in bulk (not through the agent routes: this measures reads), then analysed
(``ANALYZE``, as autovacuum does within a minute of a bulk load; this machine's PostgreSQL runs
without autovacuum, and a never-analysed fleet made the filtered page 2–4× slower: ``--no-analyze``
measures that, ``filtered_pages.py`` compares both); requests go through the whole ASGI app
in-process (TestClient: every middleware and dependency, no sockets).
Reported per endpoint: median, p99 and max of ``--requests`` calls, and the body size.

References in the same run, through the same app: the fleet summary and the sites' counts computed
as before migration 0022 — grouping every node and device row per request (``scan_summary``,
``scan_sites``, mounted under ``/bench/``) — and the default node page (1,000 nodes) three times.

Churn (a thread with its own connection, while every request is timed): each second, the beat
flush's statement for 1,000 nodes (``last_heartbeat_at`` only: no count changes) and ``--changes``
device health flips and node status flips (each fires the count triggers), as beats that report a
fault or a monitor that marks nodes would.

    uv run python benchmarks/controlplane/read_paths.py --nodes 10000 --requests 100
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, insert, select, text

sys.path.insert(0, str(Path(__file__).resolve().parent))

from throwaway import SITE, prepare  # noqa: E402

from zhisuan.api.app import create_app, freeze_startup_objects  # noqa: E402
from zhisuan.api.deps import Reader, SessionDep  # noqa: E402
from zhisuan.config import Settings  # noqa: E402
from zhisuan.inventory.models import Device, Node, Site  # noqa: E402
from zhisuan.store.base import make_engine, make_session_factory, transaction  # noqa: E402


@contextmanager
def fleet_database(nodes: int) -> Iterator[tuple[Engine, Any]]:
    """A throw-away PostgreSQL database holding ``nodes`` nodes of 8 devices: its engine and session factory
    (the database is dropped afterwards)."""
    platform = prepare("postgresql", 0)
    try:
        engine = make_engine(platform.database_url.replace("postgresql://", "postgresql+psycopg://", 1))
        try:
            sessions = make_session_factory(engine)
            insert_fleet(sessions, nodes)
            yield engine, sessions
        finally:
            engine.dispose()
    finally:
        platform.drop()


def insert_fleet(sessions: Any, nodes: int, per_node: int = 8) -> None:
    now = datetime.now(UTC)
    with transaction(sessions) as session:
        site_id = session.execute(select(Site.id).where(Site.name == SITE)).scalar_one()
        for start in range(0, nodes, 1000):
            ids = session.execute(insert(Node).returning(Node.id), [
                {"site_id": site_id, "name": f"sim-{n:06d}", "status": "ready", "drained": False, "cpu_cores": 128,
                 "memory_mib": 1_048_576, "labels": {"rack": f"r{n % 40}"}, "managed_by": "agent",
                 "agent_version": "0.1.0", "registered_at": now, "last_heartbeat_at": now}
                for n in range(start, min(nodes, start + 1000))]).scalars().all()
            session.execute(insert(Device), [
                {"node_id": node_id, "index": i, "uuid": f"GPU-{node_id}-{i}", "model": "h100-sxm",
                 "reported_name": "NVIDIA H100 80GB HBM3", "memory_mib": 81559, "health": "healthy",
                 "health_detail": "", "available": True}
                for node_id in ids for i in range(per_node)])


class CollectorPauses:
    """Time spent in the process's full (generation 2) garbage collections, by gc.callbacks."""

    def __init__(self) -> None:
        self.started = 0.0
        self.total = 0.0
        gc.callbacks.append(self.observe)

    def observe(self, phase: str, info: dict[str, int]) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            self.started = time.perf_counter()
        else:
            self.total += time.perf_counter() - self.started


PAUSES = CollectorPauses()


def timed(client: TestClient, path: str, headers: dict[str, str], count: int, warm_up: int = 3) -> dict[str, Any]:
    """Wall time of each request and the process's CPU (every thread: TestClient's client side, the
    app, the churn) per request, median and p99 of each; the three slowest with their position and
    any full garbage collection inside them. ``warm_up`` requests first, untimed (statement caches)."""
    for _ in range(warm_up):
        client.get(path, headers=headers).raise_for_status()
    samples, cpu, collected = [], [], []
    size = 0
    for _ in range(count):
        start, cpu_start, gc_start = time.perf_counter(), time.process_time(), PAUSES.total
        answer = client.get(path, headers=headers)
        samples.append(time.perf_counter() - start)
        cpu.append(time.process_time() - cpu_start)
        collected.append(PAUSES.total - gc_start)
        answer.raise_for_status()
        size = len(answer.content)
    slowest = sorted(range(count), key=lambda i: -samples[i])[:3]
    return {"median_ms": round(statistics.median(samples) * 1000, 1), "p99_ms": round(p99(samples) * 1000, 1),
            "max_ms": round(max(samples) * 1000, 1), "cpu_median_ms": round(statistics.median(cpu) * 1000, 1),
            "cpu_p99_ms": round(p99(cpu) * 1000, 1), "bytes": size,
            "slowest": [{"at": i, "ms": round(samples[i] * 1000, 1), "cpu_ms": round(cpu[i] * 1000, 1),
                         "full_gc_ms": round(collected[i] * 1000, 1)} for i in slowest]}


def p99(samples: list[float]) -> float:
    """The 99th percentile, nearest rank: of 100 samples the 99th slowest (not the slowest)."""
    ordered = sorted(samples)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1))]


def scan_summary(session: SessionDep, principal: Reader) -> dict[str, Any]:
    """The fleet summary's counts as computed before migration 0022: every node and device row grouped."""
    rows = session.execute(select(Device.model, Device.available, Device.health, func.count(Device.id))
                           .join(Device.node).join(Node.site).group_by(Device.model, Device.available, Device.health))
    total: Counter[str] = Counter()
    for model, _available, _health, count in rows:
        total[model] += count
    statuses = dict(session.execute(select(Node.status, func.count(Node.id)).join(Node.site)
                                    .group_by(Node.status)).all())
    return {"nodes": sum(statuses.values()), "accelerators": sum(total.values())}


def scan_sites(session: SessionDep, principal: Reader) -> list[dict[str, int]]:
    """``GET /sites``' counts as computed before migration 0022 (two grouped scans)."""
    ids = list(session.execute(select(Site.id)).scalars())
    nodes = dict(session.execute(select(Node.site_id, func.count(Node.id)).where(Node.site_id.in_(ids))
                                 .group_by(Node.site_id)).all())
    devices = dict(session.execute(select(Node.site_id, func.count(Device.id)).join(Device.node)
                                   .where(Node.site_id.in_(ids)).group_by(Node.site_id)).all())
    return [{"id": sid, "nodes": nodes.get(sid, 0), "accelerators": devices.get(sid, 0)} for sid in ids]


class Churn(threading.Thread):
    """Changes to the fleet while the reads are timed (see the module doc)."""

    def __init__(self, sessions: Any, nodes: int, changes_per_s: int) -> None:
        super().__init__(daemon=True, name="churn")
        self.sessions, self.nodes, self.changes_per_s = sessions, nodes, changes_per_s
        self.stop, self.seconds, self.changes = threading.Event(), 0, 0

    def run(self) -> None:
        with transaction(self.sessions) as session:
            first = session.execute(select(func.min(Node.id))).scalar_one()
        tick = 0
        while not self.stop.is_set():
            started = time.monotonic()
            with transaction(self.sessions) as session:
                low = first + (tick * 1000) % self.nodes
                session.execute(text("UPDATE nodes SET last_heartbeat_at = :t WHERE id >= :a AND id < :b"),
                                {"t": datetime.now(UTC), "a": low, "b": low + 1000})
            for n in range(self.changes_per_s):  # each its own transaction, as beats and the monitor are
                node = first + (tick * 7919 + n * 104_729) % self.nodes
                with transaction(self.sessions) as session:
                    session.execute(text("UPDATE devices SET health = CASE health WHEN 'healthy' THEN 'failed' "
                                         "ELSE 'healthy' END WHERE node_id = :n AND \"index\" = 0"), {"n": node})
                    session.execute(text("UPDATE nodes SET status = CASE status WHEN 'ready' THEN 'unreachable' "
                                         "ELSE 'ready' END WHERE id = :n"), {"n": node + 1})
                self.changes += 2
            tick += 1
            self.seconds += 1
            self.stop.wait(max(0.0, 1.0 - (time.monotonic() - started)))


def measure(backend: str, nodes: int, requests: int, changes_per_s: int, analyze: bool = True) -> dict[str, Any]:
    platform = prepare(backend, 0)
    try:
        settings = Settings(data_dir=platform.data_dir, database_url=platform.database_url,
                            register_local_site=False, run_background_loops=False)
        app = create_app(settings)
        app.add_api_route("/bench/scan-summary", scan_summary, methods=["GET"])
        app.add_api_route("/bench/scan-sites", scan_sites, methods=["GET"])
        insert_fleet(app.state.ctx.sessions, nodes)
        if analyze and backend == "postgresql":
            with app.state.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                connection.execute(text("ANALYZE nodes"))
                connection.execute(text("ANALYZE devices"))
        freeze_startup_objects()  # as ``zhisuan up`` does before serving (else a full collection walks the app)
        headers = {"Authorization": f"Bearer {platform.operator_key}"}
        churn = Churn(app.state.ctx.sessions, nodes, changes_per_s)
        with TestClient(app) as client:
            deep = client.get(f"/api/v1/nodes?limit=1&cursor={nodes - 200}", headers=headers).json()
            if changes_per_s:
                churn.start()
            results = {
                "load_average": os.getloadavg()[0],
                "nodes": nodes, "devices": nodes * 8, "backend": backend, "analysed": analyze,
                "nodes_limit_100": timed(client, "/api/v1/nodes?limit=100", headers, requests),
                "nodes_limit_100_deep_page": timed(client, f"/api/v1/nodes?limit=100&cursor={deep[0]['id']}",
                                                   headers, requests),
                "nodes_limit_100_filtered": timed(
                    client, f"/api/v1/nodes?limit=100&site={SITE}&status=ready&model=h100-sxm", headers, requests),
                "fleet_summary": timed(client, "/api/v1/fleet/summary", headers, requests),
                "reference_fleet_summary_scan": timed(client, "/bench/scan-summary", headers, requests),
                "sites": timed(client, "/api/v1/sites", headers, requests),
                "reference_sites_scan": timed(client, "/bench/scan-sites", headers, requests),
                "reference_nodes_default_page_1000": timed(client, "/api/v1/nodes", headers, 3, warm_up=0),
                "load_average_after": os.getloadavg()[0],
            }
            churn.stop.set()
            if churn.is_alive():
                churn.join()
            results["churn"] = {"seconds": churn.seconds, "count_changes": churn.changes}
        app.state.engine.dispose()
        app.state.loop_engine.dispose()
        return results
    finally:
        platform.drop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--changes", type=int, default=10,
                        help="device-health and node-status flips per second while timing (0: no churn)")
    parser.add_argument("--no-analyze", action="store_true",
                        help="leave the seeded fleet unanalysed (no planner statistics), as before session 7")
    args = parser.parse_args()
    print(json.dumps(measure(args.backend, args.nodes, args.requests, args.changes, not args.no_analyze), indent=1))


if __name__ == "__main__":
    main()
