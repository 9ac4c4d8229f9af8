"""``clear``: one clearing round — exact MILP with HiGHS when it is small, capacity prices when it is not.

1. Every feasible pairing (``candidates.py``) goes into a flat table (``table.py``); the greedy-by-price
   clearing is computed by a fast sweep over it (``sweep.py``) — ``clear`` never returns less.
2. Small rounds (at most ``prune_above`` pairings): the MILP over every pairing (``model.py``). Its LP
   relaxation is the ``bound`` (rounded up to the fen, lowered to HiGHS's MIP dual bound when branch
   and bound proves a tighter one); round-and-repair of the LP and the greedy clearing warm-start the
   MILP, which runs within what is left of ``time_limit_s``.
3. Larger rounds, or a small one whose LP did not finish: capacity prices (``prices.py``). A projected
   subgradient search for prices λ on (offer, lease start) points runs until ``PRICE_SHARE`` of the
   budget — earlier when a price-guided sweep (timed as long as the greedy one) would not fit after
   it — but for at least ``MIN_SEARCH_SHARE`` of it (L(0) is a poor bound), or ``price_steps`` steps;
   when the fixed steps left less than that, one round of ``MIN_ROUND_STEPS`` steps (prices.py).
   L(λ), evaluated over EVERY pairing of the round, is the ``bound`` — valid for the round itself
   whatever λ the search reached. Then price-guided sweeps, each only when it fits in the time left:
   requests by their profit at those prices (π_r, best first), each trying its offers by reduced
   value (W_c − Λ_c) / f_c, then the same request order with offers by margin; the best of them and
   the greedy sweep is kept.
4. Local search (``improve.py``) on that sweep: a left-out request takes one of its best pairings by
   ejecting the least valuable overlapping leases, which refill elsewhere; kept only when the round's
   value rises. It gets up to ``LOCAL_SEARCH_SHARE`` of the budget (all the time left when less than
   ``POLISH_MIN_S`` would remain after it, or when the round has more than ``POLISH_UP_TO`` pairings
   and gets no polish); it also stops when its moves stall. At 60 s the MILP polish
   gains more than local search (1,000 × 200: 92.8% vs 90.8% of the bound when local search took half).
5. Then the MILP over a pruned candidate model polishes that clearing: a pairing is kept when it is
   among the request's ``max_candidates`` widest margins cap × f − floor (ties: lower offer id), among
   the offer's ``offer_candidates`` widest margins (ties: lower request id), or used by the clearing so
   far (its warm start). Its incumbent replaces the clearing only when better; its own bounds are NOT
   used (they bound the pruned model only).

``time_limit_s`` is wall time from the call (``time.perf_counter``): every step after the greedy sweep
is planned to end by it, keeping ``ASSEMBLE_SHARE`` of a sweep's time for assembling the matches. What
can still overrun it: building the pairings, the table and the greedy sweep (they always run: the
result is never below greedy) and the search's minimum share; benchmarks/market measures the whole
call. ``time_limit_s=0``: the greedy sweep decides and the bound is L(0).
Status: "optimal" when the value is within ``mip_rel_gap`` of the bound; "time_limit" when a MILP's
incumbent was kept without that proof; "fallback" when a sweep (price-guided or greedy) decides.
Deterministic for the same input up to the time limit (the search and HiGHS stop on the clock).
"""

import time
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal

import highspy
import numpy as np

from zhisuan.core.matching.baselines import greedy_grants
from zhisuan.core.matching.book import CapacityBook, Grant, assemble, grant_value
from zhisuan.core.matching.candidates import MarketPairings, fill_bounds
from zhisuan.core.matching.improve import improve
from zhisuan.core.matching.model import CLIQUE_UP_TO, ClearingModel, build_model, grants_to_columns
from zhisuan.core.matching.prices import safe_bound, search_prices
from zhisuan.core.matching.sweep import Sweeper, greedy_order, sweep_columns, sweep_state
from zhisuan.core.matching.table import PairTable, pair_table
from zhisuan.core.matching.types import Clearing, Offer, Request
from zhisuan.core.matching.validate import validate_market

ROUNDING_EPS = 1e-6  # LP values within this of an integer count as that integer
SNAP_REL = 1e-9  # an LP optimum this close (relative) to a whole fen is that fen
PRICE_SHARE = 0.5  # the search ends this share of the budget after the call began …
MIN_SEARCH_SHARE = 0.05  # … but runs at least this share of it, even when the steps before it overran
GUIDED_SWEEPS = 1.5  # sweeps' time the search leaves for the price-guided sweeps after it
ASSEMBLE_SHARE = 1.0  # of a sweep's time, kept for what follows the search: grants, the never-below-greedy
#   check and assembling took 0.2–0.4 s at 10,000 × 2,000 on a quiet machine, about one sweep (0.3 overran 5 s)
LOCAL_SEARCH_SHARE = 0.2  # of the budget, at most, for local search; the MILP polish gets the rest
PRICE_STEPS = 1000
NEAR_TIE_REL = 1e-9  # float worths closer than this (relative) are compared exactly
SEARCH_ROUNDS = 5  # working-set rounds of the price search (prices.py) when there is time for them
WORKING_PER_REQUEST = 6  # each request's widest-margin pairings the search starts from
POLISH_MIN_S = 1.0
POLISH_UP_TO = 100_000  # pairings; above it local search gets all the time left, no MILP polish (a choice, not a
# measurement: at 10,000 × 2,000, 539 k pairings, the pruned model would hold ~50 k columns for a second or two)


def clear(
    offers: Sequence[Offer],
    requests: Sequence[Request],
    objective: str = "surplus",
    time_limit_s: float = 5.0,
    *,
    max_candidates: int | None = 4,
    offer_candidates: int | None = 6,
    prune_above: int = 5_000,
    mip_rel_gap: float = 1e-3,
    clique_up_to: int = CLIQUE_UP_TO,
    price_steps: int = PRICE_STEPS,
) -> Clearing:
    """Maximise ``objective`` over one clearing round; see the module docstring for the method."""
    began = time.perf_counter()
    deadline = began + max(time_limit_s, 0.0)
    validate_market(offers, requests, objective)
    pairings = MarketPairings(offers, requests)
    if len(pairings.position) == 0:  # nothing can pair: the empty clearing is optimal and the bound is zero
        return assemble(offers, requests, {}, pairings.stats, objective, bound=Decimal(0), status="optimal",
                        solve_s=time.perf_counter() - began)
    table = pair_table(pairings, objective)
    columns = sweep_columns(pairings, table)
    swept = time.perf_counter()
    greedy = sweep_state(pairings, table, greedy_order(pairings), np.arange(len(table.request)), columns=columns)
    sweep_s = time.perf_counter() - swept
    if len(pairings.position) <= prune_above:
        exact = _exact(offers, requests, pairings, greedy.grants(), objective, deadline, mip_rel_gap, clique_up_to)
        if exact is not None:
            grants, bound, status = exact
            return assemble(offers, requests, grants, pairings.stats, objective, bound=bound, status=status,
                            solve_s=time.perf_counter() - began)
    plan = _Plan(began, max(time_limit_s, 0.0), sweep_s)
    grants, bound, status = _by_prices(offers, requests, pairings, table, greedy, objective, plan, price_steps,
                                       (max_candidates, offer_candidates, mip_rel_gap, clique_up_to))
    return assemble(offers, requests, grants, pairings.stats, objective, bound=bound, status=status,
                    solve_s=time.perf_counter() - began)


@dataclass(frozen=True)
class _Plan:
    """The time plan of a large round: every step after the greedy sweep fits in ``budget`` seconds from
    ``began``, leaving ``ASSEMBLE_SHARE`` of a sweep's time (``sweep_s``, as the greedy one took) for
    turning grants into matches."""

    began: float
    budget: float
    sweep_s: float

    @property
    def finish(self) -> float:
        return self.began + self.budget - ASSEMBLE_SHARE * self.sweep_s

    def search_end(self) -> float:
        """The search stops at ``PRICE_SHARE`` of the budget, earlier when a guided sweep would not fit
        after it, but runs ``MIN_SEARCH_SHARE`` of the budget in any case (L(0) is a poor bound)."""
        planned = min(self.began + PRICE_SHARE * self.budget, self.finish - GUIDED_SWEEPS * self.sweep_s)
        return max(planned, time.perf_counter() + MIN_SEARCH_SHARE * self.budget)

    def search_rounds(self) -> int:
        """Rounds of the search (each runs ``MIN_ROUND_STEPS`` steps once it starts): one when the fixed
        steps already used the budget up to the search's minimum share, so a late round costs one
        round's steps and no more (at 10,000 × 2,000 under load five late rounds took seconds)."""
        return 1 if time.perf_counter() + MIN_SEARCH_SHARE * self.budget >= self.finish else SEARCH_ROUNDS


def _by_prices(offers, requests, pairings: MarketPairings, table: PairTable, greedy: Sweeper, objective: str,
               plan: _Plan, price_steps: int, polish_options: tuple):
    """Steps 3–5 of the module docstring: (grants, bound, status)."""
    working = np.flatnonzero(np.arange(len(table.request)) - pairings.bounds[table.request] < WORKING_PER_REQUEST)
    search = search_prices(table, greedy.worth(table.value), working, iterations=price_steps,
                           deadline=plan.search_end(), rounds=plan.search_rounds())
    bound = _round_up(safe_bound(search.bound))
    order = _guided_order(pairings, search.relaxed.profit)
    best = greedy
    for rank in (_guided_rank(table, search), np.arange(len(table.request))):
        if time.perf_counter() + plan.sweep_s > plan.finish:  # a sweep cut short is worse than none
            break
        guided = sweep_state(pairings, table, order, rank, deadline=plan.finish, columns=greedy.cols)
        if guided.worth(table.value) > best.worth(table.value):
            best = guided
    priority = np.empty(len(order), dtype=np.int64)
    priority[order] = np.arange(len(order))
    polish = len(table.request) <= POLISH_UP_TO
    searched_until = min(plan.finish, time.perf_counter() + LOCAL_SEARCH_SHARE * plan.budget)
    if not polish or plan.finish - searched_until < POLISH_MIN_S:  # no MILP polish: local search takes it all
        searched_until = plan.finish
    improve(best, table.value, priority, searched_until)
    grants = best.grants()
    best_worth, greedy_worth = best.worth(table.value), greedy.worth(table.value)
    if best is not greedy and best_worth - greedy_worth <= NEAR_TIE_REL * abs(greedy_worth):
        # float worth may misorder near-ties: decide those exactly (Decimal), never below greedy; a clear
        # float lead skips the two exact sums (0.1–0.2 s at 10,000 × 2,000)
        greedy_grants_ = greedy.grants()
        if _value(offers, requests, greedy_grants_, objective) > _value(offers, requests, grants, objective):
            grants = greedy_grants_
    status = "fallback"
    if polish and plan.finish - time.perf_counter() >= POLISH_MIN_S:
        status, grants = _polish(offers, requests, pairings, grants, objective, plan.finish, *polish_options)
    if bound - _value(offers, requests, grants, objective) <= Decimal(repr(polish_options[2])) * bound:
        status = "optimal"
    return grants, bound, status


def _guided_order(pairings: MarketPairings, profit: np.ndarray) -> np.ndarray:
    """Requests by profit at the prices (best first), then as greedy orders them."""
    margins = pairings.best_margins()
    widest = np.array([np.inf if m is None else -m for m in margins])
    return np.lexsort((np.array([r.request_id for r in pairings.requests]), widest, -profit))


def _guided_rank(table: PairTable, search) -> np.ndarray:
    """Each request's pairings by reduced value per H100-equivalent at the prices, best first."""
    return -search.relaxed.reduced / table.factor


def _exact(offers, requests, pairings: MarketPairings, greedy, objective: str, deadline: float,
           mip_rel_gap: float, clique_up_to: int):
    """The MILP over every pairing: (grants, bound, status), or None when its LP did not finish in time."""
    per_request = pairings.pruned(None)
    model = build_model(offers, requests, per_request, objective, clique_up_to)
    lp = highs_solver(model, max(deadline - time.perf_counter(), 0.0), mip_rel_gap)
    lp.run()
    if lp.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        return None
    bound = _round_up(lp.getInfo().objective_function_value)
    rounded = round_and_repair(offers, requests, model, np.array(lp.getSolution().col_value), per_request)
    fallback = max((rounded, _in_model(model, greedy)), key=lambda g: _value(offers, requests, g, objective))
    mip = _run_mip(model, fallback, max(deadline - time.perf_counter(), 0.05), mip_rel_gap)
    status, grants = _pick(offers, requests, model, mip, fallback, objective)
    proven = mip.getInfo().mip_dual_bound
    if np.isfinite(proven):  # branch and bound (cuts included) may prove a tighter bound than the LP
        bound = min(bound, _round_up(proven))
    return grants, bound, status


def _polish(offers, requests, pairings: MarketPairings, best, objective: str, deadline: float,
            max_candidates, offer_candidates, mip_rel_gap: float, clique_up_to: int):
    """The MILP over the pruned model warm-started from ``best``: (status, grants) — ``best`` unless its
    incumbent is better."""
    used = frozenset((p, c.offer_index) for p, given in best.items() for c, _ in given)
    per_request = pairings.pruned(max_candidates, offer_candidates, always=used)
    model = build_model(offers, requests, per_request, objective, clique_up_to)
    best = _in_model(model, best)
    mip = _run_mip(model, best, max(deadline - time.perf_counter(), 0.05), mip_rel_gap)
    status, grants = _pick(offers, requests, model, mip, best, objective)
    if status == "fallback" or _value(offers, requests, grants, objective) <= _value(offers, requests, best, objective):
        return "fallback", best  # the warm start came back: a sweep still decides
    return "time_limit", grants


def _run_mip(model: ClearingModel, start_grants, seconds: float, mip_rel_gap: float) -> highspy.Highs:
    mip = highs_solver(model, seconds, mip_rel_gap)
    mip.changeColsIntegrality(len(model.integer_columns), model.integer_columns,
                              np.full(len(model.integer_columns), highspy.HighsVarType.kInteger))
    start = highspy.HighsSolution()
    start.col_value = grants_to_columns(model, start_grants).tolist()
    mip.setSolution(start)
    mip.run()
    return mip


def _in_model(model: ClearingModel, grants: dict[int, list[Grant]]) -> dict[int, list[Grant]]:
    """The same grants expressed with the model's own candidates (greedy ran on its own copies)."""
    column = {(c.request_index, c.offer_index): c for c in model.candidates}
    return {p: [(column[(c.request_index, c.offer_index)], d) for c, d in given] for p, given in grants.items()}


def _value(offers, requests, grants: dict[int, list[Grant]], objective: str) -> Decimal:
    return sum((grant_value(requests[p], offers[c.offer_index], c, d, objective)
                for p, given in grants.items() for c, d in given), Decimal(0))


def highs_solver(model: ClearingModel, time_limit_s: float, mip_rel_gap: float) -> highspy.Highs:
    """A HiGHS instance loaded with ``model`` (maximise; quiet, seeded, time- and gap-limited)."""
    solver = highspy.Highs()
    for option, setting in (("output_flag", False), ("time_limit", float(time_limit_s)),
                            ("mip_rel_gap", mip_rel_gap), ("random_seed", 0)):
        solver.setOptionValue(option, setting)
    empty = np.zeros(0, dtype=np.int32)
    solver.addCols(model.num_cols, model.costs, model.lower, model.upper, 0, empty, empty, np.zeros(0))
    row_lo, row_hi, starts, index, value = model.rows
    solver.addRows(len(row_lo), row_lo, row_hi, len(index), starts, index, value)
    solver.changeObjectiveSense(highspy.ObjSense.kMaximize)
    return solver


def _round_up(value: float) -> Decimal:
    """An LP optimum as a Decimal bound: snapped to the nearest fen when within float noise of it
    (``SNAP_REL`` × |value|: an LP optimum that is a whole number of fen stays exact), otherwise rounded
    up to the fen. Values are not whole fen in general (cap × factor has more places), so the snap
    tolerance must stay far below a fen: at 1e-6 relative a 2,000.592 optimum read as 2,000.5919999
    was snapped down to a 2,000.59 "bound" under the value (found by the chain-vs-clique property)."""
    nearest = Decimal(repr(value)).quantize(Decimal("0.01"))
    if abs(float(nearest) - value) <= SNAP_REL * max(1.0, abs(value)):
        return nearest
    return Decimal(repr(value)).quantize(Decimal("0.01"), rounding=ROUND_CEILING)


def round_and_repair(offers, requests, model: ClearingModel, values: np.ndarray, per_request):
    """Round the LP down, keep the requests whose rounded grants still meet their fill bounds, then repair:
    the other requests, most LP-filled first (ties: widest margin, request id), each trying its offers in
    order of LP devices (then margin) on the capacity left."""
    book, grants = CapacityBook(offers), {}
    for position, given in _columns_to_grants(requests, model, values, np.floor(values + ROUNDING_EPS)).items():
        if all(book.free(c.offer_index, c.start, c.end) >= d for c, d in given):
            book.book(given)
            grants[position] = given
    lp_devices = {id(c): float(v * n) for c, v, n in zip(model.candidates, values, model.devices_per_unit,
                                                          strict=False)}
    guided = [sorted(found, key=lambda c: (-lp_devices.get(id(c), 0.0), -c.unit_surplus)) for found in per_request]
    share = {p: sum(lp_devices.get(id(c), 0.0) * float(c.factor) for c in found) / requests[p].devices
             for p, found in enumerate(per_request)}
    margins = [max((float(c.unit_surplus) for c in found), default=None) for found in per_request]
    grants.update(greedy_grants(requests, guided, margins, book, skip=frozenset(grants), priority=share))
    return grants


def _columns_to_grants(requests, model: ClearingModel, values: np.ndarray, rounded: np.ndarray):
    """Device grants per request from integral column values; requests outside their fill bounds dropped."""
    grants: dict[int, list[Grant]] = {}
    for column, candidate in enumerate(model.candidates):
        if rounded[column] >= 1:
            devices = candidate.max_devices if model.is_gang[column] else int(rounded[column])
            grants.setdefault(candidate.request_index, []).append((candidate, devices))
    kept = {}
    for position, given in grants.items():
        request = requests[position]
        if request.gang:
            if len(given) == 1:
                kept[position] = given
            continue
        bounds = fill_bounds(request)
        delivered = sum((c.factor * d for c, d in given), Decimal(0))
        if bounds.lower <= delivered <= bounds.upper:
            kept[position] = given
    return kept


def _pick(offers, requests, model: ClearingModel, mip: highspy.Highs, fallback, objective: str):
    """The MILP's incumbent if it is feasible (re-checked exactly) and no worse than the fallback."""
    if mip.getInfo().primal_solution_status != 2:  # no feasible incumbent
        return "fallback", fallback
    values = np.array(mip.getSolution().col_value)
    incumbent = _columns_to_grants(requests, model, values, np.round(values))
    book = CapacityBook(offers)
    for given in incumbent.values():
        if any(book.free(c.offer_index, c.start, c.end) < d for c, d in given):
            return "fallback", fallback
        book.book(given)
    if _value(offers, requests, incumbent, objective) < _value(offers, requests, fallback, objective):
        return "fallback", fallback
    optimal = mip.getModelStatus() == highspy.HighsModelStatus.kOptimal
    return ("optimal" if optimal else "time_limit"), incumbent
