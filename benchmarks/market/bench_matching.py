"""Benchmark: one clearing round of the market — the optimal matcher against FCFS and greedy.

    uv run python benchmarks/market/bench_matching.py [--sizes 100x20,1000x200,10000x2000] [--runs 3]

Supply: the 4,278-node alibaba-spot-gpu-v2026 fleet (../shared/traces; alibaba/clusterdata,
cluster-trace-v2026-spot-gpu, Alibaba Group, CC BY 4.0). Nodes of each model are shuffled (seed) into
sites of 32–128 devices (uniform), each in one of 8 provinces (uniform); a site's devices are cut into
lots (whole 8-device servers where the model has them: 8/16/32 devices; else 4/8/16). Over a 90-day
horizon (2,160 h) every lot publishes ceil(offers / lots) back-to-back windows with uniform cut points
(>= 72 h each); ``offers`` of these are drawn. Minimum term 24 h (20% of offers: 168 h). Floor per
device-hour = reference price × lognormal(0, 0.15), to the fen.

Demand (seeded): arrival order = request id. Size (devices, or H100-equivalents when normalised)
1/2/4/8/16/32/64 with weights 25/10/15/25/12/8/5 %; gangs: 60% of requests of >= 8; partial fills
allowed (min_fill 0.5) for 30% of the rest. Duration lognormal, median 96 h, sigma 0.9, clipped to
[4, 720] h. Earliest start uniform over the horizon; start flexibility 0/24/72/168 h. 40% normalised
(H100-equivalents over the primary model and 1–2 others, catalog bf16 factors), 60% in devices of the
primary model (or an interchangeable twin: A100/A800, A10/GPU-series-1). Primary model drawn by fleet
share. Cap = reference price per H100-eq (or per device) × lognormal(0.1, 0.25). Regions: half any,
half 1–3 provinces.

Reference prices (CNY per device-hour; assumptions of this benchmark, not quotes): H800 15.00,
A800 7.00, A100 7.00, A10 2.50, GPU-series-1 2.00, GPU-series-2 6.00. Throughput vs H100 (catalog
dense bf16 / 989.4): H800 1.0, A100/A800 0.315, A10 0.126; the anonymised GPU-series-1 and -2 are
taken as A10-class (0.126) and A100-class (0.315) — an assumption.

``--before-src CHECKOUT/src`` runs another checkout's ``clear`` on the same market in a child process,
alternating with this one run by run (same load), and adds a "before" row: its median time, median
surplus and that surplus over the same bound (the smallest bound either code proved).

Timed: the whole ``clear`` call (pairings, sweeps, price search or MILP, assembling the matches) as the
caller sees it (perf_counter around the call) and the CPU seconds of the process over it, medians of
``--runs``; the baselines are run once. Market generation is not timed. Bounds: "integer" is the
smallest upper bound any run proved on the round's integer optimum (``clear``'s bound: the LP over every
pairing lowered to HiGHS's MIP dual bound for small rounds, L(λ) at the capacity prices otherwise; with
``--exact-s`` also HiGHS's MIP dual bound over every pairing, ``integer_bound.py``); "LP" is the LP
relaxation over every pairing (with ``--exact-s``), or "≤ L(λ)" for a round cleared by prices, whose %
is then a lower estimate ("≥"). Surplus and % columns: the median run's clearing. "load" is the
1-minute load average when the size began; "CPU s" far below "clear s" means the process got that share
of a core.
"""

import argparse
import csv
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from decimal import ROUND_CEILING, Decimal
from pathlib import Path

import numpy as np

from zhisuan.core.matching import Clearing, Offer, Request, clear, clear_fcfs, clear_greedy
from zhisuan.core.matching.candidates import MarketPairings

D = Decimal
HORIZON_H = 2160
PRICES_ABOVE = 5_000  # clear's prune_above: rounds with more pairings get a price bound L(λ) >= the LP
REGIONS = ("beijing", "shanghai", "guangdong", "zhejiang", "jiangsu", "guizhou", "inner-mongolia", "gansu")
REFERENCE_PRICE = {"H800": D("15.00"), "A800-SXM4-80GB": D("7.00"), "A100-SXM4-80GB": D("7.00"),
                   "A10": D("2.50"), "GPU-series-1": D("2.00"), "GPU-series-2": D("6.00")}
FACTOR = {"H800": D("1.0"), "A800-SXM4-80GB": D("0.315"), "A100-SXM4-80GB": D("0.315"), "A10": D("0.126"),
          "GPU-series-1": D("0.126"), "GPU-series-2": D("0.315")}
TWIN = {"A100-SXM4-80GB": "A800-SXM4-80GB", "A800-SXM4-80GB": "A100-SXM4-80GB", "A10": "GPU-series-1",
        "GPU-series-1": "A10"}
SIZES, SIZE_WEIGHTS = (1, 2, 4, 8, 16, 32, 64), (25, 10, 15, 25, 12, 8, 5)
TRACE = Path(__file__).resolve().parents[3] / "shared/traces/alibaba-spot-gpu-v2026/node_info_df.csv"
ATTRIBUTION = ("Supply: alibaba/clusterdata cluster-trace-v2026-spot-gpu (node_info_df.csv, 4,278 nodes), "
               "Alibaba Group, CC BY 4.0.")


def fleet_lots(trace: Path, rng: np.random.Generator) -> list[tuple[str, str, str, int]]:
    """(site, region, model, devices) lots cut from the fleet's nodes."""
    nodes: dict[str, list[int]] = {}
    with trace.open() as handle:
        for row in csv.DictReader(handle):
            nodes.setdefault(row["gpu_model"], []).append(int(row["gpu_capacity_num"]))
    lots = []
    for model in sorted(nodes):
        counts = list(rng.permutation(nodes[model]))
        site_number = 0
        while counts:
            target, site_devices = int(rng.integers(32, 129)), list[int]()
            while counts and sum(site_devices) < target:
                site_devices.append(int(counts.pop()))
            site, region = f"{model.lower()}-site-{site_number}", REGIONS[int(rng.integers(len(REGIONS)))]
            site_number += 1
            left, servers = sum(site_devices), max(site_devices) >= 8
            while left > 0:
                size = min(left, int(rng.choice((8, 16, 32) if servers else (4, 8, 16))))
                lots.append((site, region, model, size))
                left -= size
    return lots


def make_offers(lots, count: int, rng: np.random.Generator) -> list[Offer]:
    windows = math.ceil(count / len(lots))
    drafts = []
    for lot_number, (site, region, model, devices) in enumerate(lots):
        cuts = _cuts(windows, rng)
        for start, end in zip(cuts[:-1], cuts[1:], strict=True):
            drafts.append((site, region, model, devices, start, end, lot_number))
    chosen = rng.choice(len(drafts), size=min(count, len(drafts)), replace=False)
    offers = []
    for offer_id, pick in enumerate(chosen, start=1):
        site, region, model, devices, start, end, lot_number = drafts[int(pick)]
        floor = (REFERENCE_PRICE[model] * D(repr(float(rng.lognormal(0.0, 0.15))))).quantize(D("0.01"))
        min_term = 168 if rng.random() < 0.2 else 24
        offers.append(Offer(offer_id, f"provider-{site}", site, region, model, devices, start, end, min_term, floor,
                            f"{site}/lot-{lot_number}"))
    return offers


def _cuts(windows: int, rng: np.random.Generator) -> list[int]:
    while True:
        inner = sorted(int(x) for x in rng.integers(1, HORIZON_H, windows - 1))
        cuts = [0, *inner, HORIZON_H]
        if all(b - a >= 72 for a, b in zip(cuts[:-1], cuts[1:], strict=True)):
            return cuts


def make_requests(count: int, fleet_share: dict[str, float], rng: np.random.Generator) -> list[Request]:
    models, shares = list(fleet_share), np.array(list(fleet_share.values()))
    requests = []
    for request_id in range(1, count + 1):
        primary = models[int(rng.choice(len(models), p=shares / shares.sum()))]
        size = int(rng.choice(SIZES, p=np.array(SIZE_WEIGHTS) / 100))
        gang = size >= 8 and rng.random() < 0.6
        partial = not gang and rng.random() < 0.3
        hours = int(np.clip(round(float(rng.lognormal(math.log(96), 0.9))), 4, 720))
        earliest = int(rng.integers(0, HORIZON_H - hours + 1))
        latest = min(earliest + int(rng.choice((0, 24, 72, 168))), HORIZON_H - hours)
        normalised = rng.random() < 0.4
        if normalised:
            others = [m for m in models if m != primary]
            extra = rng.choice(len(others), size=int(rng.integers(1, 3)), replace=False)
            accepted = {m: FACTOR[m] for m in [primary, *(others[int(i)] for i in extra)]}
            reference = REFERENCE_PRICE[primary] / FACTOR[primary]
        else:
            accepted = {primary: D(1)}
            if primary in TWIN and rng.random() < 0.5:
                accepted[TWIN[primary]] = D(1)
            reference = REFERENCE_PRICE[primary]
        cap = (reference * D(repr(float(rng.lognormal(0.1, 0.25))))).quantize(D("0.01"))
        regions = None
        if rng.random() < 0.5:
            picked = rng.choice(len(REGIONS), size=int(rng.integers(1, 4)), replace=False)
            regions = frozenset(REGIONS[int(i)] for i in picked)
        requests.append(Request(request_id, f"tenant-{request_id % 97}", size, normalised, accepted, earliest,
                                latest, hours, cap, regions, gang, partial, D("0.5") if partial else D(1)))
    return requests


def market(lots, share, num_requests: int, num_offers: int, seed: int) -> tuple[list[Offer], list[Request]]:
    rng = np.random.default_rng(seed)
    offers = make_offers(lots, num_offers, rng)
    return offers, make_requests(num_requests, share, rng)


def timed_clear(offers, requests, limit: float) -> tuple[float, float, Clearing]:
    """(wall s, CPU s of this process, clearing) of one ``clear`` call."""
    began, cpu = time.perf_counter(), time.process_time()
    result = clear(offers, requests, "surplus", time_limit_s=limit)
    return time.perf_counter() - began, time.process_time() - cpu, result


def clear_elsewhere(src: Path, size: str, seed: int, limit: float,
                    trace: Path) -> tuple[float, float, Decimal, Decimal, str]:
    """One timed ``clear`` of the same market by the code under ``src`` (another checkout's src/), in a
    child process: (seconds, CPU seconds, value, bound, status)."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    out = subprocess.run([sys.executable, __file__, "--child", size, "--seed", str(seed), "--time-limit", str(limit),
                          "--trace", str(trace)], env=env, capture_output=True, text=True, check=True).stdout
    seconds, cpu, value, bound, status = out.split()[-5:]
    return float(seconds), float(cpu), Decimal(value), Decimal(bound), status


def run_size(lots, share, size: str, runs: int, seed: int, limit: float, trace: Path,
             before: Path | None, exact_s: float, exact_up_to: int) -> list[list[str]]:
    num_requests, num_offers = (int(x) for x in size.split("x"))
    offers, requests = market(lots, share, num_requests, num_offers, seed)
    load = os.getloadavg()[0]
    times, results, earlier = [], [], []
    for _ in range(runs):  # alternate the two codes so both see the same load
        if before is not None:
            earlier.append(clear_elsewhere(before, size, seed, limit, trace))
        seconds, cpu, result = timed_clear(offers, requests, limit)
        times.append((seconds, cpu))
        results.append(result)
    best = sorted(results, key=lambda r: r.value)[len(results) // 2]  # the median run's clearing
    fcfs, greedy = clear_fcfs(offers, requests), clear_greedy(offers, requests)
    bound = min([r.bound for r in results if r.bound is not None] + [e[3] for e in earlier])
    lp, integer, lp_exact = exact_columns(offers, requests, exact_s, exact_up_to, bound)

    def of(value: Decimal, reference: Decimal | None, at_least: bool = False) -> str:
        return f"{'≥ ' if at_least else ''}{value / reference * 100:.1f}%" if reference else "—"

    def row(code: str, timings: list[tuple[float, float]], statuses: set[str], value: Decimal) -> list[str]:
        wall, cpu = statistics.median(t for t, _ in timings), statistics.median(c for _, c in timings)
        return [label, code, f"{load:.1f}", f"{wall:.2f}", f"{cpu:.2f}", "/".join(sorted(statuses)), surplus(value),
                of(value, lp, not lp_exact), of(value, integer),
                f"{value / greedy.value:.3f}×" if greedy.value else "—",
                f"{value / fcfs.value:.2f}×" if fcfs.value else "—", f"{gpu_hours(best):,}" if code == "this" else ""]

    label = f"{num_requests:,} × {num_offers:,}"
    rows = [row("this", times, {r.status for r in results}, best.value)]
    if earlier:
        rows.append(row("before", [(e[0], e[1]) for e in earlier], {e[4] for e in earlier},
                        sorted(e[2] for e in earlier)[len(earlier) // 2]))
    lp_text = "—" if lp is None else f"{'' if lp_exact else '≤ '}{lp / 1_000_000:,.3f} M"
    rows.append([label, "greedy / FCFS", f"{load:.1f}", "", "", "", f"{surplus(greedy.value)} / {surplus(fcfs.value)}",
                 f"{of(greedy.value, lp, not lp_exact)} / {of(fcfs.value, lp, not lp_exact)}",
                 f"{of(greedy.value, integer)} / {of(fcfs.value, integer)}", "", "",
                 f"{gpu_hours(greedy):,} / {gpu_hours(fcfs):,}"])
    rows.append([label, "bounds", "", "", "", "", "", f"LP {lp_text}", f"integer {surplus(integer)}", "", "", ""])
    return rows


def exact_columns(offers, requests, exact_s: float, exact_up_to: int,
                  bound: Decimal) -> tuple[Decimal | None, Decimal, bool]:
    """(LP bound, integer bound, whether the LP bound is exact): the LP relaxation over every pairing and
    the least upper bound proven on the integer optimum — ``clear``'s own bounds and, with ``exact_s`` > 0
    and at most ``exact_up_to`` pairings, HiGHS's MIP dual bound after ``exact_s`` s (``integer_bound.py``).
    Without that run, a round ``clear`` solved by prices (over 5,000 pairings) reports its L(λ) as the
    LP bound, flagged inexact: L(λ) >= the LP, so its % of the LP is a lower estimate ("≥")."""
    from integer_bound import exact_bounds

    count = len(MarketPairings(offers, requests).position)
    if exact_s > 0 and count <= exact_up_to:
        _, lp, _, dual, _ = exact_bounds(offers, requests, exact_s)
        if math.isfinite(lp):
            lp_bound = Decimal(repr(lp)).quantize(Decimal("0.01"))
            proven = Decimal(repr(dual)).quantize(Decimal("0.01"), rounding=ROUND_CEILING) \
                if math.isfinite(dual) else lp_bound
            return lp_bound, min(bound, proven, lp_bound), True
    return (bound if count > PRICES_ABOVE else None), bound, False


def gpu_hours(result: Clearing) -> int:
    return sum(m.devices * (m.end - m.start) for m in result.matches)


def surplus(value: Decimal) -> str:
    return f"{value / 1_000_000:,.3f} M"


def fleet(trace: Path, seed: int) -> tuple[list, dict[str, float]]:
    lots = fleet_lots(trace, np.random.default_rng(seed))
    devices: dict[str, float] = {}
    for _, _, model, size in lots:
        devices[model] = devices.get(model, 0) + size
    return lots, devices


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100x20,300x60,1000x200,3000x600,10000x2000")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--time-limit", type=float, default=5.0)
    parser.add_argument("--trace", type=Path, default=TRACE)
    parser.add_argument("--before-src", type=Path, help="another checkout's src/: its clear runs beside this one")
    parser.add_argument("--exact-s", type=float, default=0.0,
                        help="seconds for HiGHS's LP and MIP over every pairing (LP and integer bound columns)")
    parser.add_argument("--exact-up-to", type=int, default=20_000, help="pairings above which --exact-s is skipped")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # one timed clear of SIZE, printed for --before-src
    args = parser.parse_args()
    lots, devices = fleet(args.trace, args.seed)
    if args.child:
        num_requests, num_offers = (int(x) for x in args.child.split("x"))
        seconds, cpu, result = timed_clear(*market(lots, devices, num_requests, num_offers, args.seed),
                                           args.time_limit)
        print(seconds, cpu, result.value, result.bound, result.status)
        return
    print(f"{ATTRIBUTION} {len(lots)} lots, {sum(devices.values()):,.0f} devices; seed {args.seed}; "
          f"{platform.processor() or platform.machine()}, {len(os.sched_getaffinity(0))} cores; "
          f"time limit {args.time_limit} s.\n")
    print("| requests × offers | code | load (1 min) | clear s (median) | CPU s (median) | status | surplus "
          "| % of LP bound | % of integer bound | vs greedy | vs FCFS | GPU-h |")
    print("|" + "---|" * 12)
    for size in args.sizes.split(","):
        for row in run_size(lots, devices, size, args.runs, args.seed, args.time_limit, args.trace, args.before_src,
                            args.exact_s, args.exact_up_to):
            print("| " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
