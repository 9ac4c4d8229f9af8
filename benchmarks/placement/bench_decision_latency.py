"""Latency of one placement decision on a 16x scaled openb fleet (~19.4k nodes, ~99k GPUs).

The fleet is the state of a default-trace replay (zhisuan policy) stopped at ~70 % arrival, tiled 16
times. Timed: ``pipeline.decide`` on the arrays (no caching: filter + score every node) for pods drawn
from the trace, and ``place()`` from frozen snapshots (includes building the arrays) on a 1x fleet.
Usage: uv run python benchmarks/placement/bench_decision_latency.py [--decisions 200] [--scale 16]
Data: Alibaba clusterdata cluster-trace-gpu-v2023 (openb), CC BY 4.0.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from zhisuan.core.placement import ClusterSnapshot, DeviceSnapshot, NodeSnapshot, PlacementRequest, place
from zhisuan.core.placement.fleet import FleetArrays
from zhisuan.core.placement.pipeline import decide
from zhisuan.core.placement.policies import get_policy
from zhisuan.sim.orders import load_paper_order
from zhisuan.sim.replay import pod_demands, replay, trace_workload
from zhisuan.sim.traces import load_nodes, load_pods, node_models

TRACES = Path(__file__).resolve().parents[2].parent / "shared" / "traces" / "alibaba-gpu-v2023"


def tile(fleet: FleetArrays, times: int) -> FleetArrays:
    rows = np.tile(np.arange(fleet.size), times)
    return FleetArrays(
        names=tuple(f"{n}-x{i // fleet.size}" for i, n in enumerate(fleet.names * times)),
        sites=fleet.sites * times,
        cpu_free=fleet.cpu_free[rows].copy(),
        mem_free=fleet.mem_free[rows].copy(),
        gpu_left=fleet.gpu_left[rows].copy(),
        device_index=fleet.device_index[rows],
        device_model=fleet.device_model[rows],
        device_memory=fleet.device_memory[rows],
        device_tflops=fleet.device_tflops[rows],
        device_stack=fleet.device_stack[rows],
        device_healthy=fleet.device_healthy[rows],
        node_healthy=fleet.node_healthy[rows],
        node_tenant=fleet.node_tenant[rows],
        affinity=fleet.affinity[rows].copy(),
        models=fleet.models,
        stacks=fleet.stacks,
    )


def snapshot_of(fleet: FleetArrays) -> ClusterSnapshot:
    nodes = []
    for r in range(fleet.size):
        devices = tuple(
            DeviceSnapshot(
                int(fleet.device_index[r, c]), fleet.models[fleet.device_model[r, c]], 16384, int(fleet.gpu_left[r, c])
            )
            for c in range(fleet.gpu_left.shape[1])
            if fleet.device_model[r, c] >= 0
        )
        nodes.append(NodeSnapshot(fleet.names[r], "sim", int(fleet.cpu_free[r]), int(fleet.mem_free[r]), devices))
    return ClusterSnapshot(tuple(nodes))


def percentiles(samples: list[float]) -> str:
    ms = np.array(samples) * 1000
    return f"p50 {np.percentile(ms, 50):.1f} ms  p99 {np.percentile(ms, 99):.1f} ms  (n={len(ms)})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--decisions", type=int, default=200)
    parser.add_argument("--scale", type=int, default=16)
    args = parser.parse_args()
    nodes = load_nodes(TRACES / "openb_node_list_gpu_node.csv")
    pods = load_pods(TRACES / "openb_pod_list_default.csv", node_models(nodes))
    order = load_paper_order(TRACES / "paper-order", "default", 42, pods, nodes)
    partial = replace(order, events=order.events[: int(len(order.events) * 0.54)])  # ~70 % of capacity arrived
    base = replay(nodes, pods, partial, "zhisuan", 42).fleet
    fleet = tile(base, args.scale)
    workload = trace_workload(pods, fleet.models)
    demands = pod_demands(pods, fleet)
    rng = np.random.default_rng(0)
    picks = rng.integers(len(demands), size=args.decisions)
    print(
        f"{fleet.size} nodes, {int(fleet.device_count.sum())} GPUs, "
        f"{fleet.gpu_left.sum() / fleet.device_count.sum() / 10:.0f} % GPU free; load {os.getloadavg()}"
    )
    for name in ("zhisuan", "fgd", "best-fit"):
        policy, samples = get_policy(name), []
        for pick in picks:
            started = time.perf_counter()
            decide(fleet, demands[pick], policy, workload, rng)
            samples.append(time.perf_counter() - started)
        print(f"decide() on arrays, {name:>9}: {percentiles(samples)}")
    cluster = snapshot_of(base)
    samples = []
    for pick in picks[:50]:
        d = demands[pick]
        request = PlacementRequest(d.cpu, d.mem, d.count, d.milli if d.count else 1000)
        started = time.perf_counter()
        place(cluster, request, seed=int(pick))
        samples.append(time.perf_counter() - started)
    print(f"place() from snapshots, 1x fleet ({len(cluster.nodes)} nodes), zhisuan: {percentiles(samples)}")


if __name__ == "__main__":
    main()
