"""The placement pipeline, assembled in one place.

    1. filter  — ``filters.FILTER_STAGES`` in order; each node gets its first failing stage;
    2. score   — the policy's score plugin on the feasible nodes (and, for shares, a device choice);
    3. normalise — BestFit's min–max normalisation over the feasible set (other policies: identity);
    4. select  — the highest score; ties go to the node priority order (array position, or ``priority``);
                 Random picks uniformly among feasible nodes;
    5. devices — ``devices.choose_slots`` on the chosen node (the scheduler's Reserve step).

``evaluate`` (steps 1–2 on any subset of nodes) is what the trace replay caches per demand shape;
``decide`` runs all steps on arrays; ``place`` is the snapshot-level entry point of the platform.
Nothing here keeps state between calls; randomness comes only from the caller's seed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from zhisuan.core.placement.devices import choose_slots
from zhisuan.core.placement.filters import FILTER_STAGES, first_failed_stage
from zhisuan.core.placement.fleet import Demand, FleetArrays, demand_from_request, fleet_from_snapshot
from zhisuan.core.placement.fragmentation import TargetWorkload, TaskShape, target_workload, typical_shapes
from zhisuan.core.placement.node_view import NodeView
from zhisuan.core.placement.policies import DEFAULT_POLICY, Policy, get_policy
from zhisuan.core.placement.scores import normalise_min_max
from zhisuan.core.placement.snapshot import ClusterSnapshot, Placement, PlacementRequest, Rejection


@dataclass(frozen=True)
class Evaluation:
    """Steps 1–2 for nodes ``idx``: ``stage[k]`` (0 = feasible), ``score[k]`` (-inf if not), ``slot[k]``."""

    stage: np.ndarray
    score: np.ndarray
    slot: np.ndarray


@dataclass(frozen=True)
class Decision:
    node: int  # row in the fleet arrays
    slots: np.ndarray  # device slots (columns), empty for CPU-only
    score: float
    feasible: int


def evaluate(
    fleet: FleetArrays, demand: Demand, policy: Policy, idx: np.ndarray, workload: TargetWorkload | None
) -> Evaluation:
    """Filter (step 1) then score (step 2) the nodes ``idx``."""
    view = NodeView(fleet, demand, idx)
    return score_passing(view, first_failed_stage(view), policy, workload)


def score_passing(view: NodeView, stage: np.ndarray, policy: Policy, workload: TargetWorkload | None) -> Evaluation:
    """Step 2 on the nodes of ``view`` whose first failing ``stage`` is 0 (the others score -inf)."""
    score = np.full(len(view.idx), -np.inf)
    slot = np.full(len(view.idx), -1, np.int64)
    ok = np.flatnonzero(stage == 0)
    if len(ok):
        scored = policy.score(view if len(ok) == len(view.idx) else view.subset(ok), workload)
        score[ok], slot[ok] = scored.score, scored.slot
    return Evaluation(stage, score, slot)


def select_node(
    feasible: np.ndarray,
    score: np.ndarray,
    policy: Policy,
    rng: np.random.Generator | None,
    priority: np.ndarray | None = None,
) -> tuple[int, float]:
    """Steps 3–4 over all nodes (``feasible`` bool[N], ``score`` float[N]) -> (node, score) or (-1, nan)."""
    candidates = np.flatnonzero(feasible)
    if not len(candidates):
        return -1, float("nan")
    if policy.uniform:
        if rng is None:
            raise ValueError("the random policy needs a seed")
        return int(candidates[rng.integers(len(candidates))]), 0.0
    values = score[candidates]
    if policy.normalise and len(candidates) > 1:
        values = normalise_min_max(values)
    best = values.max()
    tied = candidates[values == best]
    if priority is not None and len(tied) > 1:
        tied = tied[np.argsort(priority[tied], kind="stable")]
    return int(tied[0]), float(best)


def decide(
    fleet: FleetArrays,
    demand: Demand,
    policy: Policy,
    workload: TargetWorkload | None,
    rng: np.random.Generator | None,
    priority: np.ndarray | None = None,
) -> Decision | Evaluation:
    """All steps on arrays; returns a ``Decision`` or, if nothing fits, the ``Evaluation`` (for reasons)."""
    idx = np.arange(fleet.size)
    ev = evaluate(fleet, demand, policy, idx, workload)
    node, score = select_node(ev.stage == 0, ev.score, policy, rng, priority)
    if node < 0:
        return ev
    slots = choose_slots(fleet, demand, node, policy.device_method, int(ev.slot[node]), rng)
    return Decision(node, slots, score, int((ev.stage == 0).sum()))


def rejection_from(stage: np.ndarray) -> Rejection:
    """Count nodes per first failing filter, in pipeline order (e.g. "3 nodes: model not allowed; …")."""
    counts = Counter(int(s) for s in stage if s > 0)
    return Rejection(tuple((FILTER_STAGES[s - 1].reason, counts[s]) for s in sorted(counts)))


def request_shape(request: PlacementRequest) -> TaskShape:
    """The request as a task shape ``(cpu_milli, milli_per_device, device_count, "model|model" or "")``."""
    models = "|".join(sorted(request.allowed_models)) if request.allowed_models else ""
    return (
        request.cpu_milli,
        request.milli_per_device if request.device_count else 0,
        request.device_count,
        models if request.device_count else "",
    )


def workload_for_request(fleet: FleetArrays, request: PlacementRequest) -> TargetWorkload:
    """Without a trace, the target workload for fragmentation is the request's own shape."""
    return target_workload(typical_shapes([request_shape(request)]), fleet.models)


def place(
    cluster: ClusterSnapshot,
    request: PlacementRequest,
    policy: str = DEFAULT_POLICY,
    seed: int = 0,
    workload: Sequence[tuple[TaskShape, float]] | None = None,
) -> Placement | Rejection:
    """Decide where ``request`` goes on ``cluster`` with ``policy``; deterministic for a given ``seed``.

    Ties are broken by a per-seed random node priority (as in the FGD paper's simulator). ``workload``
    is the target workload of fragmentation-aware policies as weighted task shapes
    ``((cpu_milli, milli_per_device, device_count, "model|model" or ""), weight)`` — e.g. from
    ``fragmentation.typical_shapes`` over recent requests; by default the request's own shape.
    """
    chosen = get_policy(policy)
    fleet = fleet_from_snapshot(cluster)
    demand = demand_from_request(fleet, request)
    rng = np.random.default_rng(seed)
    priority = rng.permutation(fleet.size)
    targets = None
    if chosen.needs_workload:
        targets = target_workload(list(workload), fleet.models) if workload else workload_for_request(fleet, request)
    result = decide(fleet, demand, chosen, targets, rng, priority)
    if isinstance(result, Evaluation):
        return rejection_from(result.stage)
    node = cluster.nodes[result.node]
    return Placement(
        node=node.name,
        site=node.site,
        device_indices=tuple(int(fleet.device_index[result.node, s]) for s in result.slots),
        milli_per_device=demand.milli if demand.wants_devices else 0,
        score=result.score,
        policy=chosen.name,
        feasible_nodes=result.feasible,
    )
