"""The live fleet: one incremental structure for every placement decision of the platform.

``LiveFleet`` keeps the fleet as the platform sees it — inventory (what each node and device is) minus
the ledger's holds (``Holds``: device shares, node CPU/memory, exclusive leases) — in two forms that
stay equal: the frozen ``NodeSnapshot`` per node (what the queue's admission cycle and serving read)
and the numpy ``FleetArrays`` with one ``CachedEvaluator`` per (policy, target workload) (what
``place`` decides on). ``update(holds)`` diffs the new holds against the current ones and rewrites only
the rows of nodes whose state changed, so a decision costs O(changed nodes) re-scoring plus one
vectorised select over N, instead of building N snapshots and arrays per call.

Invariant (tests/core/placement/test_placement_live.py, Hypothesis): after any sequence of updates,
``snapshot()`` equals the snapshot built from scratch from the same inventory and holds, the arrays
equal ``fleet_from_snapshot`` of it (tenant codes compared by name), and ``place`` answers exactly
what ``pipeline.place`` answers on it.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType

import numpy as np

from zhisuan.core.placement.cached import CachedEvaluator, RowClasses
from zhisuan.core.placement.devices import choose_slots
from zhisuan.core.placement.fleet import FleetArrays, demand_from_request, fleet_from_snapshot
from zhisuan.core.placement.fragmentation import TargetWorkload, TaskShape, target_workload
from zhisuan.core.placement.pipeline import evaluate, rejection_from, request_shape, select_node
from zhisuan.core.placement.policies import DEFAULT_POLICY, Policy, get_policy
from zhisuan.core.placement.snapshot import (
    MILLI_PER_DEVICE,
    ClusterSnapshot,
    NodeSnapshot,
    Placement,
    PlacementRequest,
    Rejection,
)

# Cached demand shapes across all evaluators before they are all dropped (each costs ~17 bytes per node:
# 64 shapes on a 20,000-node fleet ≈ 22 MB).
MAX_CACHED_SHAPES = 64
# Changes remembered by the evaluators before they are dropped (their change log grows per update).
MAX_CHANGE_LOG = 1_000_000


def _frozen(mapping: Mapping[int, object]) -> Mapping[int, object]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class Holds:
    """What the ledger holds at one instant, by inventory ids (absent = nothing held)."""

    device_milli: Mapping[int, int] = field(default_factory=dict)  # device id -> milli held
    node_resources: Mapping[int, tuple[int, int]] = field(default_factory=dict)  # node id -> (milli-CPU, MiB)
    exclusive: Mapping[int, str] = field(default_factory=dict)  # node id -> tenant leasing it

    def __post_init__(self) -> None:
        for name in ("device_milli", "node_resources", "exclusive"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))


@dataclass(frozen=True)
class InventoryNode:
    """A node before any hold: full CPU and memory free, every device's ``free_milli`` 1000.

    ``device_ids`` are the inventory ids of ``node.devices``, in the same order.
    """

    node_id: int
    node: NodeSnapshot
    device_ids: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.device_ids) != len(self.node.devices):
            raise ValueError(f"node {self.node.name}: {len(self.device_ids)} device ids for "
                             f"{len(self.node.devices)} devices")


def held_node(inventory: InventoryNode, holds: Holds) -> NodeSnapshot:
    """The node with its holds subtracted (never below zero: an over-held node is simply full)."""
    node = inventory.node
    cpu, memory = holds.node_resources.get(inventory.node_id, (0, 0))
    devices = tuple(
        replace(d, free_milli=max(0, MILLI_PER_DEVICE - holds.device_milli.get(i, 0)))
        for d, i in zip(node.devices, inventory.device_ids, strict=True)
    )
    return replace(node, cpu_milli_free=max(0, node.cpu_milli_free - cpu),
                   memory_mib_free=max(0, node.memory_mib_free - memory), devices=devices,
                   exclusive_tenant=holds.exclusive.get(inventory.node_id))


def _changed_keys(old: Mapping[int, object], new: Mapping[int, object]) -> set[int]:
    return {key for key, _ in old.items() ^ new.items()}  # in C over the two dicts' item views


class LiveFleet:
    """Inventory minus holds, as snapshots and as arrays with cached evaluations (see module doc)."""

    def __init__(self, inventory: Sequence[InventoryNode], holds: Holds | None = None) -> None:
        self.inventory = tuple(inventory)
        self.holds = holds or Holds()
        self.nodes = [held_node(inv, self.holds) for inv in self.inventory]
        self.fleet: FleetArrays = fleet_from_snapshot(ClusterSnapshot(tuple(self.nodes)))
        self.row_of_node = {inv.node_id: row for row, inv in enumerate(self.inventory)}
        self.row_of_device = {d: row for row, inv in enumerate(self.inventory) for d in inv.device_ids}
        # Column of each device in its row: fleet_from_snapshot orders a node's devices by index.
        self.columns = [np.argsort([d.index for d in n.devices], kind="stable") for n in self.nodes]
        self.evaluators: dict[Hashable, CachedEvaluator] = {}
        self.classes = RowClasses(self.fleet)  # shared by the evaluators: a new shape scores each state once
        self.classes.refresh()
        self.updates = 0  # rows rewritten since the build (for reports)

    def device_ids_of(self, nodes: Iterable[int]) -> list[int]:
        """Inventory device ids of the known ``nodes`` (node ids)."""
        return [d for n in nodes if n in self.row_of_node for d in self.inventory[self.row_of_node[n]].device_ids]

    def snapshot(self) -> ClusterSnapshot:
        return ClusterSnapshot(tuple(self.nodes))

    def update(self, holds: Holds, changed_nodes: Iterable[int] | None = None) -> int:
        """Make the fleet reflect ``holds``; rewrites only the changed nodes' rows. Returns their number.

        ``changed_nodes`` (node ids), when the caller knows them, replaces the diff of all holds (O(holds))
        by O(changed); nodes it leaves out must not have changed.
        """
        if changed_nodes is not None:
            rows = {self.row_of_node[n] for n in changed_nodes if n in self.row_of_node}
        else:
            rows = {self.row_of_device[d] for d in _changed_keys(self.holds.device_milli, holds.device_milli)
                    if d in self.row_of_device}
            for key in (_changed_keys(self.holds.node_resources, holds.node_resources)
                        | _changed_keys(self.holds.exclusive, holds.exclusive)):
                if key in self.row_of_node:
                    rows.add(self.row_of_node[key])
        self.holds = holds
        changed = 0
        for row in sorted(rows):
            node = held_node(self.inventory[row], holds)
            if node != self.nodes[row]:
                self._write_row(row, node)
                changed += 1
        self.updates += changed
        return changed

    def _write_row(self, row: int, node: NodeSnapshot) -> None:
        fleet = self.fleet
        self.nodes[row] = node
        fleet.cpu_free[row], fleet.mem_free[row] = node.cpu_milli_free, node.memory_mib_free
        free = np.array([d.free_milli for d in node.devices], np.int64)
        fleet.gpu_left[row, : len(free)] = free[self.columns[row]]
        tenant = node.exclusive_tenant
        if tenant is not None and tenant not in fleet.tenants:
            fleet.tenants = (*fleet.tenants, tenant)  # new code at the end: existing codes stay valid
        fleet.node_tenant[row] = -1 if tenant is None else fleet.tenants.index(tenant)
        self.classes.mark(row)
        for evaluator in self.evaluators.values():
            evaluator.record_change(row)

    def _evaluator(self, policy: Policy, request: PlacementRequest,
                   workload: Sequence[tuple[TaskShape, float]] | None) -> CachedEvaluator:
        targets: TargetWorkload | None = None
        key: Hashable = (policy.name, None)
        if policy.needs_workload:
            shapes = list(workload) if workload else [(request_shape(request), 1.0)]
            key = (policy.name, tuple(shapes))
        evaluator = self.evaluators.get(key)
        if evaluator is None:
            cached = sum(len(e.entries) for e in self.evaluators.values())
            if cached >= MAX_CACHED_SHAPES or any(len(e.changed) > MAX_CHANGE_LOG for e in self.evaluators.values()):
                self.evaluators.clear()
            if policy.needs_workload:
                targets = target_workload(list(key[1]), self.fleet.models)  # type: ignore[index]
            evaluator = self.evaluators[key] = CachedEvaluator(self.fleet, policy, targets, classes=self.classes)
        return evaluator

    def place(self, request: PlacementRequest, policy: str = DEFAULT_POLICY, seed: int = 0,
              workload: Sequence[tuple[TaskShape, float]] | None = None) -> Placement | Rejection:
        """Exactly ``pipeline.place(self.snapshot(), request, policy, seed, workload)``, from the cache."""
        chosen = get_policy(policy)
        fleet = self.fleet
        demand = demand_from_request(fleet, request)
        rng = np.random.default_rng(seed)
        priority = rng.permutation(fleet.size)
        evaluator = self._evaluator(chosen, request, workload)
        feasible, score, slot = evaluator.feasible_scores(demand)
        node, best = select_node(feasible, score, chosen, rng, priority)
        if node < 0:  # the reasons need every node's first failing stage: evaluate all (rare path)
            return rejection_from(evaluate(fleet, demand, chosen, np.arange(fleet.size), evaluator.workload).stage)
        slots = choose_slots(fleet, demand, node, chosen.device_method, int(slot[node]), rng)
        return Placement(
            node=fleet.names[node], site=fleet.sites[node],
            device_indices=tuple(int(fleet.device_index[node, s]) for s in slots),
            milli_per_device=demand.milli if demand.wants_devices else 0,
            score=best, policy=chosen.name, feasible_nodes=int(feasible.sum()),
        )
