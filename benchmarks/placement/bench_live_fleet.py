"""Decision latency of the live platform's fleet cache vs rebuilding the fleet per call, 20k nodes.

The fleet: the default trace's replay state at ~70 % arrival (zhisuan policy, paper order 42), tiled
``--scale`` times (16 → 19,408 nodes, 99,392 GPUs). Requests: pods drawn from the trace, placed with
the default policy and the request's own shape as target workload (what ``/placement/preview`` does).
After every decision the chosen devices are held (the ledger's change), so the cache pays for its
updates as the live platform does. Timed, side by side in one run:

- ``LiveFleet.place`` (the cache's decision), and ``LiveFleet.update`` (applying the hold change);
- ``core.placement.place`` on the same snapshot (arrays built per call: the rebuild-per-call path —
  the platform's old path also loaded every node from the ORM first, which is not counted here).

Usage: uv run python benchmarks/placement/bench_live_fleet.py [--decisions 300] [--rebuilds 5] [--scale 16]
Data: Alibaba clusterdata cluster-trace-gpu-v2023 (openb), CC BY 4.0, Alibaba Group.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace

import numpy as np

from zhisuan.core.placement import DeviceSnapshot, NodeSnapshot, Placement, PlacementRequest, place
from zhisuan.core.placement.live import Holds, InventoryNode, LiveFleet
from zhisuan.sim.cli import DEFAULT_NODES, DEFAULT_TRACE, PACKAGED
from zhisuan.sim.orders import load_paper_order
from zhisuan.sim.replay import replay
from zhisuan.sim.traces import load_nodes, load_pods, node_models


def tiled_fleet(scale: int) -> tuple[list[InventoryNode], Holds, list[PlacementRequest]]:
    """Inventory (nothing held) and the holds of a partially filled, tiled openb fleet; trace requests."""
    nodes = load_nodes(DEFAULT_NODES)
    pods = load_pods(DEFAULT_TRACE, node_models(nodes))
    order = load_paper_order(PACKAGED / "paper-order", "default", 42, pods, nodes)
    partial = replace(order, events=order.events[: int(len(order.events) * 0.54)])  # ~70 % of capacity arrived
    state = replay(nodes, pods, partial, "zhisuan", 42).fleet
    row_of = {name: i for i, name in enumerate(nodes.names)}
    inventory, device_milli, resources = [], {}, {}
    for copy in range(scale):
        for row, name in enumerate(state.names):
            source = row_of[name]
            node_id = copy * state.size + row
            count = int(state.device_count[row])
            ids = tuple(node_id * 8 + j for j in range(count))
            devices = tuple(DeviceSnapshot(j, nodes.model[source], 16384, 1000) for j in range(count))
            cpu, mem = int(nodes.cpu[source]), int(nodes.mem[source])
            inventory.append(InventoryNode(node_id, NodeSnapshot(f"sim/{name}-x{copy}", "sim", cpu, mem, devices), ids))
            for j in range(count):
                if state.gpu_left[row, j] < 1000:
                    device_milli[ids[j]] = 1000 - int(state.gpu_left[row, j])
            if state.cpu_free[row] < cpu or state.mem_free[row] < mem:
                resources[node_id] = (cpu - int(state.cpu_free[row]), mem - int(state.mem_free[row]))
    requests = [PlacementRequest(int(pods.cpu[i]), int(pods.mem[i]), int(pods.count[i]),
                                 int(pods.milli[i]) if pods.count[i] else 1000,
                                 allowed_models=frozenset(pods.spec[i].split("|")) if pods.spec[i] else None)
                for i in range(len(pods))]
    return inventory, Holds(device_milli, resources), requests


_ROWS: dict[str, int] = {}  # node name -> row of the live fleet


def held_after(holds: Holds, live: LiveFleet, decision: Placement, request: PlacementRequest) -> Holds:
    """The ledger after holding ``decision`` (what the platform commits), as new holds."""
    row = _ROWS[decision.node]
    inv = live.inventory[row]
    by_index = {d.index: i for d, i in zip(inv.node.devices, inv.device_ids, strict=True)}
    milli = dict(holds.device_milli)
    for index in decision.device_indices:
        milli[by_index[index]] = milli.get(by_index[index], 0) + decision.milli_per_device
    resources = dict(holds.node_resources)
    cpu, mem = resources.get(inv.node_id, (0, 0))
    resources[inv.node_id] = (cpu + request.cpu_milli, mem + request.memory_mib)
    return Holds(milli, resources, holds.exclusive)


def percentiles(samples: list[float]) -> str:
    ms = np.array(samples) * 1000
    p50, p99 = np.percentile(ms, 50), np.percentile(ms, 99)
    return f"p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  max {ms.max():7.2f} ms (n={len(ms)})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--decisions", type=int, default=300)
    parser.add_argument("--rebuilds", type=int, default=5)
    parser.add_argument("--scale", type=int, default=16)
    args = parser.parse_args()
    inventory, holds, requests = tiled_fleet(args.scale)
    started = time.perf_counter()
    live = LiveFleet(inventory, holds)
    build = time.perf_counter() - started
    _ROWS.update({name: i for i, name in enumerate(live.fleet.names)})
    rng = np.random.default_rng(0)
    picks = rng.integers(len(requests), size=args.decisions)
    print(f"{live.fleet.size} nodes, {int(live.fleet.device_count.sum())} GPUs, "
          f"{live.fleet.gpu_left.sum() / live.fleet.device_count.sum() / 10:.0f} % GPU free; "
          f"cache built in {build:.2f} s; load {os.getloadavg()}")
    decide, apply, diff, first_of_shape, seen = [], [], [], [], set()
    cpu_decide: list[float] = []  # CPU time of the deciding thread: what the decision costs without the load
    for pick in picks.tolist():
        request = requests[pick]
        started, cpu_started = time.perf_counter(), time.thread_time()
        decision = live.place(request)
        elapsed = time.perf_counter() - started
        cpu_decide.append(time.thread_time() - cpu_started)
        shape = (request.cpu_milli, request.milli_per_device, request.device_count, request.allowed_models)
        (decide if shape in seen else first_of_shape).append(elapsed)
        seen.add(shape)
        if isinstance(decision, Placement):
            holds = held_after(holds, live, decision, request)
            node_id = live.inventory[_ROWS[decision.node]].node_id
            started = time.perf_counter()
            live.update(holds, changed_nodes=[node_id])  # the ledger's writer knows the node it held on
            apply.append(time.perf_counter() - started)
            started = time.perf_counter()
            live.update(holds)  # the same holds again, found by diffing every hold: nothing changed
            diff.append(time.perf_counter() - started)
    print(f"cache: decision, shape seen before      {percentiles(decide)}")
    print(f"cache: decision, first of its shape     {percentiles(first_of_shape)}")
    print(f"cache: all decisions                    {percentiles(decide + first_of_shape)}")
    print(f"cache: all decisions, CPU time          {percentiles(cpu_decide)}")
    print(f"cache: update after a hold (1 node)     {percentiles(apply)}")
    print(f"cache: diff of all holds (no change)    {percentiles(diff)}")
    snapshot, rebuild = live.snapshot(), []
    for pick in picks[: args.rebuilds].tolist():
        started = time.perf_counter()
        reference = place(snapshot, requests[pick])
        rebuild.append(time.perf_counter() - started)
        assert reference == live.place(requests[pick]), "cache and rebuild disagree"
    print(f"rebuild per call: place(snapshot)       {percentiles(rebuild)}  (same answers as the cache)")


if __name__ == "__main__":
    main()
