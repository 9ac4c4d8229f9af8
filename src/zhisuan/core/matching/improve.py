"""Local search on a sweep's clearing: eject the leases in a left-out request's way, then refill.

One move, for a request u the clearing left out:

1. pick one of u's first ``TOP_PAIRINGS`` pairings in the guided rank, c = (u, o) over points [first, after);
2. remove requests holding a lease on offer o that overlaps c (its capacity points intersect
   [first, after) — the same as the hours intersecting), least worth first, until c's most devices
   (a gang's need) fit;
3. refill: u first, then the removed requests by the guided request order, each exactly as the sweep
   fills one (gang: first offer with room for all; divisible: up to its amount, kept only when the
   lower fill bound is met), on the capacity left;
4. keep the result when the round's value Σ W_c · devices rose by more than ``MIN_GAIN`` (float
   per-device values of table.py; the caller re-values the final clearing exactly), otherwise undo.

Every state is a sweep state (``Sweeper``), so every clearing stays feasible: no offer over-booked at
any capacity point, gangs whole on one offer, fill bounds met. The moves draw from a seeded generator
(``SEED``), so the search is deterministic up to the deadline it stops at; it also stops after
``STALL_MOVES`` moves in a row without a gain.
"""

import time

import numpy as np

from zhisuan.core.matching.sweep import Sweeper

TOP_PAIRINGS = 3
MIN_GAIN = 1e-6
SEED = 11
CHECK_EVERY = 16  # moves between clock reads
STALL_MOVES = 3000  # moves in a row without a gain that end the search before its deadline


def improve(filler: Sweeper, value: np.ndarray, priority: np.ndarray, deadline: float) -> int:
    """Moves on ``filler`` (changed in place) until ``deadline``; ``value`` is W_c per device per pairing,
    ``priority`` the refill order key per request (smaller first). Returns the number of moves kept.
    Left-out requests are drawn in proportion to what their best pairing alone is worth, W_c × most_c."""
    values, rank, cols = value.tolist(), priority.tolist(), filler.cols
    bounds = np.asarray(cols.bounds)
    worth = {p: _worth(values, chosen) for p, chosen in filler.chosen.items()}
    standalone = np.zeros(len(bounds) - 1)
    has = bounds[1:] > bounds[:-1]
    heads = bounds[:-1][has]
    standalone[has] = np.maximum.reduceat(np.maximum(value, 0.0) * np.asarray(cols.most), heads)
    rng = np.random.default_rng(SEED)
    kept, moves, since = 0, 0, 0
    while True:
        if moves % CHECK_EVERY == 0:
            if time.perf_counter() >= deadline or since >= STALL_MOVES:
                return kept
            weights = standalone.copy()
            weights[list(filler.chosen)] = 0.0
            total = weights.sum()
            if total <= 0:
                return kept
            draws = rng.choice(len(weights), size=CHECK_EVERY, p=weights / total).tolist()
        u = draws[moves % CHECK_EVERY]
        moves += 1
        if u in filler.chosen:  # filled by an earlier move of this batch
            continue
        gained = _move(filler, u, int(rng.integers(TOP_PAIRINGS)), values, rank, worth)
        kept, since = kept + gained, 0 if gained else since + 1


def _move(filler: Sweeper, u: int, pick: int, values: list[float], rank: list[int], worth: dict[int, float]) -> bool:
    """Steps 1–4 of the module docstring for request ``u`` and its ``pick``-th pairing."""
    cols = filler.cols
    tried = filler.pair_of[cols.bounds[u]:cols.bounds[u + 1]]
    pair = tried[min(pick, len(tried) - 1)]
    offer, first, after = cols.offer[pair], cols.first[pair], cols.after[pair]
    ejected = [p for p in filler.on_offer.get(offer, ())
               if any(cols.offer[q] == offer and cols.first[q] < after and first < cols.after[q]
                      for q, _ in filler.chosen[p])]
    need = min(cols.most[pair], filler.capacity[offer])
    saved = {}
    for p in sorted(ejected, key=lambda p: (worth[p], p)):  # the least worth first, until u's lease fits
        if filler.free(pair) >= need:
            break
        saved[p] = filler.remove(p)
    ejected = list(saved)
    before = sum(worth[p] for p in ejected)
    refilled = [p for p in [u, *sorted(ejected, key=rank.__getitem__)] if filler.fill(p)]
    now = {p: _worth(values, filler.chosen[p]) for p in refilled}
    if sum(now.values()) > before + MIN_GAIN * max(1.0, before):
        for p in ejected:
            worth.pop(p)
        worth.update(now)
        return True
    for p in refilled:
        filler.remove(p)
    for p, chosen in saved.items():
        filler.place(p, chosen)
    return False


def _worth(values: list[float], chosen: list[tuple[int, int]]) -> float:
    return sum(values[pair] * devices for pair, devices in chosen)
