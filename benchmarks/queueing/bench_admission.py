"""One admission cycle (``zhisuan.core.queueing.schedule``) over 10,000 queued jobs on a 2,000-node fleet.

The fleet is 2,000 nodes sampled from the 4,278-node alibaba-spot-gpu-v2026 trace (gpu_model,
gpu_capacity_num, cpu_num). What the trace does not give is synthesised and said here: 4 sites,
``zhisuan.io/ib-domain`` every 32 nodes and ``rack`` every 8 nodes of a site, 4 GiB of memory per
core, device memory per model, 5 % of the nodes leased exclusively to a tenant. About 70 % of the
device capacity (and a proportional share of CPU/memory) is held by running jobs of ~50 tenants,
whose guarantees add up to ~60 % of each model's devices.

    uv run --no-sync python benchmarks/queueing/bench_admission.py [--runs 5] [--queued 10000] [--nodes 2000]
        [--max-admissions 256]

Trace data: alibaba/clusterdata cluster-trace-v2026-spot-gpu (Alibaba Group), CC BY 4.0.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from zhisuan.core.placement import place
from zhisuan.core.placement.fleet import fleet_from_snapshot
from zhisuan.core.placement.snapshot import ClusterSnapshot, DeviceSnapshot, NodeSnapshot, PlacementRequest
from zhisuan.core.queueing import QueuedJob, QueueSnapshot, RunningJob, WorkerPlace, schedule

TRACE = Path(__file__).resolve().parents[3] / "shared" / "traces" / "alibaba-spot-gpu-v2026" / "node_info_df.csv"
ATTRIBUTION = "Trace: alibaba/clusterdata cluster-trace-v2026-spot-gpu (Alibaba Group), CC BY 4.0."
DEVICE_MEMORY = {"A10": 24576, "A100-SXM4-80GB": 81920, "A800-SXM4-80GB": 81920, "H800": 81920}
SITES = ("site-a", "site-b", "site-c", "site-d")
TENANTS = tuple(f"tenant-{i:02d}" for i in range(50))
CLASSES = ("reserved", "elastic", "spot")


def trace_nodes(path: Path, count: int, rng: np.random.Generator) -> list[tuple[str, int, int]]:
    with path.open() as f:
        rows = [(r["gpu_model"], int(r["gpu_capacity_num"]), int(r["cpu_num"])) for r in csv.DictReader(f)]
    picked = sorted(rng.choice(len(rows), size=min(count, len(rows)), replace=False))
    return [rows[i] for i in picked]


def build(nodes: int, queued: int, seed: int = 7) -> QueueSnapshot:
    """The synthetic cycle described in the module docstring (deterministic for a seed)."""
    rng = np.random.default_rng(seed)
    shapes = trace_nodes(TRACE, nodes, rng)
    snapshots, running = [], []
    for i, (model, gpus, cores) in enumerate(shapes):
        site = SITES[i % len(SITES)]
        local = i // len(SITES)
        free_milli, held = [], []
        for d in range(gpus):
            hold = rng.random() < 0.7
            free_milli.append(0 if hold else 1000)
            if hold:
                held.append(d)
        cpu_total, mem_total = cores * 1000, cores * 4096
        cpu_held = cpu_total * len(held) // max(1, gpus)
        mem_held = mem_total * len(held) // max(1, gpus)
        name = f"{site}/n{i:05d}"
        devices = tuple(
            DeviceSnapshot(d, model, DEVICE_MEMORY.get(model, 49152), free_milli[d], tflops_bf16=100.0)
            for d in range(gpus)
        )
        leased = TENANTS[int(rng.integers(len(TENANTS)))] if rng.random() < 0.05 else None
        labels = {"zhisuan.io/ib-domain": f"{site}-ib{local // 32}", "rack": f"{site}-r{local // 8}"}
        snapshots.append(
            NodeSnapshot(
                name, site, cpu_total - cpu_held, mem_total - mem_held, devices, labels, exclusive_tenant=leased
            )
        )
        if held:
            tenant = leased or TENANTS[int(rng.integers(len(TENANTS)))]
            klass = CLASSES[int(rng.integers(3))]
            worker = WorkerPlace(name, tuple(held), 1000, cpu_held, mem_held)
            running.append(RunningJob(100_000 + i, tenant, klass, i, model, (worker,), klass == "reserved"))
    cluster = ClusterSnapshot(tuple(snapshots))
    return QueueSnapshot(cluster, guarantees(cluster, rng), queue(cluster, queued, rng), tuple(running))


def guarantees(cluster: ClusterSnapshot, rng: np.random.Generator) -> dict[str, dict[str, int]]:
    """~60 % of each model's devices guaranteed, split over a few tenants per model."""
    capacity: dict[str, int] = {}
    for node in cluster.nodes:
        for d in node.devices:
            capacity[d.model] = capacity.get(d.model, 0) + 1000
    result: dict[str, dict[str, int]] = {t: {} for t in TENANTS}
    for model in sorted(capacity):
        owners = rng.choice(len(TENANTS), size=12, replace=False)
        for owner in owners:
            result[TENANTS[owner]][model] = int(capacity[model] * 0.6 / len(owners)) // 1000 * 1000
    return result


def queue(cluster: ClusterSnapshot, count: int, rng: np.random.Generator) -> tuple[QueuedJob, ...]:
    """Mixed shapes: 1/2/4/8-device workers, 2–4 node gangs of 8 devices, shares, CPU-only; three classes."""
    models = sorted({d.model for n in cluster.nodes for d in n.devices})
    jobs = []
    for i in range(count):
        kind = rng.random()
        workers, milli, devices = 1, 1000, int(rng.choice([1, 2, 4, 8], p=[0.4, 0.25, 0.2, 0.15]))
        if kind < 0.05:
            workers, devices = int(rng.integers(2, 5)), 8
        elif kind < 0.20:
            devices, milli = 1, int(rng.choice([250, 500]))
        elif kind < 0.25:
            devices = 0
        allowed = frozenset({models[int(rng.integers(len(models)))]}) if devices and rng.random() < 0.5 else None
        tenant = TENANTS[int(rng.integers(len(TENANTS)))]
        request = PlacementRequest(
            cpu_milli=4000 * max(1, devices),
            memory_mib=16384 * max(1, devices),
            device_count=devices,
            milli_per_device=milli,
            allowed_models=allowed,
            tenant=tenant,
        )
        klass = str(rng.choice(CLASSES, p=[0.2, 0.4, 0.4]))
        jobs.append(QueuedJob(i, tenant, klass, int(rng.integers(4)), i, workers, request))
    return tuple(jobs)


def one_by_one(snapshot: QueueSnapshot, count: int) -> float:
    """Seconds per decision when each queued job's first worker is placed alone with ``place()``: the
    snapshot becomes arrays for every decision (what a loop calling the placement API would do)."""
    jobs = snapshot.queued[:count]
    start = time.perf_counter()
    for job in jobs:
        place(snapshot.cluster, job.request)
    return (time.perf_counter() - start) / max(1, len(jobs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--queued", type=int, default=10_000)
    parser.add_argument("--nodes", type=int, default=2_000)
    parser.add_argument("--max-admissions", type=int, default=256)
    parser.add_argument("--reference", type=int, default=200,
                        help="queued jobs also decided one by one with place() on the snapshot (the reference)")
    args = parser.parse_args()
    snapshot = dataclasses.replace(build(args.nodes, args.queued), max_admissions=args.max_admissions)
    arrays, cycles = [], []
    result = None
    for _ in range(args.runs):
        start = time.perf_counter()
        fleet_from_snapshot(snapshot.cluster)
        arrays.append(time.perf_counter() - start)
        start = time.perf_counter()
        result = schedule(snapshot)
        cycles.append(time.perf_counter() - start)
    assert result is not None
    cycle = statistics.median(cycles)
    decisions = len(result.admissions) + len(result.preemptions) + len(result.pending)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    reference = one_by_one(snapshot, args.reference)
    devices = sum(len(n.devices) for n in snapshot.cluster.nodes)
    print(
        f"fleet: {len(snapshot.cluster.nodes)} nodes, {devices} devices; queued {len(snapshot.queued)}; "
        f"running {len(snapshot.running)}; runs {args.runs}"
    )
    print()
    print("| measure | median |")
    print("|---|---|")
    print(f"| build snapshot arrays (fleet_from_snapshot) | {statistics.median(arrays) * 1000:.1f} ms |")
    print(f"| one schedule() cycle (incl. arrays) | {cycle * 1000:.0f} ms |")
    print(f"| per queued job (decision) | {cycle / max(1, decisions) * 1e6:.1f} µs |")
    print(f"| per admission | {cycle / max(1, len(result.admissions)) * 1000:.2f} ms |")
    print(
        f"| admissions / preemptions / pending | {len(result.admissions)} / {len(result.preemptions)} / "
        f"{len(result.pending)} |"
    )
    print(f"| peak RSS | {rss:.0f} MB |")
    print(f"| reference: place() per queued job from the snapshot (first {args.reference}; arrays rebuilt per "
          f"decision, no quota) | {reference * 1e3:.1f} ms per job → {reference * len(snapshot.queued):.0f} s "
          f"for the queue |")
    print(f"| ratio: reference per job ÷ cycle per queued job | {reference / (cycle / max(1, decisions)):.0f}× |")
    print()
    print("command: uv run --no-sync python benchmarks/queueing/bench_admission.py " + " ".join(sys.argv[1:]))
    print(ATTRIBUTION)


if __name__ == "__main__":
    main()
