"""Property tests over random small markets: every clearing keeps the invariants (no over-booking at
any hour, prices inside [floor, cap], gangs whole on one offer, fills inside their bounds, reasons for
exactly the unfilled requests), and the optimum beats both baselines and stays under its bound."""

import time
from decimal import Decimal

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.core.matching.match_helpers import check_clearing

from zhisuan.core.matching import Offer, Request, clear, clear_fcfs, clear_greedy
from zhisuan.core.matching.book import assemble
from zhisuan.core.matching.candidates import MarketPairings
from zhisuan.core.matching.improve import improve
from zhisuan.core.matching.prices import relax, safe_bound
from zhisuan.core.matching.sweep import greedy_order, sweep, sweep_state
from zhisuan.core.matching.table import pair_table

MODELS = {"h800": Decimal(1), "a800": Decimal("0.8"), "ascend910b": Decimal("0.5")}
REGIONS = ("beijing", "guizhou", "gansu")


@st.composite
def offers(draw: st.DrawFn, offer_id: int) -> Offer:
    start = draw(st.integers(0, 40))
    return Offer(offer_id, f"p{offer_id % 3}", f"site-{offer_id}", draw(st.sampled_from(REGIONS)),
                 draw(st.sampled_from(sorted(MODELS))), draw(st.integers(1, 24)), start,
                 start + draw(st.integers(10, 120)), draw(st.integers(1, 30)),
                 Decimal(draw(st.integers(100, 2000))) / 100)


@st.composite
def requests(draw: st.DrawFn, request_id: int) -> Request:
    normalised = draw(st.booleans())
    names = draw(st.lists(st.sampled_from(sorted(MODELS)), min_size=1, max_size=3, unique=True))
    models = {m: MODELS[m] if normalised else Decimal(1) for m in names}
    earliest = draw(st.integers(0, 40))
    gang = draw(st.booleans())
    return Request(request_id, f"t{request_id % 4}", draw(st.integers(1, 30)), normalised, models, earliest,
                   earliest + draw(st.integers(0, 30)), draw(st.integers(1, 60)),
                   Decimal(draw(st.integers(100, 3000))) / 100,
                   draw(st.none() | st.frozensets(st.sampled_from(REGIONS), min_size=1)), gang,
                   not gang and draw(st.booleans()), Decimal(draw(st.integers(1, 10))) / 10)


@st.composite
def markets(draw: st.DrawFn) -> tuple[list[Offer], list[Request]]:
    num_offers, num_requests = draw(st.integers(0, 6)), draw(st.integers(0, 8))
    return ([draw(offers(i)) for i in range(1, num_offers + 1)],
            [draw(requests(i)) for i in range(1, num_requests + 1)])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(markets(), st.sampled_from(["surplus", "pflops_hours"]))
def test_clearings_keep_the_invariants_and_the_optimum_wins(market, objective):
    offer_list, request_list = market
    best = clear(offer_list, request_list, objective, time_limit_s=30.0, max_candidates=None, mip_rel_gap=0.0)
    fcfs = clear_fcfs(offer_list, request_list, objective)
    greedy = clear_greedy(offer_list, request_list, objective)
    for result in (best, fcfs, greedy):
        check_clearing(offer_list, request_list, result)
    assert best.status == "optimal"
    assert best.value >= greedy.value and best.value >= fcfs.value
    assert best.bound is not None and best.value <= best.bound


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(markets(), st.sampled_from(["surplus", "pflops_hours"]))
def test_the_chain_form_of_capacity_gives_the_clique_forms_optimum(market, objective):
    """Every offer in the chain form (usage columns) against every offer in the clique form: same optimum,
    same bound, and the chain form's clearing keeps every invariant (it cannot over-book an hour)."""
    offer_list, request_list = market
    kwargs = {"time_limit_s": 30.0, "max_candidates": None, "mip_rel_gap": 0.0}
    clique = clear(offer_list, request_list, objective, clique_up_to=10_000, **kwargs)
    chain = clear(offer_list, request_list, objective, clique_up_to=0, **kwargs)
    check_clearing(offer_list, request_list, chain)
    assert chain.status == clique.status == "optimal"
    assert chain.value == clique.value
    assert chain.bound is not None and clique.bound is not None
    assert abs(chain.bound - clique.bound) <= Decimal("0.01")  # the LP optimum, up to its rounding to the fen


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(markets(), st.sampled_from(["surplus", "pflops_hours"]), st.integers(0, 60))
def test_the_price_bound_is_never_below_the_exact_optimum(market, objective, steps):
    """The capacity-price path (forced with ``prune_above=-1``) after any number of search steps: its bound
    L(λ) is at least the exact MILP optimum, and its clearing keeps every invariant."""
    offer_list, request_list = market
    exact = clear(offer_list, request_list, objective, time_limit_s=30.0, max_candidates=None, mip_rel_gap=0.0)
    assert exact.status == "optimal"
    priced = clear(offer_list, request_list, objective, time_limit_s=30.0, prune_above=-1, price_steps=steps,
                   mip_rel_gap=0.0)
    check_clearing(offer_list, request_list, priced)
    assert priced.bound is not None and priced.bound >= exact.value
    assert priced.value <= exact.value


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(markets(), st.sampled_from(["surplus", "pflops_hours"]), st.integers(0, 2**32 - 1),
       st.sampled_from([0.0, 0.01, 1.0, 100.0]))
def test_any_capacity_prices_bound_the_exact_optimum(market, objective, seed, scale):
    """L(λ) for arbitrary λ >= 0 (not just what the search finds) is at least the exact optimum."""
    offer_list, request_list = market
    exact = clear(offer_list, request_list, objective, time_limit_s=30.0, max_candidates=None, mip_rel_gap=0.0)
    table = pair_table(MarketPairings(offer_list, request_list), objective)
    prices = np.random.default_rng(seed).exponential(scale, table.num_points) if scale else np.zeros(table.num_points)
    assert safe_bound(relax(table, prices).value) >= exact.value


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(markets(), st.sampled_from(["surplus", "pflops_hours"]))
def test_the_fast_sweep_ingreedy_order_is_the_greedy_baseline(market, objective):
    offer_list, request_list = market
    pairings = MarketPairings(offer_list, request_list)
    table = pair_table(pairings, objective)
    grants = sweep(pairings, table, greedy_order(pairings), np.arange(len(table.request)))
    greedy = clear_greedy(offer_list, request_list, objective)
    assert {(offer_list[c.offer_index].offer_id, request_list[p].request_id, d)
            for p, given in grants.items() for c, d in given} == {
        (m.offer_id, m.request_id, m.devices) for m in greedy.matches}


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(markets(), st.sampled_from(["surplus", "pflops_hours"]), st.integers(0, 2**32 - 1))
def test_local_search_keeps_the_invariants_and_never_loses_value(market, objective, seed):
    """Ejection moves from a sweep in a random request order (so there is something to improve): the
    clearing keeps every invariant and its value never drops."""
    offer_list, request_list = market
    pairings = MarketPairings(offer_list, request_list)
    table = pair_table(pairings, objective)
    order = np.random.default_rng(seed).permutation(len(request_list))
    state = sweep_state(pairings, table, order, np.arange(len(table.request)))

    def clearing():
        return assemble(offer_list, request_list, state.grants(), pairings.stats, objective, bound=None,
                        status="fallback", solve_s=0.0)

    before = clearing()
    improve(state, table.value, np.argsort(order), time.perf_counter() + 0.2)
    after = clearing()
    check_clearing(offer_list, request_list, after)
    assert after.value >= before.value
