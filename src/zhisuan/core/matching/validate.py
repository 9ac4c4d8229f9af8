"""Input checks: every malformed offer or request is refused with the offending field named."""

from collections.abc import Sequence
from decimal import Decimal

from zhisuan.core.matching.types import OBJECTIVES, MatchingInputError, Offer, Request


def _check(ok: bool, message: str, where: str, field: str) -> None:
    """Raise for ``where.field`` unless ``ok`` (the name is joined only on failure: ~10^5 checks a round)."""
    if not ok:
        raise MatchingInputError(message, f"{where}.{field}" if where else field)


def validate_offer(offer: Offer) -> None:
    where = f"offer[{offer.offer_id}]"
    _check(offer.devices > 0, "must be at least one device", where, "devices")
    _check(offer.end > offer.start, "the window must end after it starts", where, "end")
    _check(offer.min_term_h > 0, "must be at least one hour", where, "min_term_h")
    _check(isinstance(offer.floor_price, Decimal) and offer.floor_price >= 0, "must be a Decimal >= 0",
           where, "floor_price")


def validate_request(request: Request) -> None:
    where = f"request[{request.request_id}]"
    _check(request.devices > 0, "must be at least one device", where, "devices")
    _check(request.duration_h > 0, "must be at least one hour", where, "duration_h")
    _check(request.latest_start >= request.earliest_start, "must not precede earliest_start",
           where, "latest_start")
    _check(isinstance(request.max_price, Decimal) and request.max_price >= 0, "must be a Decimal >= 0",
           where, "max_price")
    _check(bool(request.models), "name at least one acceptable model", where, "models")
    for model, factor in request.models.items():
        _check(isinstance(factor, Decimal) and factor > 0, "throughput factors must be Decimals > 0",
               where, f"models[{model}]")
        _check(request.normalised or factor == 1, "factors are 1 unless the request is normalised",
               where, f"models[{model}]")
    _check(Decimal(0) < request.min_fill <= 1, "must be in (0, 1]", where, "min_fill")


def validate_market(offers: Sequence[Offer], requests: Sequence[Request], objective: str = "surplus") -> None:
    """Refuse the whole round on the first bad input (duplicate ids included)."""
    _check(objective in OBJECTIVES, f"must be one of {', '.join(OBJECTIVES)}", "", "objective")
    seen_offers: set[int] = set()
    for offer in offers:
        validate_offer(offer)
        _check(offer.offer_id not in seen_offers, "duplicate offer id", f"offer[{offer.offer_id}]", "offer_id")
        seen_offers.add(offer.offer_id)
    seen_requests: set[int] = set()
    for request in requests:
        validate_request(request)
        _check(request.request_id not in seen_requests, "duplicate request id", f"request[{request.request_id}]",
               "request_id")
        seen_requests.add(request.request_id)
