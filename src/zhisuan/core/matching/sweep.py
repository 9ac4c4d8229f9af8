"""A greedy pass over the pairing table in a given order, fast enough to run several times a round.

``sweep(pairings, table, request_order, pair_rank)`` visits the requests in ``request_order``; each
tries its pairings in ascending ``pair_rank`` and is filled exactly as ``book.fill_request`` fills one
(gang: the first offer with room for all of it; divisible: each pairing gives what is free up to the
amount, kept only when the lower fill bound is reached). Capacity is an hourly usage array per offer.
Only the pairings a request tries are turned into ``Candidate`` objects; the fill arithmetic is exact
(``Decimal`` factors, integers otherwise), so every grant is feasible for the round.
"""

from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

import numpy as np

from zhisuan.core.matching.book import Grant
from zhisuan.core.matching.candidates import MarketPairings, fill_bounds
from zhisuan.core.matching.table import PairTable


def sweep(pairings: MarketPairings, table: PairTable, request_order: np.ndarray,
          pair_rank: np.ndarray) -> dict[int, list[Grant]]:
    offers, requests = pairings.offers, pairings.requests
    order = np.lexsort((np.arange(len(pair_rank)), pair_rank, table.request))  # by request, then rank
    bounds = pairings.bounds.tolist()
    pair_of = order.tolist()
    offer_of, start_of, end_of = table.offer.tolist(), table.start.tolist(), table.end.tolist()
    most_of = table.most.astype(np.int64).tolist()
    model_of = pairings.models.tolist()
    opens = [o.start for o in offers]
    capacity = [o.devices for o in offers]
    usage: list[np.ndarray | None] = [None] * len(offers)

    def free(o: int, s: int, e: int) -> int:
        used = usage[o]
        return capacity[o] if used is None else capacity[o] - int(used[s - opens[o]:e - opens[o]].max())

    grants: dict[int, list[Grant]] = {}
    for position in request_order.tolist():
        request = requests[position]
        tried = pair_of[bounds[position]:bounds[position + 1]]
        chosen: list[tuple[int, int]] = []
        if request.gang:
            for pair in tried:
                if free(offer_of[pair], start_of[pair], end_of[pair]) >= most_of[pair]:
                    chosen = [(pair, most_of[pair])]
                    break
        else:
            factors = {code: request.models[name] for code, name in enumerate(pairings.names) if name in request.models}
            chosen = _divisible(request, tried, factors, model_of, free, offer_of, start_of, end_of, most_of)
        if not chosen:
            continue
        given = []
        for pair, devices in chosen:
            o = offer_of[pair]
            if usage[o] is None:
                usage[o] = np.zeros(offers[o].end - opens[o], dtype=np.int64)
            usage[o][start_of[pair] - opens[o]:end_of[pair] - opens[o]] += devices
            candidate = pairings.candidate(pair)
            assert candidate is not None and candidate.max_devices >= devices
            given.append((candidate, devices))
        grants[position] = given
    return grants


def greedy_order(pairings: MarketPairings) -> np.ndarray:
    """``clear_greedy``'s request order: widest best margin first (none last), then request id."""
    margins = pairings.best_margins()
    widest = np.array([np.inf if m is None else -m for m in margins])
    return np.lexsort((np.array([r.request_id for r in pairings.requests]), widest))


def _divisible(request, tried, factors, model_of, free, offer_of, start_of, end_of, most_of) -> list[tuple[int, int]]:
    bounds, amount = fill_bounds(request), Decimal(request.devices)
    chosen, delivered = [], Decimal(0)
    for pair in tried:
        if delivered >= amount:
            break
        room = min(free(offer_of[pair], start_of[pair], end_of[pair]), most_of[pair])
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
