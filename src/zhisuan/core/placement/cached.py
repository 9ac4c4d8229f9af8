"""Steps 1–2 of the pipeline, cached per demand shape and refreshed only on the nodes changed since.

Shared by the trace replay (``zhisuan.sim.replay``) and the live platform's fleet cache
(``core.placement.live.LiveFleet``): whoever mutates the fleet arrays calls ``record_change(row)`` for
every row whose state changed, and ``feasible_scores`` is then exactly ``evaluate`` over all nodes
(a node's filter result and score depend only on that node's state and the demand).

The first call for a demand shape (no cache yet) is made cheap in two exact ways:

- *capacity pruning*: a node with ``cpu_free < c`` or fewer than ``k`` devices with ``left ≥ m`` fails
  the CPU or share filter whatever else holds (eligibility only removes devices), so it is not
  evaluated;
- *state classes* (``RowClasses``): nodes whose rows are equal in every per-node field the filters
  and score plugins read (static device attributes, labels, site, health, and the dynamic CPU,
  memory, device shares, tenant, workload classes) get the same stage, score and slot, so each
  distinct state is evaluated once and the result is spread to its members. A fleet of N nodes
  usually has far fewer distinct states (idle nodes of one type, full nodes, …).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from zhisuan.core.placement.filters import (
    DYNAMIC_STAGES,
    FILTER_STAGES,
    STATIC_STAGES,
    earliest_failure,
    first_failed_stage,
)
from zhisuan.core.placement.fleet import Demand, FleetArrays
from zhisuan.core.placement.fragmentation import TargetWorkload
from zhisuan.core.placement.node_view import NodeView
from zhisuan.core.placement.pipeline import Evaluation, evaluate, score_passing
from zhisuan.core.placement.policies import Policy


def _stage_of(reason: str) -> int:
    return 1 + [s.reason for s in FILTER_STAGES].index(reason)


MODEL_NOT_ALLOWED = _stage_of("model not allowed")
CPU_SHORT = _stage_of("not enough free CPU")
SHARE_SHORT = _stage_of("not enough free GPU share")
# After MEMO_TRIAL refreshes, an evaluator whose refreshes skip evaluation less than 1 in MEMO_WORTH times
# (node states rarely recur, e.g. much CPU-only work) re-scores changed nodes directly: lookups cost more.
MEMO_TRIAL = 256
MEMO_WORTH = 4
# Up to this many rows, classes are grouped by sorting them (else by a table over all class ids).
SMALL = 256
# Distinct states remembered per node before the class table is rebuilt from the current rows only.
MAX_CLASSES_PER_NODE = 4


class RowClasses:
    """Class ids of the fleet's rows: two rows share an id iff their per-node state is byte-equal.

    Static columns (device model, memory, throughput, stack, index, health; node health, site and
    labels) are assumed constant for the fleet's lifetime (the live fleet rebuilds on any inventory
    change; the replay never changes them). Dynamic columns are re-read for rows marked with
    ``mark(row)``, lazily, when classes are next asked for.
    """

    def __init__(self, fleet: FleetArrays) -> None:
        self.fleet = fleet
        places: dict[tuple[object, ...], int] = {}
        labels = fleet.labels or ({},) * fleet.size
        place = np.array([places.setdefault((site, tuple(sorted(lab.items()))), len(places))
                          for site, lab in zip(fleet.sites, labels, strict=True)], np.int64).reshape(-1)
        columns = np.column_stack([
            place, fleet.node_healthy.astype(np.int64), fleet.device_model.astype(np.int64), fleet.device_memory,
            fleet.device_tflops.astype(np.float64).view(np.int64), fleet.device_stack.astype(np.int64),
            fleet.device_index, fleet.device_healthy.astype(np.int64)])
        # An empty fleet (nothing fits the filters) has no rows: reshape(0, -1) cannot infer a width.
        static = np.ascontiguousarray(columns.reshape(fleet.size, columns.size // fleet.size if fleet.size else 0))
        kinds: dict[bytes, int] = {}  # a row's static part as one small code: dynamic keys stay short
        self.static = np.array([kinds.setdefault(row.tobytes(), len(kinds)) for row in static], np.int64)
        self.class_of = np.zeros(fleet.size, np.int64)
        # int64[N,G] each row's free milli in descending order: ``≥ k devices have left ≥ m`` is
        # ``descending[:, k-1] ≥ m``, one column instead of a pass over all slots (capacity pruning).
        self.descending = np.zeros(fleet.gpu_left.shape, np.int64)
        self._ids: dict[bytes, int] = {}
        self._dirty: set[int] = set(range(fleet.size))
        self.epoch = 0  # bumped when ids are reassigned (results remembered per id are then void)

    @property
    def count(self) -> int:
        """Ids handed out so far (ids are ``0 .. count-1``)."""
        return len(self._ids)

    def mark(self, row: int) -> None:
        self._dirty.add(row)

    def _state(self, rows: np.ndarray) -> np.ndarray:
        f = self.fleet
        return np.ascontiguousarray(np.column_stack([
            self.static[rows], f.cpu_free[rows], f.mem_free[rows], f.node_tenant[rows].astype(np.int64),
            f.affinity[rows], f.gpu_left[rows]]).reshape(len(rows), -1))

    def refresh(self) -> None:
        """Re-read the rows marked since the last refresh."""
        if not self._dirty:
            return
        if len(self._ids) + len(self._dirty) > MAX_CLASSES_PER_NODE * self.fleet.size + 1024:
            self._ids.clear()  # ids of states no row has any more: start over from the current rows
            self._dirty = set(range(self.fleet.size))
            self.epoch += 1
        rows = np.fromiter(self._dirty, np.int64, len(self._dirty))
        self.descending[rows] = -np.sort(-self.fleet.gpu_left[rows], axis=1)
        state = self._state(rows)
        keys = [row.tobytes() for row in state]  # a row's bytes: exact equality, usable as a dict key
        ids = self._ids
        self.class_of[rows] = [ids.setdefault(key, len(ids)) for key in keys]
        self._dirty.clear()

    def representatives(self, rows: np.ndarray, own: frozenset[int] = frozenset()) -> tuple[np.ndarray, np.ndarray]:
        """(reps, spread): one row per distinct class among ``rows`` (rows in ``own`` each alone: their
        result depends on their identity, e.g. a job's avoid set) and, per row, its position in reps."""
        self.refresh()
        classes = self.class_of[rows].copy()
        if own:
            alone = np.isin(rows, np.fromiter(own, np.int64, len(own)))
            classes[alone] = len(self._ids) + np.arange(int(alone.sum()))
        if len(rows) <= SMALL:  # a few changed rows: sorting them beats a pass over every id
            _, first, spread = np.unique(classes, return_index=True, return_inverse=True)
            return rows[first], spread.reshape(-1)
        present = np.zeros(len(self._ids) + len(rows) + 1, bool)
        present[classes] = True
        position = np.cumsum(present) - 1
        reps = np.empty(int(present.sum()), np.int64)
        spread = position[classes]
        reps[spread] = rows  # any member of a class represents it (all members are equal)
        return reps, spread


@dataclass
class _CacheEntry:
    scope: np.ndarray  # int64[K] the nodes this demand can use at all (its allowed models), evaluated here
    stage: np.ndarray  # int8[N]; 0 = feasible; otherwise a stage the node fails (not always its first)
    score: np.ndarray
    slot: np.ndarray
    seen: int  # number of commits already reflected
    # The filters that read only static columns, evaluated once on ``scope`` (``filters.STATIC_STAGES``):
    # each refresh then runs just the dynamic ones (tenant, CPU, memory, free share) on the changed rows.
    static_stage: np.ndarray  # int8[N] first failing static stage (0 = passes them all)
    eligible: np.ndarray | None  # bool[N,G] devices the demand may use (NodeView.eligible); None: CPU-only
    # Results per state class (``RowClasses`` id) already evaluated for this demand: a node that changes
    # into a state some node had before is not evaluated again (the replay's states recur often).
    epoch: int = -1
    known: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    class_stage: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int8))
    class_score: np.ndarray = field(default_factory=lambda: np.zeros(0))
    class_slot: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def remember_up_to(self, count: int, epoch: int) -> None:
        """Make room for class ids below ``count``; forget everything if the ids were reassigned."""
        if epoch != self.epoch:
            self.epoch, self.known = epoch, np.zeros(0, bool)
        if len(self.known) < count:
            size = max(count, 2 * len(self.known))
            grown = np.zeros(size, bool)
            grown[: len(self.known)] = self.known
            self.known = grown
            self.class_stage = np.resize(self.class_stage, size)
            self.class_score = np.resize(self.class_score, size)
            self.class_slot = np.resize(self.class_slot, size)


@dataclass
class CachedEvaluator:
    """``evaluate`` over all nodes for a demand, refreshing only nodes changed since the last call.

    A type-constrained demand is evaluated only on the nodes that have a device of an allowed model
    (a static property of the fleet): the others always fail its type filter, so re-scoring them
    after every change — most of the cost on gpuspec traces — would be wasted. ``classes`` may be
    shared by several evaluators of one fleet; its owner marks changed rows (``RowClasses.mark``),
    an evaluator that made its own does it in ``record_change``.
    """

    fleet: FleetArrays
    policy: Policy
    workload: TargetWorkload | None
    enabled: bool = True
    classes: RowClasses | None = None
    changed: list[int] = field(default_factory=list)
    entries: dict[Demand, _CacheEntry] = field(default_factory=dict)
    stamp: np.ndarray = field(init=False)  # int64[N]: commit count when the node last changed
    fills: int = 0  # refreshes of changed nodes through the memo, and how many evaluated nothing
    hits: int = 0
    _own_classes: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        self.stamp = np.full(self.fleet.size, -1, np.int64)
        if self.classes is None:
            self.classes, self._own_classes = RowClasses(self.fleet), True

    def record_change(self, node: int) -> None:
        self.stamp[node] = len(self.changed)
        self.changed.append(node)
        if self._own_classes:
            self.classes.mark(node)  # type: ignore[union-attr]

    def scope_of(self, demand: Demand) -> np.ndarray:
        if demand.allowed is None or not demand.wants_devices:
            return np.arange(self.fleet.size)
        table = np.zeros(len(self.fleet.models) + 1, bool)  # last entry: code -1 (absent)
        table[list(demand.allowed)] = True
        return np.flatnonzero(table[self.fleet.device_model].any(axis=1))

    def short_of(self, demand: Demand, rows: np.ndarray) -> np.ndarray:
        """int8[K]: CPU_SHORT / SHARE_SHORT for rows that cannot fit ``demand`` by capacity, else 0."""
        short = np.where(self.fleet.cpu_free[rows] < demand.cpu, CPU_SHORT, 0).astype(np.int8)
        if demand.wants_devices:
            if demand.count > self.fleet.gpu_left.shape[1]:
                return np.full(len(rows), SHARE_SHORT, np.int8)
            classes = self.classes
            classes.refresh()  # type: ignore[union-attr]
            kth = classes.descending[rows, demand.count - 1]  # type: ignore[union-attr]
            short[(short == 0) & (kth < demand.milli)] = SHARE_SHORT
        return short

    def _first(self, key: Demand) -> _CacheEntry:
        """Every node's stage, score and slot for a new shape."""
        n, scope = self.fleet.size, self.scope_of(key)
        view = NodeView(self.fleet, key, scope)
        static = np.zeros(n, np.int8)
        static[scope] = first_failed_stage(view, STATIC_STAGES)
        eligible = None
        if key.wants_devices:
            eligible = np.zeros(self.fleet.gpu_left.shape, bool)
            eligible[scope] = view.eligible
        entry = _CacheEntry(
            scope, np.full(n, MODEL_NOT_ALLOWED, np.int8), np.full(n, -np.inf), np.full(n, -1, np.int64), 0,
            static, eligible,
        )
        self._fill(entry, key, scope)
        return entry

    def _evaluate(self, entry: _CacheEntry, key: Demand, rows: np.ndarray) -> Evaluation:
        """``pipeline.evaluate`` of ``rows`` (in ``entry.scope``), with the static filters read from the entry."""
        view = NodeView(self.fleet, key, rows)
        if entry.eligible is not None:
            view.given(eligible=entry.eligible[rows])
        stage = earliest_failure(entry.static_stage[rows], first_failed_stage(view, DYNAMIC_STAGES))
        return score_passing(view, stage, self.policy, self.workload)

    def _fill(self, entry: _CacheEntry, key: Demand, rows: np.ndarray) -> bool:
        """Stage, score and slot of ``rows`` into ``entry``: pruned by capacity, then from the entry's
        per-class results where known, the rest evaluated once per state class. True if nothing was
        evaluated."""
        short = self.short_of(key, rows)
        entry.stage[rows], entry.score[rows], entry.slot[rows] = short, -np.inf, -1
        rows = rows[short == 0]
        if not len(rows):
            return True
        classes = self.classes
        assert classes is not None
        classes.refresh()
        entry.remember_up_to(classes.count, classes.epoch)
        ids = classes.class_of[rows]
        alone = np.isin(rows, np.fromiter(key.avoid, np.int64, len(key.avoid))) if key.avoid else None
        known = entry.known[ids] if alone is None else entry.known[ids] & ~alone
        done, done_ids = rows[known], ids[known]
        entry.stage[done], entry.score[done] = entry.class_stage[done_ids], entry.class_score[done_ids]
        entry.slot[done] = entry.class_slot[done_ids]
        todo = rows[~known]
        if not len(todo):
            return True
        reps, spread = classes.representatives(todo, key.avoid)
        ev = self._evaluate(entry, key, reps)
        entry.stage[todo], entry.score[todo], entry.slot[todo] = ev.stage[spread], ev.score[spread], ev.slot[spread]
        shared = ~np.isin(reps, np.fromiter(key.avoid, np.int64, len(key.avoid))) if key.avoid else slice(None)
        rep_ids = classes.class_of[reps][shared]
        entry.known[rep_ids] = True
        entry.class_stage[rep_ids], entry.class_score[rep_ids] = ev.stage[shared], ev.score[shared]
        entry.class_slot[rep_ids] = ev.slot[shared]
        return False

    def feasible_scores(self, demand: Demand) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(feasible bool[N], score float[N], slot int[N]) for ``demand``."""
        key = demand.without_memory()  # memory never affects scores; it is checked below on all nodes
        if not self.enabled:  # the reference the cached path is tested against: every node, every time
            ev = evaluate(self.fleet, key, self.policy, np.arange(self.fleet.size), self.workload)
            return (ev.stage == 0) & (self.fleet.mem_free >= demand.mem), ev.score, ev.slot
        entry = self.entries.get(key)
        if entry is None:
            entry = self.entries[key] = self._first(key)
            entry.seen = len(self.changed)
        elif entry.seen < len(self.changed):
            stale = entry.scope[self.stamp[entry.scope] >= entry.seen]
            if len(stale) and self.fills >= MEMO_TRIAL and self.hits * MEMO_WORTH < self.fills:
                ev = self._evaluate(entry, key, stale)  # states rarely recur here:
                entry.stage[stale], entry.score[stale], entry.slot[stale] = ev.stage, ev.score, ev.slot  # plain
            elif len(stale):
                self.fills += 1
                self.hits += self._fill(entry, key, stale)
            entry.seen = len(self.changed)
        feasible = (entry.stage == 0) & (self.fleet.mem_free >= demand.mem)  # filters.memory_fits on all nodes
        return feasible, entry.score, entry.slot
