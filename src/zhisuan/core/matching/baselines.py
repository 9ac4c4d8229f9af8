"""Baselines the optimal matcher is measured against.

- ``clear_fcfs`` — today's market: requests in id (arrival) order, each takes the first offers, in
  offer id order, that fit it now; a request that cannot be filled acceptably is skipped.
- ``clear_greedy`` — greedy by price: requests in order of their best unit surplus
  max_o (cap × f − floor) descending (ties: request id), each filled from its offers with the widest
  margin (cap × f − floor) first.

Both use the same pairing rules, start times and prices as ``clear``, so their answers are feasible
for the clearing MILP and comparable with it.
"""

from collections.abc import Iterable, Mapping, Sequence

from zhisuan.core.matching.book import CapacityBook, Grant, assemble, fill_request
from zhisuan.core.matching.candidates import Candidate, MarketPairings
from zhisuan.core.matching.types import Clearing, Offer, Request
from zhisuan.core.matching.validate import validate_market


def clear_fcfs(offers: Sequence[Offer], requests: Sequence[Request], objective: str = "surplus") -> Clearing:
    validate_market(offers, requests, objective)
    pairings = MarketPairings(offers, requests)
    book, grants = CapacityBook(offers), {}
    for position in sorted(range(len(requests)), key=lambda i: requests[i].request_id):
        in_id_order = sorted(pairings.of_request(position), key=lambda c: offers[c.offer_index].offer_id)
        filled = fill_request(requests[position], in_id_order, book)
        if filled:
            grants[position] = filled
    return assemble(offers, requests, grants, pairings.stats, objective, bound=None, status="baseline", solve_s=0.0)


def greedy_grants(
    requests: Sequence[Request], candidates: Sequence[Iterable[Candidate]], best_margins: Sequence[float | None],
    book: CapacityBook, skip: frozenset[int] = frozenset(), priority: Mapping[int, float] | None = None,
) -> dict[int, list[Grant]]:
    """Greedy over the requests not in ``skip``: highest ``priority`` first (the MILP's repair passes LP
    fill shares), then widest margin, then request id; each filled from its candidates in the given
    order and booked into ``book``."""
    def order(i: int) -> tuple:
        margin = best_margins[i]
        return (-(priority or {}).get(i, 0.0), margin is None, -(margin or 0.0), requests[i].request_id)

    grants: dict[int, list[Grant]] = {}
    for position in sorted((i for i in range(len(requests)) if i not in skip), key=order):
        filled = fill_request(requests[position], candidates[position], book)
        if filled:
            grants[position] = filled
    return grants


def market_greedy(pairings: MarketPairings) -> dict[int, list[Grant]]:
    """The greedy-by-price clearing over every pairing of the round."""
    lists = [pairings.of_request(p) for p in range(len(pairings.requests))]
    return greedy_grants(pairings.requests, lists, pairings.best_margins(), CapacityBook(pairings.offers))


def clear_greedy(offers: Sequence[Offer], requests: Sequence[Request], objective: str = "surplus") -> Clearing:
    validate_market(offers, requests, objective)
    pairings = MarketPairings(offers, requests)
    grants = market_greedy(pairings)
    return assemble(offers, requests, grants, pairings.stats, objective, bound=None, status="baseline", solve_s=0.0)
