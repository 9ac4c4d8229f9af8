"""zhisuan's default score: FGD's fragmentation gradient, extended with host resources.

FGD (Weng et al., ATC'23) scores a node by how much placing the task reduces the expected
fragmentation ``F_n`` of its idle devices w.r.t. the target workload. ``F_n`` sees CPU only as a
step (a typical task lacks CPU or not), so FGD happily spends the CPU of device-dense nodes (e.g.
8 GPUs with 12 cores each) on CPU-only or CPU-heavy work and strands their devices later. zhisuan adds
the idle device milli that the node's remaining CPU can no longer feed::

    κ      = Σ_t p_t·cpu_t / Σ_t p_t·(milli_t·count_t/1000)   over device tasks t (milli-CPU per device)
    κ_n    = min(κ, 1000·cpuL_n / I_n)   if n's model is contested  (never more CPU per device than n has now)
           = κ                           otherwise
    S(c,I) = max(0, I − 1000·c/κ_n)                             (device milli stranded by CPU shortage)
    x      = ((F_n + S(cpuL_n, I_n)) − (F_n' + S(cpuL_n', I_n')))/1000
    score  = trunc(100·σ(x))                     if some model is contested  (σ-binned like FGD)
           = trunc(400·σ(x))/4                   otherwise                   (quarter-point bins)
             − 1e-6·(left of the chosen device after placement)  (share: best-fit device within a node)

A model is *contested* when some type-constrained typical task may use it (constrained demand depends
on that capacity). On a contested node ``κ_n`` makes S(cpuL_n, I_n) = 0 before the placement, so a
placement is only charged for making the node's CPU per idle device worse than the workload needs;
CPU-poor nodes (e.g. 8 cores per GPU) are then not "stranded" nodes to be relieved, which would pull
flexible work onto the small nodes that type-constrained tasks depend on. On uncontested nodes the
global κ applies: a CPU-poor node counts as already stranding devices, and device work asking less
CPU per device than κ that uses them up (rather than leaving them to CPU-only work, which strands
them for good) is rewarded — this keeps zhisuan ahead of FGD when CPU-only tasks are plentiful (the
paper's cpu250: +0.5 point, where the contested rule everywhere lost 0.1). Equal scores go to the
node priority order (first fit on a per-seed random order), which keeps FGD's consolidation: the
binning is deliberate — a continuous ΔF without it loses ~3 points on the openb traces. Without any
type-constrained demand the bins are four times finer: smaller differences in stranded devices then
decide instead of the priority order, which matters when CPU is oversubscribed (the paper's cpu250:
+0.5–0.7 point in development). With constrained demand the coarse bins' consolidation is kept: finer
bins lost 2 points at column 100 on gpuspec33, and 0.4 on gpuspec10 even when only the uncontested
nodes got them.
"""

from __future__ import annotations

import numpy as np

from zhisuan.core.placement.fragmentation import TargetWorkload, fragmentation_now_and_after_whole
from zhisuan.core.placement.node_view import NodeView
from zhisuan.core.placement.scores import NodeScores, fgd_score_of, fragmentation_change

BEST_FIT_DEVICE_WEIGHT = 1e-6
FINE_BINS = 4  # bins per score point when no typical task is type-constrained


def stranded_milli(cpu_left: np.ndarray, idle: np.ndarray, kappa: np.ndarray) -> np.ndarray:
    """S: idle device milli beyond what ``cpu_left`` can feed at ``kappa`` milli-CPU per device (κ ≤ 0: none)."""
    feedable = np.where(kappa > 0, cpu_left * 1000.0 / np.where(kappa > 0, kappa, 1.0), np.inf)
    return np.maximum(0.0, idle - feedable)


def stranded_gain(view: NodeView, wl: TargetWorkload) -> np.ndarray:
    """S before − S after placing the demand on each node of the view (≤ 0: the placement strands devices)."""
    d = view.demand
    idle = view.left.sum(axis=1)
    own = np.minimum(wl.cpu_per_device, view.cpu * 1000.0 / np.maximum(idle, 1))
    kappa = np.where(wl.contested_models[view.node_model], own, wl.cpu_per_device)
    # stranded_milli of the states before (row 0) and after (row 1) in one pass: the same operations
    # element by element, with the κ > 0 test shared.
    feeds = kappa > 0
    cpu_left = view.cpu - np.array([[0], [d.cpu]])
    feedable = np.where(feeds, cpu_left * 1000.0 / np.where(feeds, kappa, 1.0), np.inf)
    before, after = np.maximum(0.0, idle - np.array([[0], [d.milli * d.count]]) - feedable)
    return before - after


def zhisuan_score(view: NodeView, wl: TargetWorkload | None) -> NodeScores:
    """Score feasible nodes (and, for shares, pick the device) as described in the module docstring."""
    assert wl is not None, "the zhisuan policy needs a target workload"
    d = view.demand
    if d.is_share:
        now, after, candidate = fragmentation_change(view, wl)
    else:  # one candidate per node (fragmentation_change's C = 1), without its all-true mask
        now, after = fragmentation_now_and_after_whole(
            wl, view.cpu, view.left, view.node_model, d.cpu, d.count if d.wants_devices else 0, view.idx
        )
        after = after[:, None]
    delta = now[:, None] - after + stranded_gain(view, wl)[:, None]
    if wl.contested_models.any():
        per_slot = fgd_score_of(delta)
    else:
        per_slot = fgd_score_of(delta, bins=100 * FINE_BINS) / FINE_BINS
    if not d.is_share:
        return NodeScores(per_slot[:, 0], np.full(len(view.idx), -1, np.int64))
    per_slot = per_slot - BEST_FIT_DEVICE_WEIGHT * np.maximum(view.left - d.milli, 0)
    per_slot = np.where(candidate, per_slot, -np.inf)
    best = per_slot.argmax(axis=1)
    return NodeScores(per_slot[np.arange(len(view.idx)), best], best)
