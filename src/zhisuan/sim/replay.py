"""The FGD paper's experiment: schedule an arrival order one pod at a time, never remove pods.

After every event (placed or dropped) the replay records the GPU milli that has arrived and the GPU
milli allocated; the fragmentation curve is computed afterwards from the node states it recorded.
Decisions go through ``zhisuan.core.placement.pipeline`` (filter → score → select → devices); the
incremental part is ``core.placement.cached.CachedEvaluator`` (shared with the live platform's fleet
cache), which reuses step 1–2 results per demand shape and re-evaluates just the nodes changed since
(exact, because a node's filter result and score depend only on that node's state and the demand —
checked by tests/sim against uncached evaluation).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from zhisuan.core.placement.cached import CachedEvaluator
from zhisuan.core.placement.devices import choose_slots
from zhisuan.core.placement.fleet import NO_CODE, Demand, FleetArrays, commit
from zhisuan.core.placement.fragmentation import (
    TargetWorkload,
    node_fragmentation,
    target_workload,
    typical_shapes,
)
from zhisuan.core.placement.pipeline import select_node
from zhisuan.core.placement.policies import get_policy
from zhisuan.sim.orders import ArrivalOrder
from zhisuan.sim.traces import NodeTable, PodTable


@dataclass(frozen=True)
class ReplayResult:
    arrived: np.ndarray  # int64[E] cumulative GPU milli requested (placed or not)
    used: np.ndarray  # int64[E] GPU milli allocated after the event
    frag: np.ndarray  # float64[E] cluster fragmentation (milli) after the event
    placed: np.ndarray  # int64[E] node (node-table order) or -1 if dropped
    total_gpus: int
    fleet: FleetArrays  # final state (rows in tie-break priority order)


def fleet_from_nodes(nodes: NodeTable, order: np.ndarray) -> FleetArrays:
    """Arrays of the node table, rows in ``order`` (so array position = tie-break priority)."""
    models = tuple(sorted({m for m in nodes.model if m}))
    width = int(nodes.gpus.max()) if len(nodes.gpus) else 0
    gpus = nodes.gpus[order]
    present = np.arange(width)[None, :] < gpus[:, None]
    code = np.array([models.index(nodes.model[i]) if nodes.model[i] else NO_CODE for i in order], np.int32)
    return FleetArrays(
        names=tuple(nodes.names[i] for i in order),
        sites=("sim",) * len(order),
        cpu_free=nodes.cpu[order].copy(),
        mem_free=nodes.mem[order].copy(),
        gpu_left=np.where(present, 1000, 0).astype(np.int64),
        device_index=np.where(present, np.arange(width)[None, :], -1).astype(np.int64),
        device_model=np.where(present, code[:, None], NO_CODE).astype(np.int32),
        device_memory=np.zeros(present.shape, np.int64),
        device_tflops=np.zeros(present.shape),
        device_stack=np.zeros(present.shape, np.int32),
        device_healthy=present.copy(),
        node_healthy=np.ones(len(order), bool),
        node_tenant=np.full(len(order), NO_CODE, np.int32),
        affinity=np.zeros(len(order), np.int64),
        models=models,
        stacks=("",),
    )


def trace_workload(pods: PodTable, models: tuple[str, ...]) -> TargetWorkload:
    """The FGD target workload: typical shapes of the *original* trace (CPU-only shapes included)."""
    shapes = zip(pods.cpu.tolist(), pods.milli.tolist(), pods.count.tolist(), pods.spec, strict=True)
    return target_workload(typical_shapes(list(shapes)), models)


def pod_demands(pods: PodTable, fleet: FleetArrays) -> list[Demand]:
    """One Demand per pod, sharing objects between pods of the same shape."""
    shared: dict[tuple[int, int, int, int, str], Demand] = {}
    result = []
    for i in range(len(pods)):
        key = (int(pods.cpu[i]), int(pods.mem[i]), int(pods.milli[i]), int(pods.count[i]), pods.spec[i])
        if key not in shared:
            allowed = frozenset(fleet.models.index(m) for m in key[4].split("|")) if key[4] else None
            shared[key] = Demand(cpu=key[0], mem=key[1], milli=key[2], count=key[3], allowed=allowed)
        result.append(shared[key])
    return result


def replay(
    nodes: NodeTable,
    pods: PodTable,
    order: ArrivalOrder,
    policy_name: str,
    seed: int,
    cached: bool = True,
    progress: Callable[[int], None] | None = None,
) -> ReplayResult:
    """Run one experiment; ``seed`` only drives the Random policy's draws."""
    priority = np.argsort(order.tie_rank, kind="stable")
    fleet = fleet_from_nodes(nodes, priority)
    policy = get_policy(policy_name)
    workload = trace_workload(pods, fleet.models)
    evaluator = CachedEvaluator(fleet, policy, workload if policy.needs_workload else None, enabled=cached)
    demands = pod_demands(pods, fleet)
    rng = np.random.default_rng(seed)
    n_events = len(order.events)
    arrived, used, placed = np.zeros(n_events, np.int64), np.zeros(n_events, np.int64), np.full(n_events, -1)
    states: list[tuple[int, int, int, np.ndarray]] = []
    arrived_total = used_total = 0
    for e, pod in enumerate(order.events.tolist()):
        demand = demands[pod]
        arrived_total += demand.milli * demand.count
        feasible, score, slot = evaluator.feasible_scores(demand)
        node, _ = select_node(feasible, score, policy, rng)
        if node >= 0:
            slots = choose_slots(fleet, demand, node, policy.device_method, int(slot[node]), rng)
            commit(fleet, node, slots, demand)
            evaluator.record_change(node)
            used_total += demand.milli * demand.count
            placed[e] = priority[node]
            states.append((e, node, int(fleet.cpu_free[node]), fleet.gpu_left[node].copy()))
        arrived[e], used[e] = arrived_total, used_total
        if progress is not None:
            progress(e)
    frag = fragmentation_curve(nodes, priority, workload, states, n_events)
    return ReplayResult(arrived, used, frag, placed, nodes.total_gpus, fleet)


def fragmentation_curve(
    nodes: NodeTable,
    priority: np.ndarray,
    workload: TargetWorkload,
    states: list[tuple[int, int, int, np.ndarray]],
    n_events: int,
) -> np.ndarray:
    """Σ_n F_n after every event, from the initial fleet and each changed node's new state (batched)."""
    fleet = fleet_from_nodes(nodes, priority)
    current = node_fragmentation(workload, fleet.cpu_free, fleet.gpu_left, fleet.node_model)
    delta = np.zeros(n_events)
    if states:
        events = np.array([s[0] for s in states])
        changed = np.array([s[1] for s in states])
        after = node_fragmentation(
            workload,
            np.array([s[2] for s in states]),
            np.stack([s[3] for s in states]),
            fleet.node_model[changed],
        )
        before = np.empty(len(states))
        latest = current.copy()
        for i, node in enumerate(changed.tolist()):
            before[i] = latest[node]
            latest[node] = after[i]
        np.add.at(delta, events, after - before)
    return current.sum() + np.cumsum(delta)
