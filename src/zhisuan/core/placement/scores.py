"""Score plugins of the FGD paper's baselines: higher is better, ties go to the node priority order.

Each plugin is ``(view, workload) -> NodeScores`` over the feasible nodes of a ``NodeView``. Notation:
``cpuL`` node milli-CPU left, ``gL = Σ_g left_g`` device milli left, the demand has ``c`` milli-CPU,
``m`` milli per device and ``k`` devices; ``trunc`` is Go's int64() truncation. Constants: the
largest node spec is 128 000 milli-CPU and 8 000 device milli (MaxSpecCpu / MaxSpecGpu).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from zhisuan.core.placement.fragmentation import (
    TargetWorkload,
    fragmentation_now_and_after_share,
    fragmentation_now_and_after_whole,
    packed_take,
)
from zhisuan.core.placement.node_view import NodeView

MAX_SPEC_CPU = 128000.0
MAX_SPEC_GPU = 8000.0
MILLI = 1000


@dataclass(frozen=True)
class NodeScores:
    """``score[k]`` for node ``idx[k]``; ``slot[k]``: device slot a share would take (-1 = default)."""

    score: np.ndarray
    slot: np.ndarray


def _no_slot(n: int) -> np.ndarray:
    return np.full(n, -1, np.int64)


def _trunc(x: np.ndarray) -> np.ndarray:
    return np.trunc(x).astype(np.int64).astype(np.float64)


def _go_div(a: np.ndarray, b: int) -> np.ndarray:
    """Go integer division (truncates toward zero)."""
    return np.sign(a) * (np.abs(a) // b)


def dot_product(view: NodeView, wl: TargetWorkload | None) -> NodeScores:
    """DotProd (Tetris), dimext=merge, norm=max: ``trunc(100·(1 − (v_n·v_p)/2))`` with
    ``v_n = (cpuL/128000, gL/8000)``, ``v_p = (c/128000, m·k/8000)``."""
    node_cpu = view.cpu.astype(np.float64) / MAX_SPEC_CPU
    node_gpu = view.left.sum(axis=1).astype(np.float64) / MAX_SPEC_GPU
    pod_cpu, pod_gpu = (
        float(view.demand.cpu) / MAX_SPEC_CPU,
        float(view.demand.milli * view.demand.count) / MAX_SPEC_GPU,
    )
    dot = node_cpu * pod_cpu + node_gpu * pod_gpu
    return NodeScores(_trunc(100.0 * (1.0 - dot / 2.0)), _no_slot(len(view.idx)))


def best_fit(view: NodeView, wl: TargetWorkload | None) -> NodeScores:
    """BestFit raw score ``trunc(100·(1 − [0.5·(cpuL − c)/128000 + 0.5·(gL − m·k)/8000]))``
    (min–max normalised over the feasible nodes afterwards, see ``normalise_min_max``)."""
    cpu_term = (view.cpu.astype(np.float64) - float(view.demand.cpu)) / MAX_SPEC_CPU * 0.5
    gpu_rest = view.left.sum(axis=1).astype(np.float64) - float(view.demand.milli * view.demand.count)
    total = cpu_term + gpu_rest / MAX_SPEC_GPU * 0.5
    return NodeScores(_trunc((1.0 - total) * 100.0), _no_slot(len(view.idx)))


def normalise_min_max(score: np.ndarray) -> np.ndarray:
    """Kubernetes-style NormalizeScore: ``(s − lo)·100 div (hi − lo)``, or 0 everywhere if hi = lo."""
    lo, hi = score.min(), score.max()
    if hi == lo:
        return np.zeros_like(score)
    spread = int(hi - lo)
    return ((score - lo).astype(np.int64) * 100 // spread).astype(np.float64)


def gpu_clustering(view: NodeView, wl: TargetWorkload | None) -> NodeScores:
    """GpuClustering: ``b = 25·(8000 − gL) div 8000`` plus 75 if the node hosts only the demand's class,
    50 if it hosts it among others, 25 if it hosts no GPU work, 0 otherwise; CPU-only demands score 0."""
    if not view.demand.wants_devices:
        return NodeScores(np.zeros(len(view.idx)), _no_slot(len(view.idx)))
    base = _go_div(25 * (8000 - view.left.sum(axis=1)), 8000)
    classes, bit = view.fleet.affinity[view.idx], view.demand.affinity_bit
    bonus = np.where(classes == bit, 75, np.where(classes & bit, 50, np.where(classes == 0, 25, 0)))
    return NodeScores((base + bonus).astype(np.float64), _no_slot(len(view.idx)))


def gpu_packing(view: NodeView, wl: TargetWorkload | None) -> NodeScores:
    """GpuPacking: idle node ``max(33 − F, F)`` (F fully free devices); else take devices in ascending
    ``left`` order: if u > 0 of them are fully free ``max(50 − u, 33)``, else
    ``max(100 − (Σ left·100 div 1000) div 10, 50)``; CPU-only demands score 0."""
    if not view.demand.wants_devices:
        return NodeScores(np.zeros(len(view.idx)), _no_slot(len(view.idx)))
    left = view.left
    full = (left == MILLI).sum(axis=1)
    idle_node = full == view.fleet.device_count[view.idx]
    chosen = packed_take(left, view.fleet.device_model[view.idx] >= 0, view.demand.milli, view.demand.count)
    used_full = (chosen & (left == MILLI)).sum(axis=1)
    ratio = np.where(chosen, left * 100 // MILLI, 0).sum(axis=1)
    score = np.where(
        idle_node,
        np.maximum(33 - full, full),
        np.where(used_full > 0, np.maximum(50 - used_full, 33), np.maximum(100 - ratio // 10, 50)),
    )
    return NodeScores(score.astype(np.float64), _no_slot(len(view.idx)))


def fgd_score_of(delta: np.ndarray, bins: int = 100) -> np.ndarray:
    """``trunc(bins·σ(ΔF/1000))`` with ``σ(x) = 1/(1 + e^{−x})`` and ``ΔF = F_n − F_n'`` (FGD: 100 bins).

    σ·bins lies in [0, bins], where ``np.trunc`` equals Go's int64() truncation (``_trunc``) exactly."""
    return np.trunc(1.0 / (1.0 + np.exp(-(delta / 1000.0))) * float(bins))


def fragmentation_change(view: NodeView, wl: TargetWorkload) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(F_n[K], F_n'[K,C], candidate[K,C]): fragmentation now and after placing the demand.

    Share demands have one candidate per device slot (C = G, only distinct ones evaluated); other
    demands one candidate (C = 1): the state after ``NodeResource.Sub`` (CPU, plus whole free devices —
    non-share device demands are always whole devices, see ``snapshot.request_problems``). F_n of nodes
    whose state is unchanged since any earlier call comes from ``wl.node_memo`` (the view's rows).
    """
    cpu, left, model, d = view.cpu, view.left, view.node_model, view.demand
    if d.is_share:
        fits = view.usable_left >= d.milli
        now, after = fragmentation_now_and_after_share(wl, cpu, left, model, d.cpu, d.milli, fits, view.idx)
        return now, after, np.isfinite(after)
    now, after = fragmentation_now_and_after_whole(
        wl, cpu, left, model, d.cpu, d.count if d.wants_devices else 0, view.idx
    )
    return now, after[:, None], np.ones((len(view.idx), 1), bool)


def fgd(view: NodeView, wl: TargetWorkload | None) -> NodeScores:
    """FGD: ``trunc(100·σ((F_n − F_n')/1000))``; a share demand takes the device with the highest
    integer score (first by index), which is also the node's score."""
    assert wl is not None, "FGD needs a target workload"
    d = view.demand
    if not d.is_share:  # one candidate per node: its score, without the mask and argmax over one column
        now, after = fragmentation_now_and_after_whole(
            wl, view.cpu, view.left, view.node_model, d.cpu, d.count if d.wants_devices else 0, view.idx
        )
        return NodeScores(fgd_score_of(now - after), _no_slot(len(view.idx)))
    now, after, candidate = fragmentation_change(view, wl)
    per_slot = np.where(candidate, fgd_score_of(now[:, None] - after), -1.0)
    best = per_slot.argmax(axis=1)
    return NodeScores(per_slot[np.arange(len(view.idx)), best], best)


def constant(view: NodeView, wl: TargetWorkload | None) -> NodeScores:
    """Random placement scores every node equally; the policy then picks uniformly."""
    return NodeScores(np.zeros(len(view.idx)), _no_slot(len(view.idx)))
