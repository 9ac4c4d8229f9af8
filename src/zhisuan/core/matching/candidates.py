"""Which offers can serve which requests, on what terms, and why a request found none.

A pair (request r, offer o) is a *candidate* when all of these hold (f = r.models[o.model]):

- the model is acceptable to r, and o's region is among r.regions (when r names any);
- the window fits: the lease starts at s = max(r.earliest_start, o.start), the earliest start both
  sides accept, and needs s <= r.latest_start and s + r.duration_h <= o.end; and
  r.duration_h >= o.min_term_h;
- the price fits: r.max_price × f >= o.floor_price (cap per device-hour against the floor);
- a gang fits on the one offer: o.devices >= ceil(amount / f).

Fixing s to the earliest common start keeps the clearing problem linear (no start variables).

How much a request takes, in H100-equivalents delivered (Σ f·x over its grants):
lower = amount (min_fill × amount when partial fills are allowed; gangs are all or nothing) and
upper = amount + slack, where slack = 0 when every acceptable factor is 1 and otherwise just under
one device of the most capable acceptable model (whole devices cannot hit a fractional amount).
"""

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import overload

import numpy as np

from zhisuan.core.matching.types import (
    REASON_CAP_BELOW_FLOORS,
    REASON_GANG_TOO_LARGE,
    REASON_NO_CAPACITY,
    REASON_OUTBID,
    REASON_TOO_LITTLE_CAPACITY,
    Offer,
    Request,
)

SLACK_SHARE = Decimal("0.999")  # over-fill stays strictly below one device of the best model


@dataclass(frozen=True)
class Candidate:
    """One feasible (request, offer) pairing; devices are granted over [start, end)."""

    request_index: int
    offer_index: int
    factor: Decimal
    start: int
    end: int
    unit_surplus: Decimal  # (cap × factor − floor) CNY per device-hour, >= 0
    max_devices: int  # gang: exactly the devices it needs; otherwise the most it may take here


@dataclass(frozen=True)
class FillBounds:
    lower: Decimal  # H100-equivalents (devices when not normalised)
    upper: Decimal


@dataclass
class KindStats:
    """What exists for a request ignoring competition: used to explain an unmatched request."""

    in_window: int = 0
    priced: int = 0
    gang_fits: int = 0
    priced_capacity: float = 0.0  # Σ f × devices over priced offers


class KindStatsTable(Sequence[KindStats]):
    """Each request's ``KindStats`` as rows of one array (in window, priced, gang fits, priced capacity),
    made into objects only for the requests asked about (the unmatched ones)."""

    def __init__(self, counts: np.ndarray) -> None:
        self.counts = counts

    def __len__(self) -> int:
        return len(self.counts)

    @overload
    def __getitem__(self, index: int) -> KindStats: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[KindStats]: ...

    def __getitem__(self, index: int | slice) -> KindStats | Sequence[KindStats]:
        if isinstance(index, slice):
            return [self[i] for i in range(len(self))[index]]
        in_window, priced, gang_fits, capacity = self.counts[index].tolist()
        return KindStats(int(in_window), int(priced), int(gang_fits), capacity)


def fill_bounds(request: Request) -> FillBounds:
    amount = Decimal(request.devices)
    lower = amount * request.min_fill if request.allow_partial and not request.gang else amount
    max_factor = max(request.models.values())
    all_unit = all(f == 1 for f in request.models.values())
    return FillBounds(lower, amount if all_unit else amount + max_factor * SLACK_SHARE)


def gang_devices(request: Request, factor: Decimal) -> int:
    """Whole devices a gang needs on one offer of this factor: ceil(amount / f)."""
    return int((Decimal(request.devices) / factor).to_integral_value(rounding=ROUND_CEILING))


def clearing_price(offer: Offer, request: Request, factor: Decimal) -> Decimal:
    """Midpoint rule: price = (floor + cap × f) / 2 CNY per device-hour, rounded half up to the fen,
    then held inside [floor, cap × f] so rounding never charges above the cap nor pays below the floor."""
    cap = request.max_price * factor
    mid = ((offer.floor_price + cap) / 2).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    return min(max(mid, offer.floor_price), cap)


class OfferIndex:
    """Offers grouped by model as numpy columns, so a request's candidates are a few vector masks."""

    def __init__(self, offers: Sequence[Offer]) -> None:
        self.offers = offers
        regions = sorted({o.region for o in offers})
        self.region_code = {name: code for code, name in enumerate(regions)}
        groups: dict[str, list[int]] = {}
        for index, offer in enumerate(offers):
            groups.setdefault(offer.model, []).append(index)
        self.by_model = {model: self._columns(idx) for model, idx in groups.items()}

    def _columns(self, indices: list[int]) -> dict[str, np.ndarray]:
        rows = [self.offers[i] for i in indices]
        return {
            "index": np.array(indices, dtype=np.int64),
            "start": np.array([o.start for o in rows], dtype=np.int64),
            "end": np.array([o.end for o in rows], dtype=np.int64),
            "min_term": np.array([o.min_term_h for o in rows], dtype=np.int64),
            "floor": np.array([float(o.floor_price) for o in rows]),
            "devices": np.array([o.devices for o in rows], dtype=np.int64),
            "region": np.array([self.region_code[o.region] for o in rows], dtype=np.int64),
            "offer_id": np.array([o.offer_id for o in rows], dtype=np.int64),
        }


@dataclass(frozen=True)
class PairTerms:
    """What a pairing's terms depend on besides the offer: one per (request, model)."""

    factor: Decimal
    cap: Decimal  # request.max_price × factor, CNY per device-hour
    most: int  # gang: the devices it needs; otherwise the most whole devices within the upper fill bound


def pair_terms(request: Request, factor: Decimal, upper: Decimal) -> PairTerms:
    if request.gang:
        most = gang_devices(request, factor)
    else:
        most = int((upper / factor).to_integral_value(rounding=ROUND_FLOOR))
    return PairTerms(factor, request.max_price * factor, most)


def _candidate(offer: Offer, offer_index: int, request: Request, request_index: int,
               terms: PairTerms) -> Candidate | None:
    unit_surplus = terms.cap - offer.floor_price
    if unit_surplus < 0:  # the float screen let an exact tie-breaker through
        return None
    start = max(request.earliest_start, offer.start)
    most = terms.most if request.gang else min(offer.devices, terms.most)
    if most <= 0:
        return None
    return Candidate(request_index, offer_index, terms.factor, start, start + request.duration_h, unit_surplus,
                     most)


class MarketPairings:
    """Every feasible pairing of a round as arrays, sorted by request then widest margin cap × f − floor
    (ties: lower offer id). ``Candidate`` objects are made on demand: a greedy pass only walks the head
    of each request's list. Pairs are screened a model at a time as (requests × offers) masks; exact
    Decimal checks run on the pairs turned into candidates."""

    def __init__(self, offers: Sequence[Offer], requests: Sequence[Request]) -> None:
        index = OfferIndex(offers)
        self.offers, self.requests, self.names = offers, requests, sorted(index.by_model)
        by_request, counts = request_columns(index, requests), np.zeros((len(requests), 4))
        chunks = [_model_pairs(index, requests, m, cols, by_request, counts)
                  for m, cols in sorted(index.by_model.items())]
        self.stats = KindStatsTable(counts)
        found = [chunk for chunk in chunks if chunk is not None]
        empty = np.zeros(0, dtype=np.int64)
        parts = [np.concatenate(p) for p in zip(*found, strict=True)] if found else [empty] * 5
        position, offer_index, margin, offer_id, models = parts
        order = np.lexsort((offer_id, margin.astype(np.float64), position))
        self.position, self.offer_index, self.margin = position[order], offer_index[order], margin[order]
        self.models = models[order]
        self.bounds = np.searchsorted(self.position, np.arange(len(requests) + 1))
        self.fills = [fill_bounds(r) for r in requests]
        self.uppers = [b.upper for b in self.fills]
        self.terms: dict[tuple[int, int], PairTerms] = {}

    def of_request(self, position: int) -> Iterator[Candidate]:
        for pair in range(int(self.bounds[position]), int(self.bounds[position + 1])):
            made = self._make(pair)
            if made is not None:
                yield made

    def best_margins(self) -> list[float | None]:
        """Each request's widest margin per device-hour (None when it has no pairing)."""
        heads = self.bounds[:-1]
        has = heads < self.bounds[1:]
        return [float(-self.margin[h]) if ok else None for h, ok in zip(heads.tolist(), has.tolist(), strict=True)]

    def pruned(self, limit: int | None, offer_limit: int | None = None,
               always: frozenset[tuple[int, int]] = frozenset()) -> list[list[Candidate]]:
        """A pairing is kept when it is among the request's ``limit`` widest margins, among the
        ``offer_limit`` widest margins the offer sees (ties: lower request id) — so every offer stays
        reachable by the requests that value it most — or in ``always``; all of them when ``limit`` is None."""
        keep = np.ones(len(self.position), dtype=bool)
        if limit is not None:
            keep = _rank_in_group(self.position) < limit
            if offer_limit:
                request_id = np.array([r.request_id for r in self.requests], dtype=np.int64)[self.position]
                by_offer = np.lexsort((request_id, self.margin, self.offer_index))
                keep[by_offer] |= _rank_in_group(self.offer_index[by_offer]) < offer_limit
            for position, offer_index in always:
                span = slice(int(self.bounds[position]), int(self.bounds[position + 1]))
                keep[span] |= self.offer_index[span] == offer_index
        per_request: list[list[Candidate]] = [[] for _ in self.requests]
        for pair in np.flatnonzero(keep).tolist():
            made = self._make(pair)
            if made is not None:
                per_request[made.request_index].append(made)
        return per_request

    def candidate(self, pair: int) -> Candidate | None:
        """Pairing ``pair`` (an index into the sorted arrays) as a ``Candidate``."""
        return self._make(pair)

    def _make(self, pair: int) -> Candidate | None:
        p, o = int(self.position[pair]), int(self.offer_index[pair])
        request = self.requests[p]
        code = int(self.models[pair])
        terms = self.terms.get((p, code))
        if terms is None:
            terms = self.terms[(p, code)] = pair_terms(request, request.models[self.names[code]], self.uppers[p])
        return _candidate(self.offers[o], o, request, p, terms)


def market_candidates(
    offers: Sequence[Offer], requests: Sequence[Request], limit: int | None, offer_limit: int | None = None
) -> tuple[list[list[Candidate]], Sequence[KindStats]]:
    """Each request's candidates, widest margin first, pruned as ``MarketPairings.pruned`` says."""
    pairings = MarketPairings(offers, requests)
    return pairings.pruned(limit, offer_limit), pairings.stats


def _rank_in_group(sorted_keys: np.ndarray) -> np.ndarray:
    """0, 1, 2, … within each run of equal keys of a sorted array."""
    if len(sorted_keys) == 0:
        return np.zeros(0, dtype=np.int64)
    first = np.r_[True, sorted_keys[1:] != sorted_keys[:-1]]
    run_start = np.maximum.accumulate(np.where(first, np.arange(len(sorted_keys)), 0))
    return np.arange(len(sorted_keys)) - run_start


@dataclass(frozen=True)
class RequestColumns:
    """The requests' window and region terms as numpy columns, made once per round."""

    earliest: np.ndarray
    latest: np.ndarray
    duration: np.ndarray
    gang: np.ndarray
    regions: np.ndarray  # (requests × regions) acceptance mask


def request_columns(index: OfferIndex, requests: Sequence[Request]) -> RequestColumns:
    def column(values: list) -> np.ndarray:
        return np.array(values, dtype=np.int64)

    return RequestColumns(column([r.earliest_start for r in requests]), column([r.latest_start for r in requests]),
                          column([r.duration_h for r in requests]), np.array([r.gang for r in requests], dtype=bool),
                          _region_mask(index, requests))


def _model_pairs(index: OfferIndex, requests: Sequence[Request], model: str, cols: dict[str, np.ndarray],
                 by_request: RequestColumns, counts: np.ndarray):
    """Feasible (request, offer) pairs of one model; adds the requests' ``KindStats`` counts for it to
    ``counts`` (columns: in window, priced, gang fits, priced capacity)."""
    users = np.array([p for p, r in enumerate(requests) if model in r.models], dtype=np.int64)
    if len(users) == 0:
        return None
    chosen = [requests[p] for p in users.tolist()]
    factor = [r.models[model] for r in chosen]
    duration = by_request.duration[users][:, None]
    start = np.maximum(cols["start"][None, :], by_request.earliest[users][:, None])
    ok = (cols["min_term"][None, :] <= duration) & (start <= by_request.latest[users][:, None])
    ok &= start + duration <= cols["end"][None, :]
    ok &= by_request.regions[users][:, cols["region"]]
    counts[users, 0] += ok.sum(axis=1)
    cap = np.array([float(r.max_price * f) for r, f in zip(chosen, factor, strict=True)])
    ok &= cols["floor"][None, :] <= cap[:, None]
    counts[users, 1] += ok.sum(axis=1)
    counts[users, 3] += (ok @ cols["devices"].astype(np.float64)) * np.array([float(f) for f in factor])
    gang = by_request.gang[users]
    need = np.array([gang_devices(r, f) if r.gang else 0 for r, f in zip(chosen, factor, strict=True)],
                    dtype=np.int64)
    ok &= cols["devices"][None, :] >= need[:, None]
    counts[users, 2] += (ok & gang[:, None]).sum(axis=1)
    user_row, member = np.nonzero(ok)
    code = sorted(index.by_model).index(model)
    return (users[user_row], cols["index"][member], cols["floor"][member] - cap[user_row], cols["offer_id"][member],
            np.full(len(user_row), code, dtype=np.int64))


def _region_mask(index: OfferIndex, chosen: Sequence[Request]) -> np.ndarray:
    """(requests × regions) — True where the request accepts the region (all, when it names none)."""
    mask = np.ones((len(chosen), max(len(index.region_code), 1)), dtype=bool)
    for row, request in enumerate(chosen):
        if request.regions is not None:
            mask[row] = False
            for name in request.regions:
                if name in index.region_code:
                    mask[row, index.region_code[name]] = True
    return mask


def unmatched_reason(request: Request, stats: KindStats) -> str:
    """The first of: nothing of that kind in the window; cap below every floor; gang too large for any
    one offer's site; too little capacity in all; otherwise the request lost to better bids."""
    if stats.in_window == 0:
        return REASON_NO_CAPACITY
    if stats.priced == 0:
        return REASON_CAP_BELOW_FLOORS
    if request.gang and stats.gang_fits == 0:
        return REASON_GANG_TOO_LARGE
    if not request.gang and stats.priced_capacity < float(fill_bounds(request).lower) - 1e-9:
        return REASON_TOO_LITTLE_CAPACITY
    return REASON_OUTBID

