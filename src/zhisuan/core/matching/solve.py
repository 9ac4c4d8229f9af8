"""``clear``: one clearing round solved as a MILP with HiGHS, with a documented fallback.

1. Candidates (``candidates.py``): rounds with at most ``prune_above`` feasible pairings keep them all.
   Larger rounds are pruned: a pairing is kept when it is among the request's ``max_candidates``
   widest margins cap × f − floor (ties: lower offer id) or among the offer's ``offer_candidates``
   widest margins (ties: lower request id); all pairings when ``max_candidates`` is None. The bound
   below is the bound of this candidate model (benchmarks/market measures what the pruning costs).
2. LP relaxation of the model (``model.py``) → ``bound`` (its optimum, rounded up to the fen), later
   lowered to HiGHS's MIP dual bound when branch and bound proves a tighter one (both are valid
   upper bounds on the candidate model's optimum).
3. Fallback solution: round every LP device column down (a gang's z only when it is 1), keep a
   request's rounded grants only if they still meet its fill bounds, then repair greedily — the
   requests left over, most LP-filled first, each trying its offers in order of LP devices, take what
   capacity remains (``baselines.greedy_grants``).
4. The MILP, warm-started from the better of the fallback and the greedy-by-price clearing over every
   pairing (whose pairs are always kept in the candidate model, so ``clear`` never does worse than
   ``clear_greedy``), within what is left of ``time_limit_s`` (HiGHS's own clock; building the
   candidates and the model is not counted) and relative gap ``mip_rel_gap``.

Status: "optimal" when HiGHS proves the incumbent within the gap; "time_limit" when the budget ran
out and the MILP's incumbent beats the fallback; "fallback" when the fallback is kept (no better
incumbent, or no LP within the budget, in which case the greedy clearing decides and ``bound`` is
None). Deterministic for the same input up to the time limit (HiGHS's MIP search is deterministic).
"""

from collections.abc import Sequence
from decimal import ROUND_CEILING, Decimal

import highspy
import numpy as np

from zhisuan.core.matching.baselines import greedy_grants, market_greedy
from zhisuan.core.matching.book import CapacityBook, Grant, assemble, grant_value
from zhisuan.core.matching.candidates import MarketPairings, fill_bounds
from zhisuan.core.matching.model import CLIQUE_UP_TO, ClearingModel, build_model, grants_to_columns
from zhisuan.core.matching.types import Clearing, Offer, Request
from zhisuan.core.matching.validate import validate_market

ROUNDING_EPS = 1e-6  # LP values within this of an integer count as that integer
SNAP_REL = 1e-9  # an LP optimum this close (relative) to a whole fen is that fen


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
) -> Clearing:
    """Maximise ``objective`` over one clearing round; see the module docstring for the method."""
    validate_market(offers, requests, objective)
    pairings = MarketPairings(offers, requests)
    greedy = market_greedy(pairings)
    used = frozenset((p, c.offer_index) for p, given in greedy.items() for c, _ in given)
    if len(pairings.position) <= prune_above:  # small rounds keep every pairing: the exact model is cheap
        max_candidates = None
    per_request = pairings.pruned(max_candidates, offer_candidates, always=used)
    model = build_model(offers, requests, per_request, objective, clique_up_to)
    if model.num_cols == 0:  # nothing can pair: the empty clearing is optimal and the bound is zero
        return assemble(offers, requests, {}, pairings.stats, objective, bound=Decimal(0), status="optimal",
                        solve_s=0.0)
    lp = _solver(model, time_limit_s, mip_rel_gap)
    lp.run()
    spent = lp.getRunTime()
    if lp.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        return assemble(offers, requests, greedy, pairings.stats, objective, bound=None, status="fallback",
                        solve_s=spent)
    bound = _round_up(lp.getInfo().objective_function_value)
    rounded = round_and_repair(offers, requests, model, np.array(lp.getSolution().col_value), per_request)
    fallback = max((rounded, _in_model(model, greedy)), key=lambda g: _value(offers, requests, g, objective))
    mip = _solver(model, max(time_limit_s - spent, 0.05), mip_rel_gap)
    mip.changeColsIntegrality(len(model.integer_columns), model.integer_columns,
                              np.full(len(model.integer_columns), highspy.HighsVarType.kInteger))
    start = highspy.HighsSolution()
    start.col_value = grants_to_columns(model, fallback).tolist()
    mip.setSolution(start)
    mip.run()
    spent += mip.getRunTime()
    status, grants = _pick(offers, requests, model, mip, fallback, objective)
    proven = mip.getInfo().mip_dual_bound
    if np.isfinite(proven):  # branch and bound (cuts included) may prove a tighter bound than the LP
        bound = min(bound, _round_up(proven))
    return assemble(offers, requests, grants, pairings.stats, objective, bound=bound, status=status, solve_s=spent)


def _in_model(model: ClearingModel, grants: dict[int, list[Grant]]) -> dict[int, list[Grant]]:
    """The same grants expressed with the model's own candidates (greedy ran on its own copies)."""
    column = {(c.request_index, c.offer_index): c for c in model.candidates}
    return {p: [(column[(c.request_index, c.offer_index)], d) for c, d in given] for p, given in grants.items()}


def _value(offers, requests, grants: dict[int, list[Grant]], objective: str) -> Decimal:
    return sum((grant_value(requests[p], offers[c.offer_index], c, d, objective)
                for p, given in grants.items() for c, d in given), Decimal(0))


def _solver(model: ClearingModel, time_limit_s: float, mip_rel_gap: float) -> highspy.Highs:
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
