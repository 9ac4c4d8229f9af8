"""Reads with a large fleet: ``GET /api/v1/nodes?limit=100`` (first and a deep page) and
``GET /api/v1/fleet/summary``, with ``--nodes`` nodes of 8 devices each on a throw-away database.

The fleet is inserted in bulk (not through the agent routes: this measures reads); requests go
through the whole ASGI app in-process (TestClient: every middleware and dependency, no sockets).
Reported per endpoint: median, p99 and max of ``--requests`` calls, and the body size. The
reference in the same run: the unpaged listing (``limit=1000``, the default page) once.

    uv run python benchmarks/controlplane/read_paths.py --nodes 10000 --requests 200
    uv run python benchmarks/controlplane/read_paths.py --nodes 10000 --requests 200 --no-summary-cache

The app keeps the fleet-summary cache a serving process keeps (``inventory.fleet.SummaryCache``, at
most ``fleet_summary_max_age_s`` old, refreshed behind the requests); ``--no-summary-cache`` computes
the summary per request (a process without background loops).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import insert, select

sys.path.insert(0, str(Path(__file__).resolve().parent))

from throwaway import SITE, prepare  # noqa: E402

from zhisuan.api.app import create_app  # noqa: E402
from zhisuan.config import Settings  # noqa: E402
from zhisuan.inventory.fleet import SummaryCache  # noqa: E402
from zhisuan.inventory.models import Device, Node, Site  # noqa: E402
from zhisuan.store.base import transaction  # noqa: E402


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


def timed(client: TestClient, path: str, headers: dict[str, str], count: int) -> dict[str, Any]:
    """Wall time of each request and the process's CPU (both threads: TestClient's client side and
    the app) per request, median and p99 of each."""
    samples, cpu = [], []
    size = 0
    for _ in range(count):
        start, cpu_start = time.perf_counter(), time.process_time()
        answer = client.get(path, headers=headers)
        samples.append(time.perf_counter() - start)
        cpu.append(time.process_time() - cpu_start)
        answer.raise_for_status()
        size = len(answer.content)
    return {"median_ms": round(statistics.median(samples) * 1000, 1), "p99_ms": round(p99(samples) * 1000, 1),
            "max_ms": round(max(samples) * 1000, 1), "cpu_median_ms": round(statistics.median(cpu) * 1000, 1),
            "cpu_p99_ms": round(p99(cpu) * 1000, 1), "bytes": size}


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def measure(backend: str, nodes: int, requests: int, summary_cache: bool) -> dict[str, Any]:
    platform = prepare(backend, 0)
    try:
        settings = Settings(data_dir=platform.data_dir, database_url=platform.database_url,
                            register_local_site=False, run_background_loops=False)
        app = create_app(settings)
        insert_fleet(app.state.ctx.sessions, nodes)
        if summary_cache:
            app.state.fleet_summaries = SummaryCache(app.state.ctx.sessions, app.state.catalog,
                                                     settings.fleet_summary_max_age_s)
        headers = {"Authorization": f"Bearer {platform.operator_key}"}
        with TestClient(app) as client:
            deep = client.get(f"/api/v1/nodes?limit=1&cursor={nodes - 200}", headers=headers).json()
            results = {
                "load_average": os.getloadavg()[0],
                "nodes": nodes, "devices": nodes * 8, "backend": backend, "summary_cache": summary_cache,
                "nodes_limit_100": timed(client, "/api/v1/nodes?limit=100", headers, requests),
                "nodes_limit_100_deep_page": timed(client, f"/api/v1/nodes?limit=100&cursor={deep[0]['id']}",
                                                   headers, requests),
                "fleet_summary": timed(client, "/api/v1/fleet/summary", headers, requests),
                "reference_nodes_default_page_1000": timed(client, "/api/v1/nodes", headers, 3),
            }
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
    parser.add_argument("--no-summary-cache", action="store_true", help="compute the fleet summary per request")
    args = parser.parse_args()
    print(json.dumps(measure(args.backend, args.nodes, args.requests, not args.no_summary_cache), indent=1))


if __name__ == "__main__":
    main()
