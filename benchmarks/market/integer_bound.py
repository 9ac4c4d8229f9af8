"""The best integer (dual) bound HiGHS proves for a benchmark round, beside its LP bound.

    uv run python benchmarks/market/integer_bound.py --size 1000x200 [--seconds 300] [--seed 11]

Builds the clearing MILP over EVERY pairing of the market ``bench_matching.py`` generates for that size
and seed (``zhisuan.core.matching.model``), solves its LP relaxation (the LP bound) and then the MILP,
each for at most ``--seconds`` (HiGHS), and prints: pairings, LP bound, the MIP's best
integer solution and its dual bound (no clearing can beat it; below the LP bound by the part of the
integrality gap branch and bound has closed), status and seconds. Not part of ``clear``: too slow for
a round. ``bench_matching.py --exact-s`` uses ``exact_bounds`` for its LP and integer bound columns.
"""

import argparse
import math
import time

import highspy
import numpy as np
from bench_matching import TRACE, fleet, market

from zhisuan.core.matching.candidates import MarketPairings
from zhisuan.core.matching.model import build_model
from zhisuan.core.matching.solve import highs_solver


def exact_bounds(offers, requests, seconds: float) -> tuple[int, float, float, float, str]:
    """(pairings, LP bound, MIP best value, MIP dual bound, status) of the MILP over every pairing, the LP
    and then the MIP each given ``seconds`` (HiGHS)."""
    pairings = MarketPairings(offers, requests)
    model = build_model(offers, requests, pairings.pruned(None), "surplus")
    solver = highs_solver(model, seconds, 1e-4)
    solver.run()
    if solver.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        return len(pairings.position), math.nan, math.nan, math.nan, solver.modelStatusToString(solver.getModelStatus())
    lp = solver.getInfo().objective_function_value
    solver.changeColsIntegrality(len(model.integer_columns), model.integer_columns,
                                 np.full(len(model.integer_columns), highspy.HighsVarType.kInteger))
    solver.run()
    info = solver.getInfo()
    return (len(pairings.position), lp, info.objective_function_value, info.mip_dual_bound,
            solver.modelStatusToString(solver.getModelStatus()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="1000x200")
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    num_requests, num_offers = (int(x) for x in args.size.split("x"))
    lots, devices = fleet(TRACE, args.seed)
    began = time.perf_counter()
    count, lp, best, dual, status = exact_bounds(*market(lots, devices, num_requests, num_offers, args.seed),
                                                 args.seconds)
    print(f"{args.size} seed {args.seed}: {count:,} pairings; LP bound {lp / 1e6:.3f} M; MIP best {best / 1e6:.3f} M, "
          f"dual bound {dual / 1e6:.3f} M, {status}, {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
