"""The market's clearing vocabulary: offers, requests, matches and a clearing round's outcome.

Times are whole hours since an epoch the caller chooses (the market time scale is hours to years);
money is ``Decimal`` CNY. Throughput factors say how much work one device of a model does relative to
one H100 (1.0 = H100); a normalised request counts H100-equivalents, so ``factor × devices`` is what
a device grant delivers towards it.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

OBJECTIVES = ("surplus", "pflops_hours")

# Why a request was left unmatched; stable strings the exchange shows to the tenant.
REASON_NO_CAPACITY = "no capacity of that kind in the window"
REASON_TOO_LITTLE_CAPACITY = "too little capacity of that kind in the window"
REASON_CAP_BELOW_FLOORS = "price cap below every floor"
REASON_GANG_TOO_LARGE = "gang too large for any one site"
REASON_OUTBID = "lost to better bids"


class MatchingInputError(ValueError):
    """Bad input to the matcher; ``field`` names the offending input (e.g. ``request[7].latest_start``)."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Offer:
    """Supply: ``devices`` of one ``model`` at ``site`` for lease within the window [start, end)."""

    offer_id: int
    provider: str
    site: str
    region: str
    model: str
    devices: int
    start: int
    end: int
    min_term_h: int
    floor_price: Decimal  # CNY per device-hour
    network_domain: str | None = None


@dataclass(frozen=True)
class Request:
    """Demand: ``devices`` (H100-equivalents when ``normalised``) for ``duration_h`` hours, starting in
    [earliest_start, latest_start], at most ``max_price`` per H100-equivalent-hour (per device-hour when
    not normalised)."""

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
    """``devices`` of offer ``offer_id`` leased to request ``request_id`` over [start, end) at ``price``
    CNY per device-hour."""

    request_id: int
    offer_id: int
    devices: int
    start: int
    end: int
    price: Decimal


@dataclass(frozen=True)
class Clearing:
    """One clearing round's decision. ``value`` is the objective achieved (CNY of surplus, or
    H100-equivalent-hours for ``pflops_hours``); ``bound`` an upper bound on the best value any clearing
    of the round could reach (the LP relaxation over every pairing, or L(λ) at capacity prices —
    ``solve.py``); None for the baselines."""

    matches: tuple[Match, ...]
    unmatched: Mapping[int, str]
    objective: str
    value: Decimal
    bound: Decimal | None
    status: str
    solve_s: float

    def devices_of(self, request_id: int) -> int:
        return sum(m.devices for m in self.matches if m.request_id == request_id)
