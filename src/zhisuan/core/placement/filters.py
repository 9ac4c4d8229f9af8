"""Filter plugins: each says, for the nodes of a ``NodeView``, whether a node can host the demand.

Every filter is a function ``(view) -> bool[K]`` (True = passes) with a human-readable reason used
when it is the first filter a node fails. Device-level constraints (model, memory, throughput,
stack, health) are folded into ``NodeView.eligible``: a device that fails them is treated as having
no free share.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from zhisuan.core.placement.fleet import Demand
from zhisuan.core.placement.node_view import NodeView

FilterFn = Callable[[NodeView], np.ndarray]


@dataclass(frozen=True)
class FilterStage:
    reason: str
    passes: FilterFn
    devices_only: bool = False  # only applies to requests that want devices (Open-Gpu-Share semantics)
    only_if: Callable[[Demand], bool] | None = None  # skipped (passes everywhere) for other demands


def node_healthy(view: NodeView) -> np.ndarray:
    return view.fleet.node_healthy[view.idx]


def tenant_may_use(view: NodeView) -> np.ndarray:
    """A node leased exclusively (tenant code >= 0) accepts only that tenant's work, and borrowing work
    (``may_use_leased``: reclaimable by the owner) of any tenant."""
    owner = view.fleet.node_tenant[view.idx]
    if view.demand.may_use_leased:
        return np.ones(len(view.idx), bool)
    return np.asarray((owner < 0) | (owner == view.demand.tenant))


def labels_match(view: NodeView) -> np.ndarray:
    selector, labels = view.demand.selector, view.fleet.labels
    if not selector:
        return np.ones(len(view.idx), bool)
    return np.array([all(labels[i].get(k) == v for k, v in selector) for i in view.idx], bool)


def cpu_fits(view: NodeView) -> np.ndarray:
    """Kubernetes NodeResourcesFit, CPU part: ``cpu_req <= cpu_free``."""
    return view.cpu >= view.demand.cpu


def memory_fits(view: NodeView) -> np.ndarray:
    """Kubernetes NodeResourcesFit, memory part: ``mem_req <= mem_free`` (memory is checked here only)."""
    return view.fleet.mem_free[view.idx] >= view.demand.mem


def has_devices(view: NodeView) -> np.ndarray:
    return view.fleet.device_count[view.idx] > 0


def model_allowed(view: NodeView) -> np.ndarray:
    """Type constraint: some device is of an allowed model (any model if the demand names none)."""
    return np.asarray(view.model_ok.any(axis=1))


def devices_capable(view: NodeView) -> np.ndarray:
    """Some allowed device meets the minimum device memory, throughput and software stack."""
    return (view.capable & view.model_ok).any(axis=1)


def devices_healthy(view: NodeView) -> np.ndarray:
    return (view.fleet.device_healthy[view.idx] & view.model_ok & view.capable).sum(axis=1) >= view.demand.count


def not_avoided(view: NodeView) -> np.ndarray:
    """The job's own avoid set: nodes an earlier attempt of it failed on (``Demand.avoid``), so a restart
    runs on different hardware — what tells a faulty node from a faulty program. Last in the pipeline, so
    a node is reported as avoided only when it would otherwise fit (the caller may then fall back to it)."""
    avoid = view.demand.avoid
    return np.fromiter((int(row) not in avoid for row in view.idx), bool, len(view.idx))


def share_fits(view: NodeView) -> np.ndarray:
    """Open-Gpu-Share: at least ``count`` distinct eligible devices each have ``left >= milli``."""
    return (view.usable_left >= view.demand.milli).sum(axis=1) >= view.demand.count


# The filter pipeline, in order; a node's rejection reason is the first stage it fails.
FILTER_STAGES: tuple[FilterStage, ...] = (
    FilterStage("node unhealthy", node_healthy),  # health from inventory heartbeats
    FilterStage("leased exclusively to another tenant", tenant_may_use),  # tenant isolation
    FilterStage("node labels do not match", labels_match),  # operator node selectors
    FilterStage("not enough free CPU", cpu_fits),  # NodeResourcesFit (CPU)
    FilterStage("not enough free memory", memory_fits),  # NodeResourcesFit (memory)
    FilterStage("no accelerators", has_devices, devices_only=True),  # Open-Gpu-Share: node has devices
    FilterStage("model not allowed", model_allowed, devices_only=True),  # type constraint
    FilterStage("device memory, throughput or stack below request", devices_capable, devices_only=True),
    FilterStage("not enough healthy devices", devices_healthy, devices_only=True),
    FilterStage("not enough free GPU share", share_fits, devices_only=True),  # device fit (share / count)
    FilterStage("the job failed on this node before", not_avoided, only_if=lambda d: bool(d.avoid)),  # per job
)


# Stages whose result can change while a fleet's arrays live (the live fleet's leases, CPU, memory and device
# shares; the replay's commits); every other stage reads only what is fixed until the arrays are rebuilt
# (health, labels, device models and capabilities) or the demand itself (its avoid set). A new filter must
# be put in one of the two sets (checked below), so a cache of the static part cannot go stale silently.
DYNAMIC_FILTERS: frozenset[FilterFn] = frozenset({tenant_may_use, cpu_fits, memory_fits, share_fits})
STATIC_FILTERS: frozenset[FilterFn] = frozenset(
    {node_healthy, labels_match, has_devices, model_allowed, devices_capable, devices_healthy, not_avoided}
)
assert {s.passes for s in FILTER_STAGES} == DYNAMIC_FILTERS | STATIC_FILTERS and not DYNAMIC_FILTERS & STATIC_FILTERS
DYNAMIC_STAGES = tuple(n for n, s in enumerate(FILTER_STAGES) if s.passes in DYNAMIC_FILTERS)
STATIC_STAGES = tuple(n for n, s in enumerate(FILTER_STAGES) if s.passes in STATIC_FILTERS)


def first_failed_stage(view: NodeView, stages: tuple[int, ...] | None = None) -> np.ndarray:
    """int8[K]: 0 if a node passes every stage, else 1 + index of the first stage it fails.

    Stages are independent predicates, so each is evaluated on every node and the first failure kept.
    ``stages`` (indices into ``FILTER_STAGES``, e.g. ``STATIC_STAGES``) restricts the check to those; the
    first failure over all stages is then the smallest nonzero of the parts (``earliest_failure``).
    """
    result = np.zeros(len(view.idx), np.int8)
    for number in reversed(stages if stages is not None else range(len(FILTER_STAGES))):
        stage = FILTER_STAGES[number]
        if stage.devices_only and not view.demand.wants_devices:
            continue
        if stage.only_if is not None and not stage.only_if(view.demand):
            continue
        result[~stage.passes(view)] = number + 1
    return result


def earliest_failure(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """The first failing stage over two disjoint sets of stages, from each set's (0 = passed all)."""
    return np.where((first > 0) & ((second == 0) | (first < second)), first, second)
