"""The openb pod mixes on a heterogeneous fleet: the 4,278-node alibaba-spot-gpu-v2026 cluster.

Usage (openb traces as for family_tables.py; the spot node list from ../shared/traces)::

    uv run python benchmarks/placement/spot_fleet.py TRACES_DIR OUT_DIR --seeds 42-43 \\
        [--trace default --trace cpu250 ...] [--spot-nodes PATH]

Fleet: every row of ``node_info_df.csv`` (A10 ×1, A100-SXM4-80GB ×8, A800-SXM4-80GB ×8, H800 ×8 and
the anonymised GPU-series-1/2 nodes: 10,404 GPUs), ``cpu_num`` cores each; the trace gives no memory,
so 4 GiB per core (as benchmarks/queueing does). Model names go through the catalog (aliases → keys).

Type constraints, mapped through the catalog: an openb pod that allows models S may use every spot model
whose catalog device memory is at least the smallest memory of the known models in S (a device at
least as large as one it accepted); S's anonymised models (openb G1–G3, no published figures) map to
the spot fleet's anonymised models (GPU-series-1/2) — an assumption, as nothing relates them. Orders
are generated from the seed against this fleet (130 % of its GPUs). Per (trace, seed): FGD, zhisuan
and the offline reference (largest-first, packed by zhisuan). Rows go to OUT_DIR/spot-runs.csv.
Data: Alibaba clusterdata cluster-trace-gpu-v2023 and cluster-trace-v2026-spot-gpu, CC BY 4.0.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import time
from pathlib import Path

import numpy as np

from zhisuan.catalog.loader import Catalog, default_catalog
from zhisuan.sim.bucketing import alloc_discrete
from zhisuan.sim.cli import parse_seeds
from zhisuan.sim.orders import generate_order
from zhisuan.sim.replay import replay
from zhisuan.sim.traces import NodeTable, PodTable, load_nodes, load_pods, node_models
from zhisuan.sim.upper_bound import offline_order

SPOT = Path(__file__).resolve().parents[3] / "shared" / "traces" / "alibaba-spot-gpu-v2026" / "node_info_df.csv"
MIB_PER_CORE = 4096
FIELDS = ["trace", "seed", "policy", "alloc_100", "alloc_130", "seconds"]


def spot_nodes(path: Path, catalog: Catalog) -> NodeTable:
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    models = tuple(catalog.get(r["gpu_model"]).key for r in rows)
    cores = np.array([int(r["cpu_num"]) for r in rows], np.int64)
    return NodeTable(tuple(f"spot-{r['node_name']}" for r in rows), cores * 1000, cores * MIB_PER_CORE,
                     np.array([int(r["gpu_capacity_num"]) for r in rows], np.int64), models)


def mapped_spec(spec: str, catalog: Catalog, fleet_models: set[str]) -> str:
    """An openb ``gpu_spec`` as allowed spot models (see module doc); "" stays "any"."""
    if not spec:
        return ""
    asked = [catalog.get(name) for name in spec.split("|")]
    known = [m.memory_gib for m in asked if m.memory_gib is not None]
    allowed = set()
    for key in fleet_models:
        model = catalog.get(key)
        if model.memory_gib is None:
            if len(known) < len(asked):  # S has an anonymised model: the fleet's anonymised ones
                allowed.add(key)
        elif known and model.memory_gib >= min(known):
            allowed.add(key)
    return "|".join(sorted(allowed))


def mapped_pods(pods: PodTable, catalog: Catalog, fleet_models: set[str]) -> PodTable:
    cache: dict[str, str] = {}
    spec = tuple(cache.setdefault(s, mapped_spec(s, catalog, fleet_models)) for s in pods.spec)
    return PodTable(pods.names, pods.cpu, pods.mem, pods.count, pods.milli, spec)


def run(traces: Path, out: Path, spot: Path, names: list[str], seeds: list[int]) -> None:
    catalog = default_catalog()
    nodes = spot_nodes(spot, catalog)
    openb = node_models(load_nodes(traces / "openb_node_list_gpu_node.csv"))
    out.mkdir(parents=True, exist_ok=True)
    path = out / "spot-runs.csv"
    done = set()
    if path.is_file():
        with path.open() as handle:
            done = {(r["trace"], r["seed"], r["policy"]) for r in csv.DictReader(handle)}
    for name in names:
        pods = mapped_pods(load_pods(traces / f"openb_pod_list_{name}.csv", openb), catalog, node_models(nodes))
        for seed in seeds:
            order = generate_order(pods, nodes, seed)
            for label, arrival in (("fgd", order), ("zhisuan", order), ("offline:zhisuan", offline_order(pods, order))):
                if (name, str(seed), label) in done:
                    continue
                started = time.perf_counter()
                result = replay(nodes, pods, arrival, label.removeprefix("offline:"), seed)
                alloc = alloc_discrete(result.arrived, result.used, result.total_gpus)
                if label.startswith("offline:"):  # all pods known: only the final allocation means anything
                    alloc[100] = alloc[130] = round(100.0 * result.used[-1] / (1000 * result.total_gpus), 2)
                row = [name, seed, label, alloc[100], alloc[130], round(time.perf_counter() - started, 1)]
                with path.open("a", newline="") as handle:
                    writer = csv.writer(handle)
                    if handle.tell() == 0:
                        writer.writerow(FIELDS)
                    writer.writerow(row)
                print(*row, flush=True)
    print(table(path))


def table(path: Path) -> str:
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    lines = ["| trace | seeds | FGD @100 | zhisuan @100 | FGD @130 | zhisuan @130 | Δ@130 | offline @130 |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name in dict.fromkeys(r["trace"] for r in rows):
        def values(policy: str, column: str, name: str = name) -> list[float]:
            return [float(r[column]) for r in rows if r["trace"] == name and r["policy"] == policy]

        def stat(v: list[float]) -> str:
            return f"{statistics.mean(v):.2f} ± {statistics.stdev(v) if len(v) > 1 else 0.0:.2f}" if v else "–"

        seeds = sorted({r["seed"] for r in rows if r["trace"] == name and r["policy"] == "zhisuan"})
        fgd, mine = values("fgd", "alloc_130"), values("zhisuan", "alloc_130")
        delta = f"{statistics.mean(mine) - statistics.mean(fgd):+.2f}" if fgd and mine else "–"
        lines.append(f"| {name} | {','.join(seeds)} | {stat(values('fgd', 'alloc_100'))} | "
                     f"{stat(values('zhisuan', 'alloc_100'))} | {stat(fgd)} | {stat(mine)} | {delta} | "
                     f"{stat(values('offline:zhisuan', 'alloc_130'))} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("traces", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--seeds", default="42")
    parser.add_argument("--trace", action="append")
    parser.add_argument("--spot-nodes", type=Path, default=SPOT)
    args = parser.parse_args()
    run(args.traces, args.out, args.spot_nodes, args.trace or ["default"], parse_seeds(args.seeds))


if __name__ == "__main__":
    main()
