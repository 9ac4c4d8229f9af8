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


def request_candidates(
    index: OfferIndex, request: Request, request_index: int, limit: int | None
) -> tuple[list[Candidate], KindStats]:
    """The request's candidates, best unit surplus first (ties: lower offer id), at most ``limit``."""
    stats = KindStats()
    found: list[tuple[float, int, int, Decimal]] = []  # (-unit surplus, offer id, offer index, factor)
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
    if limit is not None:
        found = found[:limit]
    return [c for item in found if (c := _candidate(index.offers[item[2]], item[2], request, request_index,
                                                    item[3])) is not None], stats


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
    offers: Sequence[Offer], requests: Sequence[Request], limit: int | None
) -> tuple[list[list[Candidate]], list[KindStats]]:
    index = OfferIndex(offers)
    per_request, stats = [], []
    for position, request in enumerate(requests):
        found, kind = request_candidates(index, request, position, limit)
        per_request.append(found)
        stats.append(kind)
    return per_request, stats


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

