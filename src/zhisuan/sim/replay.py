"""The FGD paper's experiment: schedule an arrival order one pod at a time, never remove pods.

After every event (placed or dropped) the replay records the GPU milli that has arrived and the GPU
milli allocated; the fragmentation curve is computed afterwards from the node states it recorded.
Decisions go through ``zhisuan.core.placement.pipeline`` (filter → score → select → devices); the
only replay-specific part is ``CachedEvaluator``, which reuses step 1–2 results per demand shape and
re-evaluates just the nodes changed since (exact, because a node's filter result and score depend only
on that node's state and the demand — checked by tests/sim against uncached evaluation).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from zhisuan.core.placement.devices import choose_slots
from zhisuan.core.placement.filters import FILTER_STAGES
from zhisuan.core.placement.fleet import NO_CODE, Demand, FleetArrays, commit
from zhisuan.core.placement.fragmentation import (
    TargetWorkload,
    node_fragmentation,
    target_workload,
    typical_shapes,
)
from zhisuan.core.placement.pipeline import evaluate, select_node
from zhisuan.core.placement.policies import Policy, get_policy
from zhisuan.sim.orders import ArrivalOrder
from zhisuan.sim.traces import NodeTable, PodTable


@dataclass
class _CacheEntry:
    scope: np.ndarray  # int64[K] the nodes this demand can use at all (its allowed models), evaluated here
    stage: np.ndarray  # int8[N]; nodes outside the scope keep MODEL_NOT_ALLOWED
    score: np.ndarray
    slot: np.ndarray
    seen: int  # number of commits already reflected


MODEL_NOT_ALLOWED = 1 + [s.reason for s in FILTER_STAGES].index("model not allowed")


@dataclass
class CachedEvaluator:
    """``evaluate`` over all nodes for a demand, refreshing only nodes changed since the last call.

    A type-constrained demand is evaluated only on the nodes that have a device of an allowed model
    (a static property of the fleet): the others always fail its type filter, so re-scoring them
    after every change — most of the cost on gpuspec traces — would be wasted.
    """

    fleet: FleetArrays
    policy: Policy
    workload: TargetWorkload | None
    enabled: bool = True
    changed: list[int] = field(default_factory=list)
    entries: dict[Demand, _CacheEntry] = field(default_factory=dict)
    stamp: np.ndarray = field(init=False)  # int64[N]: commit count when the node last changed

    def __post_init__(self) -> None:
        self.stamp = np.full(self.fleet.size, -1, np.int64)

    def record_change(self, node: int) -> None:
        self.stamp[node] = len(self.changed)
        self.changed.append(node)

    def scope_of(self, demand: Demand) -> np.ndarray:
        if demand.allowed is None or not demand.wants_devices:
            return np.arange(self.fleet.size)
        table = np.zeros(len(self.fleet.models) + 1, bool)  # last entry: code -1 (absent)
        table[list(demand.allowed)] = True
        return np.flatnonzero(table[self.fleet.device_model].any(axis=1))

    def feasible_scores(self, demand: Demand) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(feasible bool[N], score float[N], slot int[N]) for ``demand``."""
        key = demand.without_memory()  # memory never affects scores; it is checked below on all nodes
        if not self.enabled:  # the reference the cached path is tested against: every node, every time
            ev = evaluate(self.fleet, key, self.policy, np.arange(self.fleet.size), self.workload)
            return (ev.stage == 0) & (self.fleet.mem_free >= demand.mem), ev.score, ev.slot
        entry = self.entries.get(key)
        if entry is None:
            scope = self.scope_of(key)
            ev = evaluate(self.fleet, key, self.policy, scope, self.workload)
            n = self.fleet.size
            entry = _CacheEntry(
                scope, np.full(n, MODEL_NOT_ALLOWED, np.int8), np.full(n, -np.inf), np.full(n, -1, np.int64), 0
            )
            entry.stage[scope], entry.score[scope], entry.slot[scope] = ev.stage, ev.score, ev.slot
            entry.seen = len(self.changed)
            self.entries[key] = entry
        elif entry.seen < len(self.changed):
            stale = entry.scope[self.stamp[entry.scope] >= entry.seen]
            if len(stale):
                ev = evaluate(self.fleet, key, self.policy, stale, self.workload)
                entry.stage[stale], entry.score[stale], entry.slot[stale] = ev.stage, ev.score, ev.slot
            entry.seen = len(self.changed)
        feasible = (entry.stage == 0) & (self.fleet.mem_free >= demand.mem)  # filters.memory_fits on all nodes
        return feasible, entry.score, entry.slot


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
