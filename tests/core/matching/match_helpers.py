"""Builders and an independent checker for clearing outcomes (no code shared with the matcher)."""

from collections import defaultdict
from collections.abc import Sequence
from decimal import Decimal

from zhisuan.core.matching import Clearing, Offer, Request

H800 = {"h800": Decimal(1)}


def offer(offer_id: int, devices: int, *, model: str = "h800", floor: str = "10", start: int = 0,
          end: int = 1000, min_term: int = 1, region: str = "beijing", site: str | None = None) -> Offer:
    return Offer(offer_id, f"p{offer_id}", site or f"site-{offer_id}", region, model, devices, start, end, min_term,
                 Decimal(floor))


def request(request_id: int, devices: int, *, models: dict[str, Decimal] | None = None, cap: str = "20",
            earliest: int = 0, latest: int = 0, hours: int = 100, gang: bool = False, partial: bool = False,
            min_fill: str = "1", regions: frozenset[str] | None = None) -> Request:
    chosen = models or H800
    normalised = any(f != 1 for f in chosen.values())
    return Request(request_id, f"t{request_id}", devices, normalised, chosen, earliest, latest, hours, Decimal(cap),
                   regions, gang, partial, Decimal(min_fill))


def check_clearing(offers: Sequence[Offer], requests: Sequence[Request], result: Clearing) -> None:
    """Every invariant a clearing must keep, checked hour by hour from the matches alone."""
    by_offer = {o.offer_id: o for o in offers}
    by_request = {r.request_id: r for r in requests}
    usage: dict[int, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    delivered: dict[int, Decimal] = defaultdict(Decimal)
    pieces: dict[int, list] = defaultdict(list)
    value = Decimal(0)
    for m in result.matches:
        o, r = by_offer[m.offer_id], by_request[m.request_id]
        f = r.models[o.model]
        assert m.devices > 0
        assert r.regions is None or o.region in r.regions
        assert o.start <= m.start and m.end <= o.end and m.end - m.start == r.duration_h >= o.min_term_h
        assert r.earliest_start <= m.start <= r.latest_start
        assert o.floor_price <= m.price <= r.max_price * f, "price outside [floor, cap]"
        for hour in range(m.start, m.end):
            usage[o.offer_id][hour] += m.devices
        delivered[r.request_id] += f * m.devices
        pieces[r.request_id].append(m)
        per_device_hour = r.max_price * f - o.floor_price if result.objective == "surplus" else f
        value += per_device_hour * m.devices * r.duration_h
    for offer_id, hours in usage.items():
        assert max(hours.values()) <= by_offer[offer_id].devices, f"offer {offer_id} over-booked"
    for request_id, total in delivered.items():
        r = by_request[request_id]
        assert request_id not in result.unmatched
        assert total < r.devices + max(r.models.values()), "over-filled by a whole device or more"
        if r.gang:
            assert len(pieces[request_id]) == 1, "a gang spans more than one offer"
            assert total >= r.devices
        elif r.allow_partial:
            assert total >= r.min_fill * r.devices
        else:
            assert total >= r.devices
    assert set(result.unmatched) == {r.request_id for r in requests} - set(delivered)
    assert result.value == value
    if result.bound is not None:
        assert result.value <= result.bound
