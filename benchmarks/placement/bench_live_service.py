"""Placement decision latency through the platform's service layer on a ~21,000-node fleet in a database.

The fleet: the 4,278-node alibaba-spot-gpu-v2026 node list tiled 5 times (21,390 nodes, ~52,000 GPUs)
in a fresh SQLite (or ``--database-url`` PostgreSQL) database, ~70 % of the devices held in the
allocation ledger (one row per held device). Timed, side by side in one run, for requests drawn from a
few typical shapes (whole GPUs, shares, CPU-only, a model-constrained one):

- cache hit: ``FLEET_CACHE.fleet(...)`` (one validation query) + ``LiveFleet.place`` — what
  ``/placement/preview`` costs between two ledger changes;
- after a ledger change: one device held (another transaction commits), then the same call — the
  cache re-reads the changed node's holds (with migration 0023's change stamps; all holds before)
  and rewrites its row;
- rebuild per call (the old path): load every node and device from the ORM, subtract the holds,
  ``core.placement.place`` on the snapshot.

Usage: uv run python benchmarks/placement/bench_live_service.py [--decisions 100] [--rebuilds 3] [--tiles 5]
Data: Alibaba clusterdata cluster-trace-v2026-spot-gpu node list, CC BY 4.0, Alibaba Group.
"""

from __future__ import annotations

import argparse
import csv
import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from zhisuan.catalog.loader import default_catalog
from zhisuan.core.placement import PlacementRequest, place
from zhisuan.identity.models import Tenant
from zhisuan.inventory.models import Device, Node, Provider, Site
from zhisuan.ledger.models import Allocation
from zhisuan.placement.fleet_cache import FLEET_CACHE, read_marks
from zhisuan.placement.service import rebuilt_snapshot
from zhisuan.store.base import make_engine, make_session_factory, transaction
from zhisuan.store.migrate import upgrade_to_head

SPOT = Path(__file__).resolve().parents[3] / "shared" / "traces" / "alibaba-spot-gpu-v2026" / "node_info_df.csv"
NOW = datetime(2026, 12, 1, tzinfo=UTC)
REQUESTS = [PlacementRequest(8000, 32768, 1), PlacementRequest(4000, 16384, 1, 500), PlacementRequest(32000, 65536, 8),
            PlacementRequest(16000, 8192, 0), PlacementRequest(12000, 16384, 2, allowed_models=frozenset({"h800"}))]


def populate(session: Session, tiles: int, rng: np.random.Generator) -> None:
    catalog = default_catalog()
    with SPOT.open() as handle:
        rows = [(catalog.get(r["gpu_model"]).key, int(r["gpu_capacity_num"]), int(r["cpu_num"]))
                for r in csv.DictReader(handle)]
    provider = Provider(name="p", revenue_share=0.7)
    session.add(provider)
    session.flush()
    site = Site(name="spot", engine="slurm", region="cn", provider_id=provider.id)
    tenant = Tenant(name="acme")
    session.add_all([site, tenant])
    session.flush()
    nodes = [{"site_id": site.id, "name": f"n{t}-{i}", "cpu_cores": cores, "memory_mib": cores * 4096, "labels": {}}
             for t in range(tiles) for i, (_, _, cores) in enumerate(rows)]
    session.execute(insert(Node), nodes)
    ids = session.execute(select(Node.id).order_by(Node.id)).scalars().all()
    devices = [{"node_id": node_id, "index": j, "model": model, "memory_mib": 81920}
               for node_id, (model, gpus, _) in zip(ids, rows * tiles, strict=True) for j in range(gpus)]
    session.execute(insert(Device), devices)
    held = session.execute(select(Device.id, Device.node_id, Device.model)).all()
    picks = [h for h in held if rng.random() < 0.7]
    session.execute(insert(Allocation), [
        {"tenant_id": tenant.id, "provider_id": provider.id, "site_id": site.id, "node_id": node, "device_id": device,
         "model": model, "milli": 1000, "purpose": "manual", "start": NOW} for device, node, model in picks])


def percentiles(samples: list[float]) -> str:
    ms = np.array(samples) * 1000
    return f"p50 {np.percentile(ms, 50):7.2f} ms  p99 {np.percentile(ms, 99):7.2f} ms  (n={len(ms)})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--decisions", type=int, default=100)
    parser.add_argument("--rebuilds", type=int, default=3)
    parser.add_argument("--tiles", type=int, default=5)
    parser.add_argument("--database-url", default=None, help="an empty database (default: a temporary SQLite file)")
    args = parser.parse_args()
    url = args.database_url or f"sqlite:///{tempfile.mkdtemp()}/bench.db"
    upgrade_to_head(url)
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    rng = np.random.default_rng(3)
    with transaction(sessions) as session:
        populate(session, args.tiles, rng)
    catalog = default_catalog()
    with transaction(sessions) as session:
        nodes = session.execute(select(Node.id)).scalars().all()
        free = session.execute(select(Device.id, Device.node_id, Device.model).where(
            Device.id.not_in(select(Allocation.device_id).where(Allocation.device_id.is_not(None))))).all()
        started = time.perf_counter()
        with FLEET_CACHE.fleet(session, catalog, NOW):
            pass
        print(f"{len(nodes)} nodes, {len(free)} devices free; first build {time.perf_counter() - started:.2f} s; "
              f"load {os.getloadavg()}")
    hits, changed, rebuilds, marks, changed_cpu = [], [], [], [], []
    for i in range(args.decisions):
        request = REQUESTS[i % len(REQUESTS)]
        with transaction(sessions) as session:
            started = time.perf_counter()
            read_marks(session)
            marks.append(time.perf_counter() - started)
        with transaction(sessions) as session:
            started = time.perf_counter()
            with FLEET_CACHE.fleet(session, catalog, NOW) as fleet:
                fleet.place(request)
            hits.append(time.perf_counter() - started)
        with transaction(sessions) as session:  # another transaction holds one more device
            device, node, model = free.pop(int(rng.integers(len(free))))
            session.add(Allocation(tenant_id=1, provider_id=1, site_id=1, node_id=node, device_id=device,
                                   model=model, milli=1000, purpose="manual", start=NOW))
        with transaction(sessions) as session:
            started, cpu_started = time.perf_counter(), time.thread_time()
            with FLEET_CACHE.fleet(session, catalog, NOW) as fleet:
                fleet.place(request)
            changed.append(time.perf_counter() - started)
            changed_cpu.append(time.thread_time() - cpu_started)  # this thread's CPU (SQLite runs in it)
    for i in range(args.rebuilds):
        with transaction(sessions) as session:
            started = time.perf_counter()
            place(rebuilt_snapshot(session, catalog, NOW), REQUESTS[i % len(REQUESTS)])
            rebuilds.append(time.perf_counter() - started)
    print(f"validation query alone                 {percentiles(marks)}")
    print(f"cache hit (validate + decide)          {percentiles(hits)}")
    print(f"after a ledger change (reload holds)   {percentiles(changed)}")
    print(f"  the same, CPU time of this thread    {percentiles(changed_cpu)}")
    print(f"rebuild per call (ORM load + place)    {percentiles(rebuilds)}")
    print(f"cache stats: {FLEET_CACHE.stats}")
    engine.dispose()


if __name__ == "__main__":
    main()
