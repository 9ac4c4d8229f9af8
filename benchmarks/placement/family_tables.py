"""FGD vs zhisuan on every openb trace family of the FGD paper, with the offline reference.

Usage (traces from github.com/alibaba/clusterdata, cluster-trace-gpu-v2023/csv, in TRACES_DIR; the
default trace's paper orders in TRACES_DIR/paper-order)::

    uv run python benchmarks/placement/family_tables.py TRACES_DIR OUT_DIR --seeds 42-51 \\
        [--trace default --trace cpu250 ...] [--policy fgd --policy zhisuan] [--offline-seeds 42-44]

Per (trace, seed, policy) one replay (default: the paper's orders when shipped, else orders generated
from the seed — the same order for every policy), the allocation ratio at columns 100 and 130; per
(trace, seed in --offline-seeds) the offline reference: the same pods sorted largest-first
(``upper_bound.offline_order``) and packed by each of OFFLINE_PACKERS, the best kept. Rows are appended to
OUT_DIR/runs.csv as they finish (a rerun skips rows already there); OUT_DIR/tables.md is rewritten, with
the bound and best packing found of Placement §13 (``--upper``, ``upper_reference.py`` rows) beside them.
Data: Alibaba clusterdata cluster-trace-gpu-v2023 (openb), CC BY 4.0, Alibaba Group.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import time
from pathlib import Path

from zhisuan.core.placement.leftover_score import leftover_score_with
from zhisuan.core.placement.policies import POLICIES, Policy
from zhisuan.sim.bucketing import alloc_discrete
from zhisuan.sim.cli import parse_seeds
from zhisuan.sim.families import (
    OPENB_FAMILIES,
    allocations,
    append_row,
    family_order,
    mean_std,
    reference_bounds,
    reference_rows,
    rows_done,
)
from zhisuan.sim.replay import replay
from zhisuan.sim.traces import load_nodes, load_pods, node_models
from zhisuan.sim.upper_bound import offline_order

PAPER_FGD = {  # fgd-protocol.md §7, mean over seeds 42–51 (columns 100, 130)
    "default": (95.23, 95.39),
    "gpushare40": (93.96, 94.15),
    "multigpu20": (95.53, 95.65),
    "gpuspec10": (94.66, 94.95),
    "cpu050": (95.00, 95.21),
}
OFFLINE_PACKERS = ["zhisuan"]  # the CPU budget of one session; add "fgd", "best-fit" to take the best of several
RESULTS = Path(__file__).parent / "results"
FIELDS = ["trace", "seed", "policy", "order", "alloc_100", "alloc_130", "seconds"]
# Development-set candidates of the session-6 policy search (BENCHMARKS.md Placement §12), usable as
# --policy NAME: leftover_score_with(β, only_with_constrained_demand, tie_break, model_blind).
SEARCH_VARIANTS = {
    "lo0.5": (0.5, False, False, False),
    "lo1": (1.0, False, False, False),
    "lo2": (2.0, False, False, False),
    "lo4": (4.0, False, False, False),
    "lot": (0.0, False, True, False),
    "lo1b": (1.0, True, False, True),  # = the registered zhisuan-leftover
    "lob0.5": (0.5, True, False, True),
}


def register_search_variants(names: list[str]) -> None:
    """Add the named SEARCH_VARIANTS to the policy registry of this process (not to the product)."""
    for name in names:
        if name in SEARCH_VARIANTS and name not in POLICIES:
            score = leftover_score_with(*SEARCH_VARIANTS[name])
            POLICIES[name] = Policy(name, score, device_method="scored", needs_workload=True)


def run(traces: Path, out: Path, names: list[str], seeds: list[int], policies: list[str], offline: list[int]) -> None:
    """Replay every (trace, seed, policy) not yet in OUT/runs.csv (and the offline packings), appending rows."""
    out.mkdir(parents=True, exist_ok=True)
    done_path = out / "runs.csv"
    done = rows_done(done_path, ("trace", "seed", "policy"))
    nodes = load_nodes(traces / "openb_node_list_gpu_node.csv")
    for name in names:
        pods = load_pods(traces / f"openb_pod_list_{name}.csv", node_models(nodes))
        for seed in seeds:
            order = family_order(traces, name, seed, pods, nodes)
            jobs = [(p, order) for p in policies]
            if seed in offline:
                jobs += [(f"offline:{p}", offline_order(pods, order)) for p in OFFLINE_PACKERS]
            for label, arrival in jobs:
                if (name, str(seed), label) in done:
                    continue
                started = time.perf_counter()
                result = replay(nodes, pods, arrival, label.removeprefix("offline:"), seed)
                alloc = alloc_discrete(result.arrived, result.used, result.total_gpus)
                if label.startswith("offline:"):  # all pods known: only the final allocation means anything
                    alloc[100] = alloc[130] = round(100.0 * result.used[-1] / (1000 * result.total_gpus), 2)
                row = [name, seed, label, arrival.source, alloc[100], alloc[130], time.perf_counter() - started]
                append_row(done_path, FIELDS, row)
                print(*row, flush=True)


def write_tables(out: Path, upper: Path | None, also: list[Path]) -> None:
    """OUT/tables.md: §5's tables from OUT/runs.csv, the bound and best packing columns from ``upper``
    (``upper_reference.py`` rows, "–" without it) over the same runs plus the runs files in ``also``."""
    with (out / "runs.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    bounds = reference_bounds(upper) if upper is not None and upper.is_file() else []
    value = allocations([out / "runs.csv", *also])
    lines, deltas = [], {}
    for family, names in OPENB_FAMILIES.items():
        lines += [
            f"##### {family}",
            "",
            "| trace | seeds | FGD paper @100 | FGD @100 | zhisuan @100 | FGD paper @130 | FGD @130 | zhisuan @130 "
            "| Δ@100 | Δ@130 | seeds behind @100 / @130 | bound @100 (§13) | bound @130 (§13) "
            "| best packing found @130 (§13) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name in names:
            mine = [r for r in rows if r["trace"] == name]
            if not mine:
                continue

            # Statistics over the seeds both policies ran (the same orders: differences are paired).
            ran = [{r["seed"] for r in mine if r["policy"] == p} for p in ("fgd", "zhisuan")]
            paired = sorted(ran[0] & ran[1], key=int)

            def col(policy: str, column: str, runs: list[dict[str, str]] = mine, on: list[str] = paired) -> list[float]:
                by_seed = {r["seed"]: float(r[column]) for r in runs if r["policy"] == policy}
                return [by_seed[s] for s in on]

            def delta(column: str) -> list[float]:
                return [z - f for z, f in zip(col("zhisuan", column), col("fgd", column), strict=True)]

            if paired:
                deltas[name] = statistics.mean(delta("alloc_130"))
            bound_100 = reference_rows(bounds, value, name, "100")[2]
            _, _, bound_130, best_130, _ = reference_rows(bounds, value, name, "130")
            paper = PAPER_FGD.get(name)
            behind = [sum(d < 0 for d in delta(c)) for c in ("alloc_100", "alloc_130")]
            lines.append(
                f"| {name} | {len(paired)} | {paper[0] if paper else '–'} | "
                f"{mean_std(col('fgd', 'alloc_100'))} | {mean_std(col('zhisuan', 'alloc_100'))} | "
                f"{paper[1] if paper else '–'} | {mean_std(col('fgd', 'alloc_130'))} | "
                f"{mean_std(col('zhisuan', 'alloc_130'))} | {mean_std(delta('alloc_100'), True)} | "
                f"{mean_std(delta('alloc_130'), True)} | {behind[0]} / {behind[1]} | {mean_std(bound_100)} | "
                f"{mean_std(bound_130)} | {mean_std(best_130)} |"
            )
        lines.append("")
    if deltas:
        lines.append(f"Mean Δ@130 over {len(deltas)} traces: {statistics.mean(deltas.values()):+.2f} points.")
    (out / "tables.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("traces", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--seeds", default="42-51")
    parser.add_argument("--trace", action="append")
    parser.add_argument("--policy", action="append")
    parser.add_argument("--offline-seeds", default="")
    parser.add_argument("--upper", type=Path, default=RESULTS / "upper-reference-runs.csv",
                        help="upper_reference.py rows for the bound / best packing columns (§13)")
    parser.add_argument("--also", type=Path, action="append",
                        help="more runs files for the best packing found (default: §10's offline-runs.csv)")
    parser.add_argument("--tables-only", action="store_true")
    args = parser.parse_args()
    names = args.trace or [n for family in OPENB_FAMILIES.values() for n in family]  # CPU-heavy first
    offline = parse_seeds(args.offline_seeds) if args.offline_seeds else []
    register_search_variants(args.policy or [])
    if not args.tables_only:
        run(args.traces, args.out, names, parse_seeds(args.seeds), args.policy or ["fgd", "zhisuan"], offline)
    write_tables(args.out, args.upper, args.also if args.also is not None else [RESULTS / "offline-runs.csv"])


if __name__ == "__main__":
    main()
