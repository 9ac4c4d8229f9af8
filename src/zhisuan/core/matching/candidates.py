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

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal

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


Pairing = tuple[float, int, int, Decimal]  # (−margin per device-hour, offer id, offer index, factor)


def request_pairings(index: OfferIndex, request: Request) -> tuple[list[Pairing], KindStats]:
    """Every offer the request could use, widest margin cap × f − floor first (ties: lower offer id)."""
    stats = KindStats()
    found: list[Pairing] = []
    wanted = None if request.regions is None else [index.region_code.get(r, -1) for r in request.regions]
    for model, factor in request.models.items():
        cols = index.by_model.get(model)
        if cols is None:
            continue
        start = np.maximum(cols["start"], request.earliest_start)
        ok = (cols["min_term"] <= request.duration_h) & (start <= request.latest_start)
        ok &= start + request.duration_h <= cols["end"]
        if wanted is not None:
            ok &= np.isin(cols["region"], wanted)
        stats.in_window += int(ok.sum())
        cap = float(request.max_price * factor)
        ok &= cols["floor"] <= cap
        stats.priced += int(ok.sum())
        stats.priced_capacity += float(factor) * float(cols["devices"][ok].sum())
        if request.gang:
            ok &= cols["devices"] >= gang_devices(request, factor)
            stats.gang_fits += int(ok.sum())
        picked = np.flatnonzero(ok)
        found.extend(zip((cols["floor"][picked] - cap).tolist(), cols["offer_id"][picked].tolist(),
                         cols["index"][picked].tolist(), [factor] * len(picked), strict=True))
    found.sort(key=lambda item: (item[0], item[1]))
    return found, stats


def _candidate(offer: Offer, offer_index: int, request: Request, request_index: int,
               factor: Decimal) -> Candidate | None:
    unit_surplus = request.max_price * factor - offer.floor_price
    if unit_surplus < 0:  # the float screen let an exact tie-breaker through
        return None
    start = max(request.earliest_start, offer.start)
    if request.gang:
        most = gang_devices(request, factor)
    else:
        fit = (fill_bounds(request).upper / factor).to_integral_value(rounding=ROUND_FLOOR)
        most = min(offer.devices, int(fit))
    if most <= 0:
        return None
    return Candidate(request_index, offer_index, factor, start, start + request.duration_h, unit_surplus, most)


def market_candidates(
    offers: Sequence[Offer], requests: Sequence[Request], limit: int | None, offer_limit: int | None = None
) -> tuple[list[list[Candidate]], list[KindStats]]:
    """Each request's candidates, widest margin first. With ``limit``, a pairing is kept when it is among
    the request's ``limit`` widest margins or among the ``offer_limit`` widest margins the offer sees
    (ties: lower request id) — so every offer stays reachable by the requests that value it most."""
    index = OfferIndex(offers)
    found, stats = [], []
    for request in requests:
        pairings, kind = request_pairings(index, request)
        found.append(pairings)
        stats.append(kind)
    keep = _kept_by_offers(requests, found, offer_limit) if limit is not None and offer_limit else set()
    per_request = []
    for position, pairings in enumerate(found):
        chosen = [p for rank, p in enumerate(pairings) if limit is None or rank < limit or (position, p[2]) in keep]
        made = (_candidate(offers[p[2]], p[2], requests[position], position, p[3]) for p in chosen)
        per_request.append([c for c in made if c is not None])
    return per_request, stats


def _kept_by_offers(requests: Sequence[Request], found: Sequence[Sequence[Pairing]], offer_limit: int):
    """(request position, offer index) pairs among each offer's ``offer_limit`` widest margins."""
    by_offer: dict[int, list[tuple[float, int, int]]] = {}
    for position, pairings in enumerate(found):
        for margin, _, offer_index, _ in pairings:
            by_offer.setdefault(offer_index, []).append((margin, requests[position].request_id, position))
    keep = set()
    for offer_index, seen in by_offer.items():
        for _, _, position in sorted(seen)[:offer_limit]:
            keep.add((position, offer_index))
    return keep


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

