"""zhisuan's score with a look-ahead on share leftovers: what a device's remaining share will become.

FGD's fragmentation counts a device with ``L`` milli left as lost for every typical task that does
not fit in ``L`` and as fully usable for every task that does: ``f(L) = L·Σ_{t: m_t > L} p_t``. A
leftover of 530 (one 470-share away from 60 wasted) and one of 190 (only the rare 160 shape fits) are
then judged on the first step only. The look-ahead waste follows the next typical task that fits::

    W_μ(L) = L·(1 − Σ_{t∈A_μ, m_t ≤ L} p_t) + Σ_{t∈A_μ, m_t ≤ L} p_t·W_μ(L − m_t)      W_μ(0) = 0

over the single-device typical tasks ``A_μ`` that may use model μ (whole-device tasks fit only
``L = 1000``; multi-device and CPU-only tasks are left out: they do not fill one device's share).
``W`` is the expected share a device ends with if each next typical task either lands on it (when it
fits) or never comes — the first step is FGD's ``f``, the rest is the second-order term. A share
placement on device g of node n (``L_g → L_g − m``) adds ``β·(W(L_g) − W(L_g − m))`` to zhisuan's
gradient before binning (milli, as ``ΔF``); other demands are scored exactly as zhisuan does::

    x     = ((F_n + S_n) − (F_n' + S_n') + β·[share]·(W(L_g) − W(L_g − m)))/1000
    score = trunc(bins·σ(x))/(bins/100)   − 1e-6·(L_g − m)   (bins as zhisuan_score)

The registered policy (``zhisuan-leftover``) uses β = 1, a *model-blind* table (``A`` = the typical
tasks without a type constraint, the same ``W`` on every model) and turns the look-ahead on only when
some model is contested, i.e. exactly where zhisuan keeps FGD's coarse 100 bins; otherwise it *is*
zhisuan_score. Why (development seeds 1–2, BENCHMARKS.md Placement §12): on the fine-binned traces
the look-ahead moved column 130 by ±0.1 (noise) and lost 0.3–0.9 on cpu250 for β ≥ 2; per-model
tables lost 1.4–1.5 points at column 100 on gpuspec33 (shares pulled across models); the model-blind
one gained 0.3–0.7 at column 100 on gpuspec10/20/25 and lost 0.55–0.8 on gpuspec33 (still above FGD).
``tie_break`` (the look-ahead only as the within-bin device tie-break, instead of best fit) lost 0.6
at column 100 on gpuspec10 and is kept only to reproduce that row.

The tables depend only on the target workload (``O(M·1000·T)`` once, memoised per workload).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np

from zhisuan.core.placement.fragmentation import TargetWorkload
from zhisuan.core.placement.node_view import NodeView
from zhisuan.core.placement.scores import NodeScores, fgd_score_of, fragmentation_change
from zhisuan.core.placement.zhisuan_score import BEST_FIT_DEVICE_WEIGHT, FINE_BINS, stranded_gain, zhisuan_score

MILLI = 1000
LOOKAHEAD_WEIGHT = 1.0  # β


def lookahead_waste(milli: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """W[L] for L = 0..1000 given single-device tasks ``milli[t]`` (1..1000) with weights ``weight[t]``."""
    waste = np.zeros(MILLI + 1)
    for left in range(1, MILLI + 1):
        fits = milli <= left
        waste[left] = left * (1.0 - weight[fits].sum()) + float((weight[fits] * waste[left - milli[fits]]).sum())
    return waste


def waste_tables(wl: TargetWorkload, model_blind: bool = False) -> np.ndarray:
    """float[M+1, 1001]: ``W_μ(L)`` per model code μ (last row: no model), memoised per workload;
    ``model_blind``: every row from the tasks without a type constraint only (the same for every model)."""
    key = (wl.shapes, tuple(float(w) for w in wl.weight), wl.access.shape[1] - 1)
    access = wl.access & wl.access[:, -1:] if model_blind else wl.access
    return _waste_tables_for_access(key, access.tobytes())


@lru_cache(maxsize=64)
def _waste_tables_for_access(key: tuple[object, ...], access_bytes: bytes) -> np.ndarray:
    shapes, weights, models = key
    assert isinstance(shapes, tuple) and isinstance(weights, tuple) and isinstance(models, int)
    access = np.frombuffer(access_bytes, dtype=bool).reshape(len(shapes), models + 1)
    milli = np.array([s[1] for s in shapes], np.int64)
    count = np.array([s[2] for s in shapes], np.int64)
    weight = np.array(weights)
    single = (milli > 0) & (count == 1)
    tables = np.zeros((models + 1, MILLI + 1))
    for model in range(models + 1):
        usable = single & access[:, model]
        tables[model] = lookahead_waste(milli[usable], weight[usable])
    return tables


def leftover_score_with(
    beta: float, only_with_constrained_demand: bool = True, tie_break: bool = False, model_blind: bool = False
) -> Callable[[NodeView, TargetWorkload | None], NodeScores]:
    """The score plugin with look-ahead weight ``β`` (β = 0 is zhisuan_score exactly); by default the
    look-ahead applies only when some model is contested (FGD's coarse bins), else it is zhisuan_score."""

    def leftover_score(view: NodeView, wl: TargetWorkload | None) -> NodeScores:
        assert wl is not None, "the leftover policy needs a target workload"
        d = view.demand
        lookahead = bool(beta) and (wl.contested_models.any() or not only_with_constrained_demand)
        if not (d.is_share and (lookahead or tie_break)):
            return zhisuan_score(view, wl)  # nothing to look ahead at: zhisuan's own (and its speed-ups)
        now, after, candidate = fragmentation_change(view, wl)
        delta = now[:, None] - after + stranded_gain(view, wl)[:, None]
        if lookahead:
            table = waste_tables(wl, model_blind)[view.node_model]  # [K, 1001]
            rest = np.clip(view.left - d.milli, 0, MILLI)
            before = np.take_along_axis(table, np.clip(view.left, 0, MILLI), axis=1)
            delta = delta + beta * (before - np.take_along_axis(table, rest, axis=1))
        if wl.contested_models.any():
            per_slot = fgd_score_of(delta)
        else:
            per_slot = fgd_score_of(delta, bins=100 * FINE_BINS) / FINE_BINS
        if tie_break:  # equal bins: the leftover with the least look-ahead waste, not the smallest
            table = waste_tables(wl)[view.node_model]
            rest = np.take_along_axis(table, np.clip(view.left - d.milli, 0, MILLI), axis=1)
            per_slot = per_slot - BEST_FIT_DEVICE_WEIGHT * rest
        else:
            per_slot = per_slot - BEST_FIT_DEVICE_WEIGHT * np.maximum(view.left - d.milli, 0)
        per_slot = np.where(candidate, per_slot, -np.inf)
        best = per_slot.argmax(axis=1)
        return NodeScores(per_slot[np.arange(len(view.idx)), best], best)

    return leftover_score


leftover_score = leftover_score_with(LOOKAHEAD_WEIGHT, only_with_constrained_demand=True, model_blind=True)
