"""Capacity prices and the upper bound they prove for the whole round (Lagrangian relaxation).

Price every capacity point k (an offer at a lease start, table.py) at λ_k >= 0 CNY per device and move
the capacity constraints into the objective. A lease c then costs Λ_c = Σ_{k covered by c} λ_k per
device, and the requests decouple — each solves its own problem at these prices:

- gang r:      π_r = max(0, max_c need_c · (W_c − Λ_c))         (one offer or none);
- divisible r: π_r = max Σ_c (W_c − Λ_c) x_c  s.t.  Σ_c f_c x_c <= upper_r,  0 <= x_c <= most_c
               — a fractional knapsack: best (W_c − Λ_c) / f_c first (the lower fill bound dropped).

    L(λ) = Σ_k devices_k · λ_k + Σ_r π_r   >=   the optimum of the round, for EVERY λ >= 0,

because any feasible clearing is feasible for each request's problem and pays Σ λ_k (devices_k −
usage_k) >= 0 back. Evaluated over every pairing of the round it is a bound on the round itself (not
just on a pruned model); at the best λ it equals the LP relaxation's optimum. ``search_prices`` looks
for small L(λ) by projected subgradient steps (Polyak's rule towards the best clearing known) on a
working set of pairings, and widens the set with the pairings the full evaluation picks.
"""

import time
from dataclasses import dataclass

import numpy as np

from zhisuan.core.matching.table import PairTable

PATIENCE = 8
MIN_ROUND_STEPS = 10  # a round that starts runs at least this many steps, late or not
GROW_PER_REQUEST = 4  # pairings a request may add to the working set between rounds
BOUND_SAFETY_REL = 1e-9  # float sums over ~10^5 terms err ~1e-12 relative; the bound adds far more


@dataclass(frozen=True)
class Relaxed:
    """L(λ) and what the relaxed requests take at those prices."""

    value: float
    take: np.ndarray  # devices per pairing of the table (fractional for a knapsack's last item)
    profit: np.ndarray  # π_r per request
    reduced: np.ndarray  # W_c − Λ_c per device, per pairing
    subgradient: np.ndarray  # devices_k − usage_k per point


def relax(table: PairTable, prices: np.ndarray, exact: bool = True) -> Relaxed:
    """L(prices) over the table's pairings (a subset of the round's gives a value <= the round's).
    ``exact=False`` orders each knapsack by one float key (request + scaled ratio): faster, but ratios
    closer than ~1e-12 of the largest may swap — fine for the search, never for the bound."""
    cumulative = np.concatenate([[0.0], np.cumsum(prices)])
    reduced = table.value - (cumulative[table.point_after_end] - cumulative[table.point_of_start])
    position, gang = table.request, table.gang
    take = np.zeros(len(position))
    profit = np.zeros(table.num_requests)
    if len(position):  # pairings come grouped by request: one max per group
        gang_value = np.where(gang, table.need * reduced, -np.inf)
        heads = np.flatnonzero(np.r_[True, position[1:] != position[:-1]])
        profit[position[heads]] = np.maximum(np.maximum.reduceat(gang_value, heads), 0.0)
        best = np.flatnonzero(gang & (gang_value > 0) & (gang_value >= profit[position]))
        _, first = np.unique(position[best], return_index=True)  # one offer per gang (ties: first in order)
        take[best[first]] = table.need[best[first]]
    useful = np.flatnonzero(~gang & (reduced > 0))
    if len(useful):
        ratio = reduced[useful] / table.factor[useful]
        if exact:
            order = useful[np.lexsort((-ratio, position[useful]))]
        else:
            order = useful[np.argsort(position[useful] + 0.5 - 0.5 * ratio / (ratio.max() * (1 + 1e-9)))]
        room = table.factor[order] * table.most[order]  # H100-equivalents this pairing can give
        owner = position[order]
        before = np.cumsum(room) - room
        group_first = np.r_[True, owner[1:] != owner[:-1]]
        before -= before[np.maximum.accumulate(np.where(group_first, np.arange(len(order)), 0))]
        given = np.clip(table.upper[owner] - before, 0.0, room) / table.factor[order]
        take[order] = given
        profit += np.bincount(owner, given * reduced[order], table.num_requests)
    usage = np.bincount(table.point_of_start, take, table.num_points + 1)
    usage -= np.bincount(table.point_after_end, take, table.num_points + 1)
    subgradient = table.point_capacity - np.cumsum(usage)[:-1]
    value = float(prices @ table.point_capacity) + float(profit.sum())
    return Relaxed(value, take, profit, reduced, subgradient)


def safe_bound(value: float) -> float:
    """A float L(λ) widened past any rounding error of its float sums."""
    return value + BOUND_SAFETY_REL * abs(value) + 0.01


@dataclass(frozen=True)
class PriceSearch:
    prices: np.ndarray
    bound: float  # L(prices) over every pairing (before ``safe_bound``)
    relaxed: Relaxed  # at ``prices``, over every pairing
    iterations: int


def localise(table: PairTable, pairs: np.ndarray) -> tuple[PairTable, np.ndarray]:
    """The round restricted to ``pairs`` with only the capacity points that can bind for them: a point is
    dropped when no lease of ``pairs`` ends between it and its offer's next point (its running leases are
    a subset of the next point's, so its constraint is implied). Returns the table and the kept points'
    global indices (prices found for it lift to the round by ``lift``)."""
    starts, after = table.point_of_start[pairs], table.point_after_end[pairs]
    used = np.unique(starts)
    local_after = np.searchsorted(used, after)  # first used point at or after the lease's end
    offer_of_point = np.empty(table.num_points, dtype=np.int64)
    offer_of_point[table.point_of_start] = table.offer
    last = np.r_[offer_of_point[used[1:]] != offer_of_point[used[:-1]], True]
    ends_next = np.zeros(len(used) + 1, dtype=bool)
    ends_next[local_after] = True
    kept = used[last | ends_next[1:]]
    sub = table.subset(pairs)
    return PairTable(sub.request, sub.offer, sub.start, sub.end, sub.factor, sub.gang, sub.need, sub.most,
                     sub.value, sub.upper, np.searchsorted(kept, starts), np.searchsorted(kept, after),
                     table.point_capacity[kept], table.num_requests), kept


def lift(table: PairTable, kept: np.ndarray, local_prices: np.ndarray) -> np.ndarray:
    prices = np.zeros(table.num_points)
    prices[kept] = local_prices
    return prices


def search_prices(table: PairTable, target: float, working: np.ndarray, *, iterations: int,
                  deadline: float, rounds: int = 5) -> PriceSearch:
    """Projected subgradient on a working set of pairings (``localise``),
    λ ← max(0, λ − θ (L − target) / |g|² · g), θ × 0.7 after ``PATIENCE`` steps without a new best.
    The time to ``deadline`` (a ``time.perf_counter`` value) and the ``iterations`` are split into
    ``rounds`` (a round that starts takes at least ``MIN_ROUND_STEPS`` steps; none starts after the
    deadline); between rounds the pairings outside the set that would now improve their request most
    (``_improving``, at most ``GROW_PER_REQUEST`` each) join it. λ is evaluated over every pairing once,
    at the end: that value is the bound."""
    began = time.perf_counter()
    prices, theta, since, step = np.zeros(table.num_points), 1.0, 0, 0
    for round_number in range(1, rounds + 1):
        if time.perf_counter() >= deadline:
            break
        sub, kept = localise(table, working)
        local, best_local, best_prices = prices[kept], np.inf, prices[kept]
        round_end = began + (deadline - began) * round_number / rounds
        relaxed = None
        round_start = step
        while step < iterations * round_number // rounds and (
                time.perf_counter() < round_end or step - round_start < MIN_ROUND_STEPS):
            step += 1
            relaxed = relax(sub, local, exact=False)
            if relaxed.value < best_local - 1e-9 * abs(relaxed.value):
                best_local, best_prices, since = relaxed.value, local, 0
            else:
                since += 1
                if since >= PATIENCE:
                    theta, since = theta * 0.7, 0
            direction = np.where((local > 0) | (relaxed.subgradient < 0), relaxed.subgradient, 0.0)
            norm = float(direction @ direction)
            if norm == 0.0:
                break
            local = np.maximum(0.0, local - theta * max(relaxed.value - target, 0.0) / norm * direction)
        prices = lift(table, kept, best_prices)
        if round_number < rounds and relaxed is not None:
            working = np.union1d(working, _improving(table, prices, relax(sub, best_prices).profit, working))
    full = relax(table, prices)
    return PriceSearch(prices, full.value, full, step)


def _improving(table: PairTable, prices: np.ndarray, profit: np.ndarray, working: np.ndarray) -> np.ndarray:
    """Pairings outside ``working`` worth adding at these prices: a gang's that beats its request's profit
    π_r, a divisible request's whose reduced value per H100-equivalent beats π_r / upper_r (its average)."""
    cumulative = np.concatenate([[0.0], np.cumsum(prices)])
    reduced = table.value - (cumulative[table.point_after_end] - cumulative[table.point_of_start])
    position = table.request
    gain = np.where(table.gang, table.need * reduced - profit[position],
                    reduced / table.factor - profit[position] / table.upper[position])
    gain[working] = 0.0
    found = np.flatnonzero((gain > 1e-9) & (reduced > 0))
    found = found[np.lexsort((-gain[found], position[found]))]
    owner = position[found]
    first = np.r_[True, owner[1:] != owner[:-1]] if len(found) else np.zeros(0, dtype=bool)
    rank = np.arange(len(found)) - np.maximum.accumulate(np.where(first, np.arange(len(found)), 0))
    return np.sort(found[rank < GROW_PER_REQUEST])
