"""A greedy pass over the pairing table in a given order, fast enough to run several times a round.

``sweep(pairings, table, request_order, pair_rank)`` visits the requests in ``request_order``; each
tries its pairings in ascending ``pair_rank`` and is filled exactly as ``book.fill_request`` fills one
(gang: the first offer with room for all of it; divisible: each pairing gives what is free up to the
amount, kept only when the lower fill bound is reached).
Capacity is kept per capacity point of the table (an offer at a lease start, table.py) in a plain list:
usage only rises at a lease start, so the most a lease [first, after) finds in use is the max over
those points — a short list slice, cheaper than numpy's per-call overhead at ~10^6 look-ups a round.
Only the pairings a request tries are turned into ``Candidate`` objects; the fill arithmetic is exact
(``Decimal`` factors, integers otherwise), so every grant is feasible for the round.
"""

import time
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

import numpy as np

from zhisuan.core.matching.book import Grant
from zhisuan.core.matching.candidates import FillBounds, MarketPairings
from zhisuan.core.matching.table import PairTable

BLOCK = 32  # capacity points per block of ``PointUsage``'s block maxima


class PointUsage:
    """Devices in use at each capacity point, with the maximum of each block of ``BLOCK`` points kept
    beside it, so the most in use over a lease's points [first, after) is two short slices and the
    blocks between (a lease at 10,000 × 2,000 spans ~200 points)."""

    def __init__(self, num_points: int) -> None:
        self.usage = [0] * num_points
        self.block_max = [0] * (num_points // BLOCK + 1)

    def peak(self, first: int, after: int) -> int:
        usage = self.usage
        low, high = first // BLOCK + 1, after // BLOCK
        if high - low < 2:
            return max(usage[first:after])
        tail = max(usage[high * BLOCK:after], default=0)
        return max(max(usage[first:low * BLOCK]), max(self.block_max[low:high]), tail)

    def add(self, first: int, after: int, devices: int) -> None:
        usage, block_max = self.usage, self.block_max
        for point in range(first, after):
            usage[point] += devices
        for block in range(first // BLOCK, (after - 1) // BLOCK + 1):
            block_max[block] = max(usage[block * BLOCK:(block + 1) * BLOCK])


@dataclass(frozen=True)
class SweepColumns:
    """The table's columns as Python lists (list indexing is what the sweep's inner loop does ~10^6
    times); made once per round and shared by its sweeps."""

    bounds: list[int]
    first: list[int]
    after: list[int]
    offer: list[int]
    most: list[int]
    model: list[int]
    lower: list[int | None]  # per request: whole devices it needs when every factor is 1 (None otherwise)
    fill: list[FillBounds]  # per request


def sweep_columns(pairings: MarketPairings, table: PairTable) -> SweepColumns:
    fills = pairings.fills
    return SweepColumns(pairings.bounds.tolist(), table.point_of_start.tolist(), table.point_after_end.tolist(),
                        table.offer.tolist(), table.most.astype(np.int64).tolist(), pairings.models.tolist(),
                        [_unit_lower(r, b) for r, b in zip(pairings.requests, fills, strict=True)], fills)


def _unit_lower(request, bounds: FillBounds) -> int | None:
    """ceil(lower fill bound) for a divisible request whose factors are all 1 (then upper = amount and the
    fill is whole devices: integer arithmetic decides it exactly), else None."""
    if request.gang or bounds.upper != request.devices:
        return None
    return int(bounds.lower.to_integral_value(rounding=ROUND_CEILING))


def sweep(pairings: MarketPairings, table: PairTable, request_order: np.ndarray, pair_rank: np.ndarray,
          deadline: float | None = None, columns: SweepColumns | None = None) -> dict[int, list[Grant]]:
    """Grants of the requests in ``request_order`` (see the module docstring). With a ``deadline`` (a
    ``time.perf_counter`` value) the sweep stops there: the requests not yet visited stay unmatched."""
    return sweep_state(pairings, table, request_order, pair_rank, deadline, columns).grants()


def sweep_state(pairings: MarketPairings, table: PairTable, request_order: np.ndarray, pair_rank: np.ndarray,
                deadline: float | None = None, columns: SweepColumns | None = None) -> "Sweeper":
    """``sweep`` returning the sweep's state (for local search) instead of its grants."""
    filler = Sweeper(pairings, table, pair_rank, columns)
    for visited, position in enumerate(request_order.tolist()):
        if deadline is not None and visited % 256 == 0 and time.perf_counter() >= deadline:
            break
        filler.fill(position)
    return filler


class Sweeper:
    """The state of a sweep: capacity in use per point and each filled request's (pairing, devices).
    ``fill`` books one request as the sweep does; ``remove`` gives its capacity back (local search)."""

    def __init__(self, pairings: MarketPairings, table: PairTable, pair_rank: np.ndarray,
                 columns: SweepColumns | None = None) -> None:
        self.pairings, self.cols = pairings, columns or sweep_columns(pairings, table)
        if len(pair_rank) < 2 or bool(np.all(pair_rank[1:] > pair_rank[:-1])):  # the table's own order
            self.pair_of = list(range(len(pair_rank)))
        else:
            self.pair_of = np.lexsort((np.arange(len(pair_rank)), pair_rank, table.request)).tolist()
        self.capacity = [o.devices for o in pairings.offers]
        self.book = PointUsage(table.num_points)
        self.chosen: dict[int, list[tuple[int, int]]] = {}
        self.on_offer: dict[int, set[int]] = {}  # offer index -> positions holding a lease on it
        self.factors: dict[int, dict[int, Decimal]] = {}  # per normalised divisible request, made when it fills
        self.top = [0] * len(self.capacity)  # per offer: at least its peak usage (placing raises it; removing keeps it)

    def free(self, pair: int) -> int:
        offer = self.cols.offer[pair]
        if self.top[offer] == 0:  # nothing booked on the offer yet
            return self.capacity[offer]
        first, cap = self.cols.first[pair], self.capacity[offer]
        if self.book.usage[first] >= cap:  # full where the lease starts: the common case on a contested offer
            return 0
        return cap - self.book.peak(first, self.cols.after[pair])

    def room(self, pair: int, wanted: int) -> int:
        """min(free(pair), wanted) — without the peak look-up when the offer's top usage leaves room for it."""
        offer = self.cols.offer[pair]
        if self.top[offer] + wanted <= self.capacity[offer]:
            return wanted
        return min(self.free(pair), wanted)

    def fill(self, position: int) -> bool:
        request, cols = self.pairings.requests[position], self.cols
        tried = self.pair_of[cols.bounds[position]:cols.bounds[position + 1]]
        chosen: list[tuple[int, int]] = []
        if request.gang:
            most_of = cols.most
            for pair in tried:
                if self.room(pair, most_of[pair]) >= most_of[pair]:
                    chosen = [(pair, most_of[pair])]
                    break
        elif (lower := cols.lower[position]) is not None:
            chosen = self._unit(request.devices, lower, tried)
        else:
            factors = self.factors.get(position)
            if factors is None:
                names = self.pairings.names
                factors = self.factors[position] = {k: request.models[n] for k, n in enumerate(names)
                                                    if n in request.models}
            chosen = _divisible(request, cols.fill[position], tried, factors, cols.model, self.room, cols.most)
        if chosen:
            self.place(position, chosen)
        return bool(chosen)

    def _unit(self, amount: int, lower: int, tried: list[int]) -> list[tuple[int, int]]:
        """``_divisible`` for a request whose factors are all 1, in integers: each pairing gives what is
        free up to the devices still missing; kept when at least ``lower`` devices were found."""
        usage, capacity, cols, top = self.book.usage, self.capacity, self.cols, self.top
        first_of, offer_of, most_of = cols.first, cols.offer, cols.most
        chosen, missing = [], amount
        for pair in tried:
            offer = offer_of[pair]
            cap, wanted = capacity[offer], min(most_of[pair], missing)
            if top[offer] + wanted <= cap:  # room for all of it whatever the lease's hours
                take = wanted
            elif usage[first_of[pair]] >= cap:  # full where the lease starts: most pairings of a contested request
                continue
            else:
                take = min(cap - self.book.peak(first_of[pair], cols.after[pair]), wanted)
            if take > 0:
                chosen.append((pair, take))
                missing -= take
                if missing == 0:
                    break
        return chosen if chosen and amount - missing >= lower else []

    def place(self, position: int, chosen: list[tuple[int, int]]) -> None:
        for pair, devices in chosen:
            first, after, offer = self.cols.first[pair], self.cols.after[pair], self.cols.offer[pair]
            self.book.add(first, after, devices)
            self.top[offer] = max(self.top[offer], self.book.peak(first, after))
            self.on_offer.setdefault(offer, set()).add(position)
        self.chosen[position] = chosen

    def remove(self, position: int) -> list[tuple[int, int]]:
        chosen = self.chosen.pop(position)
        for pair, devices in chosen:
            self.book.add(self.cols.first[pair], self.cols.after[pair], -devices)
            self.on_offer[self.cols.offer[pair]].discard(position)
        return chosen

    def worth(self, value: np.ndarray) -> float:
        """Σ W_c · devices over the grants (floats: for comparing states, not for the result)."""
        return float(sum(value[pair] * devices for chosen in self.chosen.values() for pair, devices in chosen))

    def grants(self) -> dict[int, list[Grant]]:
        grants = {}
        for position, chosen in self.chosen.items():
            given = []
            for pair, devices in chosen:
                candidate = self.pairings.candidate(pair)
                assert candidate is not None and candidate.max_devices >= devices
                given.append((candidate, devices))
            grants[position] = given
        return grants


def greedy_order(pairings: MarketPairings) -> np.ndarray:
    """``clear_greedy``'s request order: widest best margin first (none last), then request id."""
    margins = pairings.best_margins()
    widest = np.array([np.inf if m is None else -m for m in margins])
    return np.lexsort((np.array([r.request_id for r in pairings.requests]), widest))


def _divisible(request, bounds: FillBounds, tried, factors, model_of, room_of, most_of) -> list[tuple[int, int]]:
    amount = Decimal(request.devices)
    chosen, delivered = [], Decimal(0)
    for pair in tried:
        if delivered >= amount:
            break
        room = room_of(pair, most_of[pair])
        if room <= 0:  # checked first: most pairings a contested request tries are full
            continue
        f = factors[model_of[pair]]
        to_amount = int(((amount - delivered) / f).to_integral_value(rounding=ROUND_CEILING))
        to_upper = int(((bounds.upper - delivered) / f).to_integral_value(rounding=ROUND_FLOOR))
        take = min(room, to_amount, to_upper)
        if take > 0:
            chosen.append((pair, take))
            delivered += f * take
    return chosen if chosen and delivered >= bounds.lower else []
