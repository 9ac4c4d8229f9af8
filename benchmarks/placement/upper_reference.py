"""Upper bound and best packing found on every openb trace family, at columns 100 and 130.

Usage (traces as for family_tables.py; FGD and zhisuan are read from its runs, not re-run)::

    nice -n 10 uv run python benchmarks/placement/upper_reference.py TRACES_DIR \\
        benchmarks/placement/results/upper-reference-runs.csv --seeds 42-51 \\
        [--trace default ...] [--online RUNS.csv ...] [--tables OUT.md] [--tables-only]

Per (trace, seed) the same arrival order as family_tables.py (the paper's for default, else generated
from the seed) and per column a = 100, 130:

- *bound*: ``config_bound.configuration_bound`` over the events up to the **last** event of column a's
  bucket (every event of the bucket has arrived no more) — a bound on the allocation at each of them,
  so on their mean, for any policy; rounded up to 2 decimals.
- *own packings*: ``offline_packing.best_fit_packing`` of the events up to the **first** event of the
  bucket (an optimum over more events is no smaller, so a lower bound of the optimum at every event of
  the bucket) in the PACKERS variants of RUN_AT[column]; rounded down.
- *best packing found* (in the tables): per seed, the best of the own packings, the online FGD and
  zhisuan runs, and the offline largest-first zhisuan packings of family_tables.py (column 130 only,
  seeds 42–44: ``results/families-runs.csv`` and ``results/offline-runs.csv``, the default --online).

Rows are appended to the CSV as they finish (a rerun skips rows already there); the tables are printed.
Data: Alibaba clusterdata cluster-trace-gpu-v2023 (openb), CC BY 4.0, Alibaba Group.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np

from zhisuan.sim.bucketing import arrive_ratio
from zhisuan.sim.cli import parse_seeds
from zhisuan.sim.config_bound import configuration_bound
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
from zhisuan.sim.offline_packing import best_fit_packing, largest_first_order, lp_guided_order
from zhisuan.sim.traces import load_nodes, load_pods, node_models

# (order, stranding weight, CPU-per-GPU quantile) — chosen on seed 42 of default, gpushare60/100, gpuspec33.
PACKERS = {
    "lf-30-0.5": ("largest", 30.0, 0.5),
    "lf-30-0.25": ("largest", 30.0, 0.25),
    "lp-3-0.25": ("lp", 3.0, 0.25),
    "lp-30-0.5": ("lp", 30.0, 0.5),
}
# At column 100 nearly every arrived pod fits and the online runs beat these packers (seeds 42–43), so
# only the LP-guided one runs there (the CPU of a shared machine is the limit of one session).
RUN_AT = {100: ["lp-30-0.5"], 130: ["lf-30-0.5", "lp-3-0.25", "lp-30-0.5"]}
FIELDS = ["trace", "seed", "column", "bound", "bound_events", "pack_events", *PACKERS, "own_best", "seconds"]


def bucket_ends(arrived: np.ndarray, total_gpus: int, column: int) -> tuple[int, int]:
    """(events up to the first, events up to the last) event averaged in ``column`` (bucketing.py rule)."""
    arrive = arrive_ratio(arrived, total_gpus)
    chosen = np.flatnonzero(arrive == column)
    if not len(chosen):
        chosen = np.flatnonzero((arrive >= column - 1) & (arrive <= column + 1))
    if not len(chosen):  # the column is past the experiment: everything has arrived
        return len(arrived), len(arrived)
    return int(chosen[0]) + 1, int(chosen[-1]) + 1


def run(traces: Path, out: Path, names: list[str], seeds: list[int]) -> None:
    done = rows_done(out, ("trace", "seed", "column"))
    nodes = load_nodes(traces / "openb_node_list_gpu_node.csv")
    capacity = 10.0 * nodes.total_gpus  # milli per percent
    for seed in seeds:  # seeds outer: a partial run covers every trace
        for name in names:
            if all((name, str(seed), str(c)) in done for c in (100, 130)):
                continue
            pods = load_pods(traces / f"openb_pod_list_{name}.csv", node_models(nodes))
            order = family_order(traces, name, seed, pods, nodes)
            arrived = np.cumsum(pods.gpu_milli()[order.events])
            for column in (100, 130):
                started = time.perf_counter()
                first, last = bucket_ends(arrived, nodes.total_gpus, column)
                bound = configuration_bound(nodes, pods, order.events[:last])
                events = order.events[:first]
                guide = configuration_bound(nodes, pods, events).placed if first != last else bound.placed
                packs: dict[str, float] = {}
                for label in RUN_AT[column]:
                    how, weight, quantile = PACKERS[label]
                    seq = (
                        largest_first_order(pods, events) if how == "largest" else lp_guided_order(pods, events, guide)
                    )
                    used, _ = best_fit_packing(nodes, pods, seq, None, weight, quantile)
                    packs[label] = math.floor(used / capacity * 100) / 100
                row = [name, seed, column, bound.percent(nodes.total_gpus), last, first]
                row += [packs.get(label, "") for label in PACKERS] + [max(packs.values())]
                row.append(round(time.perf_counter() - started, 2))
                append_row(out, FIELDS, row)
                print(*row, flush=True)


def tables(out: Path, online: list[Path]) -> str:
    """Markdown: per family, bound and best packing found beside FGD and zhisuan, per column."""
    mine, value = reference_bounds(out), allocations(online)
    lines = []
    for family, names in OPENB_FAMILIES.items():
        lines += [
            f"#### {family}",
            "",
            "| trace | col | seeds | FGD | zhisuan | best packing found | bound | bound − FGD | bound − zhisuan "
            "| best found from |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for name in names:
            for column in ("100", "130"):
                fgd, zhi, bound, best, sources = reference_rows(mine, value, name, column)
                if not fgd:
                    continue
                counts = ", ".join(
                    f"{k} {sources.count(k)}" for k in ("own", "zhisuan", "fgd", "offline-lf") if k in sources
                )
                lines.append(
                    f"| {name} | {column} | {len(fgd)} | {mean_std(fgd)} | {mean_std(zhi)} | {mean_std(best)} | "
                    f"{mean_std(bound)} | "
                    f"{mean_std([b - f for b, f in zip(bound, fgd, strict=True)], True)} | "
                    f"{mean_std([b - z for b, z in zip(bound, zhi, strict=True)], True)} | {counts} |"
                )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("traces", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--seeds", default="42-51")
    parser.add_argument("--trace", action="append")
    parser.add_argument("--online", type=Path, action="append", help="family_tables.py runs (default: §5's, §10's)")
    parser.add_argument("--tables", type=Path)
    parser.add_argument("--tables-only", action="store_true")
    args = parser.parse_args()
    names = args.trace or [n for family in OPENB_FAMILIES.values() for n in family]
    if not args.tables_only:
        run(args.traces, args.out, names, parse_seeds(args.seeds))
    results = Path(__file__).parent / "results"
    text = tables(args.out, args.online or [results / "families-runs.csv", results / "offline-runs.csv"])
    if args.tables:
        args.tables.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
