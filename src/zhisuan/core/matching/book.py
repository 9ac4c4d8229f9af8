"""Booking capacity over time, filling one request greedily, and turning grants into a ``Clearing``.

An offer is over-booked when, at some hour, the devices of the leases running on it exceed its
``devices``; every lease lies inside its offer's window (candidates.py), so usage is kept per hour
of that window.
"""

from collections.abc import Iterable, Mapping, Sequence
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

import numpy as np

from zhisuan.core.matching.candidates import Candidate, KindStats, clearing_price, fill_bounds, unmatched_reason
from zhisuan.core.matching.types import Clearing, Match, Offer, Request

Grant = tuple[Candidate, int]  # (pairing, devices)


class CapacityBook:
    """Devices in use per offer, hour by hour over the offer's window (a numpy array allocated on first
    use), so ``free`` is one max over the lease's hours and ``book`` one slice add."""

    def __init__(self, offers: Sequence[Offer]) -> None:
        self.capacity = [o.devices for o in offers]
        self.opens = [o.start for o in offers]
        self.spans = [o.end - o.start for o in offers]
        self.usage: dict[int, np.ndarray] = {}

    def free(self, offer_index: int, start: int, end: int) -> int:
        usage = self.usage.get(offer_index)
        if usage is None:
            return self.capacity[offer_index]
        opens = self.opens[offer_index]
        return self.capacity[offer_index] - int(usage[start - opens:end - opens].max(initial=0))

    def book(self, grants: Sequence[Grant]) -> None:
        for candidate, devices in grants:
            o = candidate.offer_index
            usage = self.usage.get(o)
            if usage is None:
                usage = self.usage[o] = np.zeros(self.spans[o], dtype=np.int64)
            usage[candidate.start - self.opens[o]:candidate.end - self.opens[o]] += devices


def fill_request(request: Request, candidates: Iterable[Candidate], book: CapacityBook) -> list[Grant] | None:
    """Fill ``request`` from ``candidates`` in the given order, booking it only if the fill is acceptable.

    A gang takes the first candidate with room for all of it. Otherwise each candidate in turn gives
    what it has free, up to what still brings the delivered amount to the request's amount without
    passing its upper fill bound; the fill is kept when it reaches the lower bound."""
    if request.gang:
        for candidate in candidates:
            if book.free(candidate.offer_index, candidate.start, candidate.end) >= candidate.max_devices:
                grants = [(candidate, candidate.max_devices)]
                book.book(grants)
                return grants
        return None
    bounds, amount = fill_bounds(request), Decimal(request.devices)
    grants, delivered = [], Decimal(0)
    for candidate in candidates:
        if delivered >= amount:
            break
        f = candidate.factor
        to_amount = int(((amount - delivered) / f).to_integral_value(rounding=ROUND_CEILING))
        to_upper = int(((bounds.upper - delivered) / f).to_integral_value(rounding=ROUND_FLOOR))
        free = book.free(candidate.offer_index, candidate.start, candidate.end)
        take = min(free, candidate.max_devices, to_amount, to_upper)
        if take > 0:
            grants.append((candidate, take))
            delivered += f * take
    if delivered < bounds.lower or not grants:
        return None
    book.book(grants)
    return grants


def grant_value(request: Request, offer: Offer, candidate: Candidate, devices: int, objective: str) -> Decimal:
    """surplus: (cap × f − floor) × devices × hours; pflops_hours: f × devices × hours."""
    per_device_hour = candidate.unit_surplus if objective == "surplus" else candidate.factor
    return per_device_hour * devices * request.duration_h


def assemble(
    offers: Sequence[Offer],
    requests: Sequence[Request],
    grants: Mapping[int, Sequence[Grant]],
    stats: Sequence[KindStats],
    objective: str,
    *,
    bound: Decimal | None,
    status: str,
    solve_s: float,
) -> Clearing:
    """Matches (priced by ``clearing_price``) ordered by request then offer id; reasons for the rest."""
    matches, value, unmatched = [], Decimal(0), {}
    for position, request in enumerate(requests):
        given = [g for g in grants.get(position, ()) if g[1] > 0]
        if not given:
            unmatched[request.request_id] = unmatched_reason(request, stats[position])
            continue
        for candidate, devices in sorted(given, key=lambda g: offers[g[0].offer_index].offer_id):
            offer = offers[candidate.offer_index]
            price = clearing_price(offer, request, candidate.factor)
            matches.append(Match(request.request_id, offer.offer_id, devices, candidate.start, candidate.end, price))
            value += grant_value(request, offer, candidate, devices, objective)
    return Clearing(tuple(matches), unmatched, objective, value, bound, status, solve_s)
