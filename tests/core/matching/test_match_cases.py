"""Small markets with known optimal answers, the reasons given for unmatched requests, the price rule
and refused input."""

import random
from decimal import Decimal

import numpy as np
import pytest
from tests.core.matching.match_helpers import check_clearing, offer, request

from zhisuan.core.matching import (
    REASON_CAP_BELOW_FLOORS,
    REASON_GANG_TOO_LARGE,
    REASON_NO_CAPACITY,
    REASON_OUTBID,
    REASON_TOO_LITTLE_CAPACITY,
    MatchingInputError,
    clear,
    clear_fcfs,
    clear_greedy,
    clearing_price,
)
from zhisuan.core.matching.candidates import MarketPairings, market_candidates
from zhisuan.core.matching.model import build_model
from zhisuan.core.matching.solve import round_and_repair

ASCEND = {"h800": Decimal(1), "ascend910b": Decimal("0.5")}


def placed(result) -> dict[int, list[tuple[int, int]]]:
    out: dict[int, list[tuple[int, int]]] = {}
    for m in result.matches:
        out.setdefault(m.request_id, []).append((m.offer_id, m.devices))
    return out


def test_fcfs_gives_the_gangs_site_to_small_requests_and_the_optimum_fits_both():
    offers = [offer(1, 64, floor="10"), offer(2, 16, floor="12")]
    requests = [request(1, 8), request(2, 8), request(3, 64, gang=True)]
    fcfs, best = clear_fcfs(offers, requests), clear(offers, requests)
    assert placed(fcfs) == {1: [(1, 8)], 2: [(1, 8)]} and fcfs.unmatched == {3: REASON_OUTBID}
    assert placed(best) == {1: [(2, 8)], 2: [(2, 8)], 3: [(1, 64)]} and best.unmatched == {}
    # surplus = Σ (cap − floor) × devices × hours = (20−12)·16·100 + (20−10)·64·100
    assert best.value == Decimal(76800) and best.status == "optimal" and best.bound == Decimal(76800)
    for result in (fcfs, best):
        check_clearing(offers, requests, result)


@pytest.mark.parametrize(
    ("offers", "requests", "expected", "value"),
    [
        pytest.param(  # substitution by normalised throughput: 64 H100-eq = 128 Ascend at factor 0.5
            [offer(1, 128, model="ascend910b", floor="4")], [request(1, 64, models=ASCEND, cap="20")],
            {1: [(1, 128)]}, Decimal((10 - 4) * 128 * 100), id="substitution"),
        pytest.param(  # the wider margin wins the only offer both can use
            [offer(1, 8)], [request(1, 8, cap="15"), request(2, 8, cap="30")],
            {2: [(1, 8)]}, Decimal((30 - 10) * 8 * 100), id="higher-cap-wins"),
        pytest.param(  # the same devices serve two leases one after the other
            [offer(1, 8)], [request(1, 8), request(2, 8, earliest=100, latest=100)],
            {1: [(1, 8)], 2: [(1, 8)]}, Decimal(2 * 10 * 8 * 100), id="back-to-back"),
        pytest.param(  # partial fill: 10 of 16 devices clears min_fill 0.5
            [offer(1, 10)], [request(1, 16, partial=True, min_fill="0.5")],
            {1: [(1, 10)]}, Decimal(10 * 10 * 100), id="partial"),
        pytest.param(  # a divisible request spans two offers
            [offer(1, 6), offer(2, 6, floor="11")], [request(1, 10)],
            {1: [(1, 6), (2, 4)]}, Decimal(10 * 6 * 100 + 9 * 4 * 100), id="split"),
        pytest.param(  # the lease starts at the offer's start inside the request's window
            [offer(1, 8, start=50)], [request(1, 8, earliest=0, latest=60)],
            {1: [(1, 8)]}, Decimal(10 * 8 * 100), id="start-in-window"),
    ],
)
def test_known_optimum(offers, requests, expected, value):
    result = clear(offers, requests)
    assert placed(result) == expected
    assert result.value == value == result.bound
    check_clearing(offers, requests, result)


def test_pflops_hours_objective_prefers_throughput_over_margin():
    offers = [offer(1, 8, floor="10")]
    requests = [request(1, 8, cap="40", hours=10), request(2, 8, cap="11", hours=100)]
    assert placed(clear(offers, requests, objective="surplus")) == {1: [(1, 8)]}
    by_hours = clear(offers, requests, objective="pflops_hours")
    assert placed(by_hours) == {2: [(1, 8)]} and by_hours.value == Decimal(800)


@pytest.mark.parametrize(
    ("offers", "req", "reason"),
    [
        ([offer(1, 8, model="a100")], request(1, 8), REASON_NO_CAPACITY),
        ([offer(1, 8, start=10)], request(1, 8, latest=5), REASON_NO_CAPACITY),
        ([offer(1, 8, end=50)], request(1, 8), REASON_NO_CAPACITY),
        ([offer(1, 8, min_term=200)], request(1, 8), REASON_NO_CAPACITY),
        ([offer(1, 8, region="gansu")], request(1, 8, regions=frozenset({"beijing"})), REASON_NO_CAPACITY),
        ([offer(1, 8, floor="25"), offer(2, 8, floor="21")], request(1, 8, cap="20"), REASON_CAP_BELOW_FLOORS),
        ([offer(1, 32), offer(2, 32)], request(1, 64, gang=True), REASON_GANG_TOO_LARGE),
        ([offer(1, 4), offer(2, 2)], request(1, 8), REASON_TOO_LITTLE_CAPACITY),
        ([offer(1, 4)], request(1, 16, partial=True, min_fill="0.5"), REASON_TOO_LITTLE_CAPACITY),
    ],
)
def test_why_unmatched(offers, req, reason):
    for clearing in (clear, clear_fcfs, clear_greedy):
        assert clearing(offers, [req]).unmatched == {1: reason}


def test_outbid_request_is_told_so():
    result = clear([offer(1, 8)], [request(1, 8, cap="15"), request(2, 8, cap="30")])
    assert result.unmatched == {1: REASON_OUTBID}


@pytest.mark.parametrize(
    ("floor", "cap", "factor", "price"),
    [
        ("10", "20", "1", "15.00"),
        ("10", "20", "0.5", "10.00"),  # cap per device 10 = floor
        ("10.01", "10.02", "1", "10.02"),  # midpoint 10.015 rounds half up, still <= cap
        ("10.00", "10.05", "1", "10.03"),  # 10.025 rounds half up (half-even would give 10.02)
        ("10.001", "10.002", "1", "10.001"),  # sub-fen inputs: the rounded midpoint 10.00 is held at the floor
        ("0", "0", "1", "0.00"),
    ],
)
def test_clearing_price_is_the_midpoint_held_between_floor_and_cap(floor, cap, factor, price):
    got = clearing_price(offer(1, 8, floor=floor), request(1, 8, cap=cap), Decimal(factor))
    assert got == Decimal(price)
    assert Decimal(floor) <= got <= Decimal(cap) * Decimal(factor)


@pytest.mark.parametrize(
    ("offers", "requests", "field"),
    [
        ([offer(1, 0)], [], "offer[1].devices"),
        ([offer(1, 8, start=10, end=10)], [], "offer[1].end"),
        ([offer(1, 8, floor="-1")], [], "offer[1].floor_price"),
        ([offer(1, 8), offer(1, 8)], [], "offer[1].offer_id"),
        ([], [request(1, 8, earliest=10, latest=5)], "request[1].latest_start"),
        ([], [request(1, 8, cap="-1")], "request[1].max_price"),
        ([], [request(1, 8, hours=0)], "request[1].duration_h"),
        ([], [request(1, 8, partial=True, min_fill="0")], "request[1].min_fill"),
        ([], [request(1, 8, models={"h800": Decimal(0)})], "request[1].models[h800]"),
        ([], [request(1, 8), request(1, 4)], "request[1].request_id"),
    ],
)
def test_bad_input_names_the_field(offers, requests, field):
    for clearing in (clear, clear_fcfs, clear_greedy):
        with pytest.raises(MatchingInputError) as caught:
            clearing(offers, requests)
        assert caught.value.field == field


def test_unknown_objective_is_refused():
    with pytest.raises(MatchingInputError, match="objective"):
        clear([], [], objective="revenue")


def test_empty_market_clears_nothing():
    result = clear([], [request(1, 8)])
    assert result.matches == () and result.unmatched == {1: REASON_NO_CAPACITY} and result.value == 0


def test_same_input_same_clearing():
    offers = [offer(i, 8 * (i % 3 + 1), floor=str(8 + i % 5)) for i in range(1, 9)]
    requests = [request(i, 4 + i % 9, cap=str(12 + i % 7), earliest=i % 4, latest=i % 4 + 20, partial=i % 2 == 0,
                        min_fill="0.5") for i in range(1, 15)]
    first, second = clear(offers, requests), clear(offers, requests)
    assert (first.matches, first.unmatched, first.value, first.bound) == (
        second.matches, second.unmatched, second.value, second.bound)


def random_market(seed: int, num_offers: int, num_requests: int):
    rng = random.Random(seed)
    offers = [offer(i, rng.choice([8, 16, 32, 64]), floor=str(rng.randint(5, 15)), start=rng.randint(0, 50))
              for i in range(1, num_offers + 1)]
    requests = [request(i, rng.choice([1, 2, 4, 8, 16, 32, 64]), cap=str(rng.randint(8, 25)),
                        earliest=rng.randint(0, 40), latest=rng.randint(40, 80), hours=rng.randint(10, 200),
                        gang=rng.random() < 0.3, partial=rng.random() < 0.3, min_fill="0.5")
                for i in range(1, num_requests + 1)]
    return offers, requests


def test_without_a_time_budget_a_sweep_decides_and_the_bound_is_still_valid():
    """No time for HiGHS nor the price search: a sweep (greedy, or guided by the zero prices) decides, and
    the bound is L(0) — every request's best pairing as if it were alone — still a bound on the round."""
    offers, requests = random_market(7, 60, 400)
    result = clear(offers, requests, time_limit_s=0.0, max_candidates=None)
    assert result.status == "fallback" and result.bound is not None
    assert result.value >= clear_greedy(offers, requests).value
    exact = clear(offers, requests, time_limit_s=60.0, max_candidates=None)
    assert result.bound >= exact.value
    check_clearing(offers, requests, result)


def test_round_down_keeps_what_still_fits_and_repair_fills_the_rest():
    offers = [offer(1, 64, floor="10"), offer(2, 16, floor="12")]
    requests = [request(1, 8), request(2, 8), request(3, 64, gang=True)]
    per_request, _ = market_candidates(offers, requests, limit=None)
    model = build_model(offers, requests, per_request, "surplus")
    lp_values = np.zeros(model.num_cols)
    for column, candidate in enumerate(model.candidates):
        if (candidate.request_index, candidate.offer_index) == (0, 0):
            lp_values[column] = 8.0  # request 1 whole on offer 1: kept
        if (candidate.request_index, candidate.offer_index) == (1, 0):
            lp_values[column] = 7.5  # request 2 rounds down to 7 < 8: dropped, then repaired
        if (candidate.request_index, candidate.offer_index) == (2, 0):
            lp_values[column] = 0.75  # the gang's z rounds down to 0: dropped; 56 free < 64, stays out
    grants = round_and_repair(offers, requests, model, lp_values, per_request)
    assert {p: [(c.offer_index, d) for c, d in g] for p, g in grants.items()} == {0: [(0, 8)], 1: [(0, 8)]}


def test_pruning_keeps_each_offers_best_bidders_reachable():
    # Both requests rank offer 1 (the cheapest floor) first; with one candidate each, offers 2 and 3
    # would be unreachable. The offer-side lists keep each offer's best bidder; ``always`` keeps named pairs.
    offers = [offer(1, 8, floor="10"), offer(2, 8, floor="12"), offer(3, 8, floor="13")]
    requests = [request(1, 8, cap="30"), request(2, 8, cap="20")]
    pairings = MarketPairings(offers, requests)

    def pairs(per_request):
        return {(c.request_index, c.offer_index) for found in per_request for c in found}

    assert pairs(pairings.pruned(1)) == {(0, 0), (1, 0)}
    assert pairs(pairings.pruned(1, 1)) == {(0, 0), (1, 0), (0, 1), (0, 2)}
    assert pairs(pairings.pruned(1, always=frozenset({(1, 2)}))) == {(0, 0), (1, 0), (1, 2)}
    assert len(pairs(pairings.pruned(None))) == 6


def test_clear_never_loses_to_greedy_even_when_pruned_hard():
    offers, requests = random_market(3, 40, 150)
    pruned = clear(offers, requests, max_candidates=1, offer_candidates=None, prune_above=0, mip_rel_gap=0.0)
    assert pruned.value >= clear_greedy(offers, requests).value
    check_clearing(offers, requests, pruned)


def test_an_lp_optimum_just_under_a_sub_fen_value_is_not_snapped_below_it() -> None:
    """The bound is a fen ceiling unless the LP value is float noise away from a whole fen: a value of
    2,000.592 read back as 2,000.5919999 must bound at 2,000.60, never 2,000.59 (below the value)."""
    from zhisuan.core.matching.solve import _round_up

    assert _round_up(2000.5919999) == Decimal("2000.60")
    assert _round_up(76800.0) == Decimal("76800.00")
    assert _round_up(76799.99999999999) == Decimal("76800.00")
    assert _round_up(1234.5600000000002) == Decimal("1234.56")
