"""Steps 1–2 of the pipeline, cached per demand shape and refreshed only on the nodes changed since.

Shared by the trace replay (``zhisuan.sim.replay``) and the live platform's fleet cache
(``core.placement.live.LiveFleet``): whoever mutates the fleet arrays calls ``record_change(row)`` for
every row whose state changed, and ``feasible_scores`` is then exactly ``evaluate`` over all nodes
(a node's filter result and score depend only on that node's state and the demand).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from zhisuan.core.placement.filters import FILTER_STAGES
from zhisuan.core.placement.fleet import Demand, FleetArrays
from zhisuan.core.placement.fragmentation import TargetWorkload
from zhisuan.core.placement.pipeline import evaluate
from zhisuan.core.placement.policies import Policy


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
