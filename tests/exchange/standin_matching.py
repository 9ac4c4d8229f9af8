"""TEST-ONLY STAND-IN for ``zhisuan.core.matching`` (built in parallel by another helper).

Installed by ``tests/exchange/conftest.py`` under that module name only while the real matcher is
missing; it follows the agreed API and is deliberately simple (first fit in request order, price
halfway between floor and cap). The exchange's tests check what the exchange does with matches,
not the matcher's optimality.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal


@dataclass(frozen=True)
class Offer:
    offer_id: int
    provider: str
    site: str
    region: str
    model: str
    devices: int
    start: int
    end: int
    min_term_h: int
    floor_price: Decimal
    network_domain: str | None = None


@dataclass(frozen=True)
class Request:
    request_id: int
    tenant: str
    devices: int
    normalised: bool
    models: Mapping[str, Decimal]
    earliest_start: int
    latest_start: int
    duration_h: int
    max_price: Decimal
    regions: frozenset[str] | None = None
    gang: bool = False
    allow_partial: bool = False
    min_fill: Decimal = Decimal(1)


@dataclass(frozen=True)
class Match:
    request_id: int
    offer_id: int
    devices: int
    start: int
    end: int
    price: Decimal


@dataclass(frozen=True)
class Clearing:
    matches: tuple[Match, ...]
    unmatched: Mapping[int, str]
    objective: str
    value: Decimal
    bound: Decimal | None
    status: str
    solve_s: float


def _need(request: Request, model: str) -> int:
    if not request.normalised:
        return request.devices
    return int((Decimal(request.devices) / request.models[model]).to_integral_value(ROUND_CEILING))


def _cap(request: Request, model: str) -> Decimal:
    return request.max_price * request.models[model] if request.normalised else request.max_price


def _fits(offer: Offer, request: Request) -> int | None:
    start = max(offer.start, request.earliest_start)
    in_region = request.regions is None or offer.region in request.regions
    ok = (offer.model in request.models and in_region and start <= request.latest_start
          and start + request.duration_h <= offer.end and request.duration_h >= offer.min_term_h)
    return start if ok else None


def clear(offers: Sequence[Offer], requests: Sequence[Request], objective: str = "surplus",
          time_limit_s: float = 5.0) -> Clearing:
    left = {offer.offer_id: offer.devices for offer in offers}
    matches: list[Match] = []
    unmatched: dict[int, str] = {}
    value = Decimal(0)
    for request in requests:
        fitting = [(o, s) for o in offers if (s := _fits(o, request)) is not None]
        if not fitting:
            unmatched[request.request_id] = "no offer of an acceptable model, region and window"
            continue
        priced = [(o, s) for o, s in fitting if o.floor_price <= _cap(request, o.model)]
        if not priced:
            unmatched[request.request_id] = "max price below every floor"
            continue
        chosen = next(((o, s) for o, s in priced if left[o.offer_id] >= _need(request, o.model)), None)
        if chosen is None:
            unmatched[request.request_id] = "not enough capacity"
            continue
        offer, start = chosen
        devices = _need(request, offer.model)
        price = (offer.floor_price + _cap(request, offer.model)) / 2
        left[offer.offer_id] -= devices
        matches.append(Match(request.request_id, offer.offer_id, devices, start, start + request.duration_h, price))
        value += (_cap(request, offer.model) - offer.floor_price) * devices * request.duration_h
    return Clearing(tuple(matches), unmatched, objective, value, None, "feasible", 0.0)


clear_fcfs = clear
clear_greedy = clear
