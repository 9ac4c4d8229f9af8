"""Held-out trace variants (not shipped, not used while designing zhisuan's policy), derived from
openb_pod_list_default in the spirit of the paper's families, with a fixed seed.

Set A (seed 2023):
    share65     65 % of single-GPU pods become shares (whole ones replaced by random share pods)
    multigpu35  multi-GPU pods copied until they carry ~35 % of the GPU demand
    cpu250      CPU-only pods copied to 2.5x their count
    gpuspec25   25 % of GPU pods get a model constraint drawn from openb_pod_list_gpuspec10
    mixed       share65 + gpuspec25 + CPU-only x1.5
Set B (seed 7; made after set A had informed one change to zhisuan's policy, see BENCHMARKS.md):
    share80, gpuspec40, multigpu25, cpu180, mixedB (multigpu25 + gpuspec15 + share50)

Usage: uv run python benchmarks/placement/make_variants.py OUT_DIR [A|B]
Data: Alibaba clusterdata cluster-trace-gpu-v2023 (openb), CC BY 4.0.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np

TRACES = Path(__file__).resolve().parents[2].parent / "shared" / "traces" / "alibaba-gpu-v2023"
FIELDS = ["name", "cpu_milli", "memory_mib", "num_gpu", "gpu_milli", "gpu_spec"]


def read(name: str) -> list[dict[str, str]]:
    with (TRACES / name).open() as handle:
        return [{k: row.get(k) or "" for k in FIELDS} for row in csv.DictReader(handle)]


def share_heavy(rows, rng, fraction=0.65):
    shares = [r for r in rows if r["num_gpu"] == "1" and int(r["gpu_milli"]) < 1000]
    singles = [i for i, r in enumerate(rows) if r["num_gpu"] == "1"]
    need = int(fraction * len(singles)) - len(shares)
    wholes = [i for i in singles if int(rows[i]["gpu_milli"]) >= 1000]
    for i in rng.choice(wholes, size=max(0, min(need, len(wholes))), replace=False):
        rows[i] = {**shares[rng.integers(len(shares))], "name": rows[i]["name"]}
    return rows


def multi_heavy(rows, rng, share=0.35):
    multi = [r for r in rows if int(r["num_gpu"]) > 1]
    demand = lambda rs: sum(int(r["num_gpu"]) * min(int(r["gpu_milli"]), 1000) for r in rs)  # noqa: E731
    extra = []
    while demand(multi + extra) < share * demand(rows + extra):
        extra.append(dict(multi[rng.integers(len(multi))]))
    return rows + extra


def cpu_heavy(rows, rng, factor=2.5):
    cpu = [r for r in rows if r["num_gpu"] == "0"]
    return rows + [dict(cpu[rng.integers(len(cpu))]) for _ in range(int((factor - 1) * len(cpu)))]


def typed(rows, rng, fraction=0.25):
    specs = [r["gpu_spec"] for r in read("openb_pod_list_gpuspec10.csv") if r["gpu_spec"]]
    gpu = [i for i, r in enumerate(rows) if r["num_gpu"] != "0"]
    for i in rng.choice(gpu, size=int(fraction * len(gpu)), replace=False):
        rows[i] = {**rows[i], "gpu_spec": specs[rng.integers(len(specs))]}
    return rows


def write(rows, path: Path) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        for i, row in enumerate(rows):
            writer.writerow({**row, "name": f"openb-pod-{i:05d}"})


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    which = sys.argv[2] if len(sys.argv) > 2 else "A"
    recipes = RECIPES_B if which == "B" else RECIPES_A
    seed = 7 if which == "B" else 2023
    for name, recipe in recipes.items():
        rows = recipe(read("openb_pod_list_default.csv"), np.random.default_rng(seed))
        write(rows, out / f"openb_pod_list_{name}.csv")
        print(f"{name}: {len(rows)} pods -> {out / f'openb_pod_list_{name}.csv'}")


RECIPES_A = {
    "share65": lambda rows, rng: share_heavy(rows, rng),
    "multigpu35": lambda rows, rng: multi_heavy(rows, rng),
    "cpu250": lambda rows, rng: cpu_heavy(rows, rng),
    "gpuspec25": lambda rows, rng: typed(rows, rng),
    "mixed": lambda rows, rng: cpu_heavy(typed(share_heavy(rows, rng), rng), rng, 1.5),
}
RECIPES_B = {
    "share80": lambda rows, rng: share_heavy(rows, rng, 0.8),
    "gpuspec40": lambda rows, rng: typed(rows, rng, 0.4),
    "multigpu25": lambda rows, rng: multi_heavy(rows, rng, 0.25),
    "cpu180": lambda rows, rng: cpu_heavy(rows, rng, 1.8),
    "mixedB": lambda rows, rng: share_heavy(typed(multi_heavy(rows, rng, 0.25), rng, 0.15), rng, 0.5),
}


if __name__ == "__main__":
    main()
