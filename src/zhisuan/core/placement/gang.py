"""Gang placement: all workers of a multi-node job at once, on one site, close together in the network.

For a gang of ``W`` workers, each asking for demand ``d`` (``c`` milli-CPU, ``m`` MiB, ``k`` devices of
``milli`` each)::

    feasible(n) = node n passes every filter stage for d          (pipeline.evaluate, as `zhisuan place`)
    fit(n)      = min(cpuL_n div c, memL_n div m, (Σ_g usable_left_g div milli) div k)
                  workers node n could host on its own (whole devices: free devices div k)
    groups      = for each topology key in order (``zhisuan.io/ib-domain``, then ``rack``): the feasible
                  nodes of one site sharing one value of that label; then each whole site
    a group is tried only if Σ_{n ∈ group} fit(n) ≥ W; within a level the tightest group goes first
    (smallest Σ fit, then site and label value), so large domains stay free for large gangs.

Inside a group the workers are placed one after another with the ordinary pipeline (evaluate →
select_node → choose_slots → commit), so an 8-device worker lands on a whole 8-device node by the
same scores as any other request. If a worker does not fit, every commit of the attempt is undone
exactly and the next group is tried: the arrays are unchanged unless the whole gang is placed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from zhisuan.core.placement.devices import choose_slots
from zhisuan.core.placement.filters import FILTER_STAGES
from zhisuan.core.placement.fleet import Demand, FleetArrays, commit, demand_from_request
from zhisuan.core.placement.fragmentation import TargetWorkload, target_workload, typical_shapes
from zhisuan.core.placement.node_view import NodeView
from zhisuan.core.placement.pipeline import evaluate, select_node
from zhisuan.core.placement.policies import DEFAULT_POLICY, Policy, get_policy
from zhisuan.core.placement.snapshot import PlacementRequest, Rejection

DEFAULT_TOPOLOGY_KEYS = ("zhisuan.io/ib-domain", "rack")
SITE_NOT_ALLOWED = "site not allowed for this job"


@dataclass(frozen=True)
class GangPlacement:
    """Where each worker went: fleet rows and device slots, the site, and the shared topology domain."""

    rows: tuple[int, ...]
    slots: tuple[np.ndarray, ...]
    site: str
    domain: tuple[str, str] | None  # (label key, value) shared by all workers; None = anywhere on the site


@dataclass(frozen=True)
class _Group:
    rows: np.ndarray  # fleet rows of feasible nodes in the group
    capacity: int  # Σ fit(n)
    site: str
    domain: tuple[str, str] | None


def workload_for_demand(fleet: FleetArrays, demand: Demand) -> TargetWorkload:
    """Without a queue-wide workload, fragmentation is measured against the demand's own shape."""
    models = "|".join(sorted(fleet.models[c] for c in demand.allowed)) if demand.allowed is not None else ""
    shape = (demand.cpu, demand.milli, demand.count, models if demand.wants_devices else "")
    return target_workload(typical_shapes([shape]), fleet.models)


def worker_fit(view: NodeView, cap: int) -> np.ndarray:
    """int64[K]: fit(n) of the module docstring, capped at ``cap`` (the gang size)."""
    d = view.demand
    fit = np.full(len(view.idx), cap, np.int64)
    if d.cpu > 0:
        fit = np.minimum(fit, view.cpu // d.cpu)
    if d.mem > 0:
        fit = np.minimum(fit, view.fleet.mem_free[view.idx] // d.mem)
    if d.wants_devices:
        per_device = (view.usable_left // d.milli).sum(axis=1)
        fit = np.minimum(fit, per_device // d.count)
    return fit


def candidate_groups(
    fleet: FleetArrays, rows: np.ndarray, fit: np.ndarray, workers: int, keys: Iterable[str]
) -> list[_Group]:
    """Groups of feasible ``rows`` in preference order (see the module docstring); only those that could fit."""
    ordered: list[_Group] = []
    levels: list[str | None] = [*keys, None]
    for key in levels:
        members: dict[tuple[str, str], list[int]] = defaultdict(list)
        for pos, row in enumerate(rows):
            value = "" if key is None else fleet.labels[row].get(key) if fleet.labels else None
            if value is not None:
                members[(fleet.sites[row], value)].append(pos)
        level = []
        for (site, value), positions in members.items():
            capacity = int(fit[positions].sum())
            if capacity >= workers:
                domain = None if key is None else (key, value)
                level.append(_Group(rows[positions], capacity, site, domain))
        level.sort(key=lambda g: (g.capacity, g.site, g.domain or ("", "")))
        ordered.extend(level)
    return ordered


def _place_one(
    fleet: FleetArrays,
    demand: Demand,
    policy: Policy,
    rows: np.ndarray,
    workload: TargetWorkload | None,
    rng: np.random.Generator | None,
    priority: np.ndarray | None,
) -> tuple[int, np.ndarray] | None:
    """One worker on the best of ``rows`` (not committed), or None if none is feasible."""
    ev = evaluate(fleet, demand, policy, rows, workload)
    pos, _ = select_node(ev.stage == 0, ev.score, policy, rng, None if priority is None else priority[rows])
    if pos < 0:
        return None
    row = int(rows[pos])
    return row, choose_slots(fleet, demand, row, policy.device_method, int(ev.slot[pos]), rng)


def _try_group(
    fleet: FleetArrays,
    demand: Demand,
    workers: int,
    policy: Policy,
    group: _Group,
    workload: TargetWorkload | None,
    rng: np.random.Generator | None,
    priority: np.ndarray | None,
) -> GangPlacement | None:
    """All workers inside ``group``, or None with the arrays restored exactly."""
    saved: list[tuple[int, int, int, np.ndarray, int]] = []
    placed_rows: list[int] = []
    placed_slots: list[np.ndarray] = []
    for _ in range(workers):
        chosen = _place_one(fleet, demand, policy, group.rows, workload, rng, priority)
        if chosen is None:
            for row, cpu, mem, left, affinity in reversed(saved):
                fleet.cpu_free[row], fleet.mem_free[row], fleet.affinity[row] = cpu, mem, affinity
                fleet.gpu_left[row] = left
            return None
        row, slots = chosen
        saved.append(
            (
                row,
                int(fleet.cpu_free[row]),
                int(fleet.mem_free[row]),
                fleet.gpu_left[row].copy(),
                int(fleet.affinity[row]),
            )
        )
        commit(fleet, row, slots, demand)
        placed_rows.append(row)
        placed_slots.append(slots)
    return GangPlacement(tuple(placed_rows), tuple(placed_slots), group.site, group.domain)


def gang_rejection(stage: np.ndarray, outside: int, workers: int) -> Rejection:
    """Per-node reasons as `zhisuan place` gives them (``pipeline.rejection_from``, counted with bincount
    because a queue asks thousands of times), plus the site fence and the gang's own shortfall."""
    counts = np.bincount(stage.astype(np.int64), minlength=len(FILTER_STAGES) + 1)
    reasons = [(FILTER_STAGES[s - 1].reason, int(counts[s])) for s in range(1, len(counts)) if counts[s]]
    feasible = int(counts[0])
    if feasible and workers > 1:
        reasons.insert(0, (f"could host a worker, but no single site has room for all {workers} workers", feasible))
    if outside:
        reasons.append((SITE_NOT_ALLOWED, outside))
    return Rejection(tuple(reasons))


def place_gang(
    fleet: FleetArrays,
    request: PlacementRequest | Demand,
    workers: int,
    policy: Policy | str = DEFAULT_POLICY,
    *,
    sites: frozenset[str] | None = None,
    topology_keys: tuple[str, ...] = DEFAULT_TOPOLOGY_KEYS,
    workload: TargetWorkload | None = None,
    rng: np.random.Generator | None = None,
    priority: np.ndarray | None = None,
) -> GangPlacement | Rejection:
    """Place ``workers`` copies of ``request`` all at once on one of ``sites`` (None = any) and commit them.

    ``priority`` is the tie-break order over fleet rows (as in ``pipeline.place``); ``workload`` the
    fragmentation target (default: the request's own shape). On a Rejection the arrays are unchanged.
    """
    if workers < 1:
        raise ValueError("a gang has at least one worker")
    chosen = get_policy(policy) if isinstance(policy, str) else policy
    demand = request if isinstance(request, Demand) else demand_from_request(fleet, request)
    if chosen.needs_workload and workload is None:
        workload = workload_for_demand(fleet, demand)
    allowed = np.arange(fleet.size)
    if sites is not None:
        allowed = np.array([r for r in range(fleet.size) if fleet.sites[r] in sites], np.int64)
    outside = fleet.size - len(allowed)
    view = NodeView(fleet, demand, allowed)
    ev = evaluate(fleet, demand, chosen, allowed, workload)
    ok = np.flatnonzero(ev.stage == 0)
    if workers == 1 and len(ok):
        pos, _ = select_node(ev.stage == 0, ev.score, chosen, rng, None if priority is None else priority[allowed])
        row = int(allowed[pos])
        slots = choose_slots(fleet, demand, row, chosen.device_method, int(ev.slot[pos]), rng)
        commit(fleet, row, slots, demand)
        return GangPlacement((row,), (slots,), fleet.sites[row], None)
    if len(ok):
        fit = worker_fit(view.subset(ok), workers)
        for group in candidate_groups(fleet, allowed[ok], fit, workers, topology_keys):
            placed = _try_group(fleet, demand, workers, chosen, group, workload, rng, priority)
            if placed is not None:
                return placed
    return gang_rejection(ev.stage, outside, workers)
