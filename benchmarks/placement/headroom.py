"""How much of the idle capacity at column 130 any online policy could still recover (Placement §14).

Usage (TRACES_DIR as in §5: the clusterdata csv folder, with ``paper-order`` linked for default)::

    uv run python benchmarks/placement/headroom.py TRACES_DIR OUT --seeds 42-51 --policy fgd --policy zhisuan
    uv run python benchmarks/placement/headroom.py TRACES_DIR OUT --seeds 42-43 --policy best-fit --policy random

Per (trace, seed, policy) one replay on the family tables' order (``sim.families.family_order``); the final
fleet's idle device milli is split by ``sim.headroom.idle_classes`` (small leftovers below 200 milli, partial
leftovers a common share fits, whole free devices) and the 810-milli shares placed are counted. Rows land in
OUT/headroom-runs.csv as they finish (a rerun skips rows already there); OUT/headroom.md is rewritten.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from zhisuan.sim.bucketing import alloc_discrete
from zhisuan.sim.cli import parse_seeds
from zhisuan.sim.families import OPENB_FAMILIES, append_row, family_order, rows_done
from zhisuan.sim.headroom import idle_classes
from zhisuan.sim.replay import replay
from zhisuan.sim.traces import load_nodes, load_pods, node_models

FIELDS = ["trace", "seed", "policy", "alloc_130", "idle_small", "idle_partial", "idle_whole",
          "shares_810_placed", "shares_810_arrived", "seconds"]
TRACES = [t for family in OPENB_FAMILIES.values() for t in family]


def run(traces: Path, out: Path, names: list[str], seeds: list[int], policies: list[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "headroom-runs.csv"
    done = rows_done(path, ("trace", "seed", "policy"))
    nodes = load_nodes(traces / "openb_node_list_gpu_node.csv")
    for name in names:
        pods = load_pods(traces / f"openb_pod_list_{name}.csv", node_models(nodes))
        is_810 = (pods.milli == 810) & (pods.count == 1)
        for seed in seeds:
            order = family_order(traces, name, seed, pods, nodes)
            for policy in policies:
                if (name, str(seed), policy) in done:
                    continue
                started = time.perf_counter()
                result = replay(nodes, pods, order, policy, seed)
                idle = idle_classes(result.fleet.gpu_left, result.fleet.device_healthy, result.total_gpus)
                arrived_810 = is_810[order.events]
                row = [name, seed, policy, alloc_discrete(result.arrived, result.used, result.total_gpus)[130],
                       round(idle.small, 3), round(idle.partial, 3), round(idle.whole, 3),
                       int((arrived_810 & (result.placed >= 0)).sum()), int(arrived_810.sum()),
                       round(time.perf_counter() - started, 1)]
                append_row(path, FIELDS, row)
                print(*row, flush=True)


def mean(rows: list[dict[str, str]], field: str) -> float:
    return statistics.mean(float(r[field]) for r in rows) if rows else float("nan")


def write_table(out: Path) -> str:
    with (out / "headroom-runs.csv").open() as handle:
        runs = list(csv.DictReader(handle))
    by: dict[tuple[str, str], list[dict[str, str]]] = defaultdict(list)
    for r in runs:
        by[(r["trace"], r["policy"])].append(r)
    others = sorted({r["policy"] for r in runs} - {"fgd", "zhisuan"})
    lines = [
        "| trace | seeds | FGD @130 | zhisuan @130 | Δ@130 | FGD + 1.0 needs | zhisuan idle: small | partial | whole "
        "| headroom (partial + whole) | Δ@130 if all headroom recovered | 810-shares placed: FGD / zhisuan"
        + "".join(f" / {p}" for p in others) + " |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    ceiling_deltas, deltas = [], []
    for name in TRACES:
        fgd, zh = by.get((name, "fgd"), []), by.get((name, "zhisuan"), [])
        paired = sorted({r["seed"] for r in fgd} & {r["seed"] for r in zh})
        if not paired:
            continue
        fgd = [r for r in fgd if r["seed"] in paired]
        zh = [r for r in zh if r["seed"] in paired]
        delta = mean(zh, "alloc_130") - mean(fgd, "alloc_130")
        headroom = mean(zh, "idle_partial") + mean(zh, "idle_whole")
        deltas.append(delta)
        ceiling_deltas.append(delta + headroom)
        placed = [f"{mean(fgd, 'shares_810_placed'):.0f}", f"{mean(zh, 'shares_810_placed'):.0f}"]
        placed += [f"{mean(by.get((name, p), []), 'shares_810_placed'):.0f}" for p in others]
        lines.append(
            f"| {name} | {len(paired)} | {mean(fgd, 'alloc_130'):.2f} | {mean(zh, 'alloc_130'):.2f} | {delta:+.2f} "
            f"| {1.0 - delta:+.2f} | {mean(zh, 'idle_small'):.2f} | {mean(zh, 'idle_partial'):.2f} "
            f"| {mean(zh, 'idle_whole'):.2f} | {headroom:.2f} | {delta + headroom:+.2f} | {' / '.join(placed)} |"
        )
    if deltas:
        lines.append(f"\nMean over {len(deltas)} traces: Δ@130 {np.mean(deltas):+.2f}; Δ@130 if every trace's "
                     f"headroom were recovered in full {np.mean(ceiling_deltas):+.2f}.")
    text = "\n".join(lines) + "\n"
    (out / "headroom.md").write_text(text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("traces", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--seeds", default="42-51")
    parser.add_argument("--policy", action="append", default=None)
    parser.add_argument("--trace", action="append", default=None)
    parser.add_argument("--table-only", action="store_true")
    args = parser.parse_args()
    if not args.table_only:
        run(args.traces, args.out, args.trace or TRACES, parse_seeds(args.seeds), args.policy or ["fgd", "zhisuan"])
    print(write_table(args.out))


if __name__ == "__main__":
    main()
