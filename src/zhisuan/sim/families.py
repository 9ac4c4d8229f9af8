"""The openb trace families of the FGD paper, as the family tables compare policies on them.

BENCHMARKS.md Placement §5 and §13 (``benchmarks/placement/family_tables.py``, ``upper_reference.py``) group
the 17 published traces by family, replay each on one arrival order per seed and print mean ± sample
standard deviation over the seeds. Data: Alibaba clusterdata cluster-trace-gpu-v2023 (openb), CC BY 4.0.
"""

from __future__ import annotations

import csv
import statistics
from pathlib import Path
from typing import Any

from zhisuan.sim.orders import ArrivalOrder, generate_order, load_paper_order, paper_order_files
from zhisuan.sim.traces import NodeTable, PodTable

OPENB_FAMILIES = {
    "cpu": ["cpu250", "cpu200", "cpu100", "cpu050"],
    "default": ["default"],
    "gpushare": ["gpushare40", "gpushare60", "gpushare80", "gpushare100"],
    "gpuspec": ["gpuspec10", "gpuspec20", "gpuspec25", "gpuspec33"],
    "multigpu": ["multigpu20", "multigpu30", "multigpu40", "multigpu50"],
}


def family_order(traces_dir: Path, trace: str, seed: int, pods: PodTable, nodes: NodeTable) -> ArrivalOrder:
    """The paper's own order for ``default`` (when ``traces_dir/paper-order`` holds it), else one generated from
    ``seed`` — every other trace generated the same way, so the tables compare like with like."""
    order_dir = traces_dir / "paper-order"
    shipped = all(p.is_file() for p in paper_order_files(order_dir, trace, seed))
    if shipped and trace == "default":
        return load_paper_order(order_dir, trace, seed, pods, nodes)
    return generate_order(pods, nodes, seed)


def mean_std(values: list[float], signed: bool = False) -> str:
    """``mean ± sample std`` to two decimals (``+`` on a positive mean when ``signed``; "–" for no values)."""
    if not values:
        return "–"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    mean = f"{statistics.mean(values):+.2f}" if signed else f"{statistics.mean(values):.2f}"
    return f"{mean} ± {std:.2f}"


def rows_done(path: Path, fields: tuple[str, ...]) -> set[tuple[str, ...]]:
    """The ``fields`` of every row already in the results file ``path`` (none when it does not exist yet):
    what a resumed run skips."""
    if not path.is_file():
        return set()
    with path.open() as handle:
        return {tuple(r[f] for f in fields) for r in csv.DictReader(handle)}


def append_row(path: Path, header: list[str], row: list[Any]) -> None:
    """Append one result row to a CSV file (its header first when the file is new): rows land as each experiment
    finishes, so an interrupted run keeps them and a rerun skips them."""
    with path.open("a", newline="") as handle:
        writer = csv.writer(handle)
        if handle.tell() == 0:
            writer.writerow(header)
        writer.writerow(row)


def reference_rows(
    bounds: list[dict[str, str]], value: dict[tuple[str, str, str, str], float], trace: str, column: str
) -> tuple[list[float], list[float], list[float], list[float], list[str]]:
    """FGD, zhisuan, bound and best packing found per seed of ``trace`` at ``column`` ("100" / "130").

    ``bounds`` are ``upper_reference.py`` rows (trace, seed, column, bound, own_best); ``value`` maps
    (trace, seed, policy, column) to an allocation of the online runs (and ``offline:zhisuan`` packings).
    Only seeds with a bound and both policies' runs count. The best packing found per seed is the largest
    of the reference's own packings, the two online runs and the offline packing (column 130 only): any
    packing is a lower bound of the optimum; its source is returned beside it.
    """
    rows = [r for r in bounds if r["trace"] == trace and r["column"] == column]
    rows = [r for r in rows if all((trace, r["seed"], p, column) in value for p in ("fgd", "zhisuan"))]
    fgd = [value[(trace, r["seed"], "fgd", column)] for r in rows]
    zhi = [value[(trace, r["seed"], "zhisuan", column)] for r in rows]
    best, sources = [], []
    for r, f, z in zip(rows, fgd, zhi, strict=True):
        offline = value.get((trace, r["seed"], "offline:zhisuan", column)) if column == "130" else None
        found = {"own": float(r["own_best"]), "zhisuan": z, "fgd": f, "offline-lf": offline or 0.0}
        winner = max(found, key=lambda k: found[k])
        best.append(found[winner])
        sources.append(winner)
    return fgd, zhi, [float(r["bound"]) for r in rows], best, sources


def allocations(paths: list[Path]) -> dict[tuple[str, str, str, str], float]:
    """(trace, seed, policy, column) → allocation % from ``family_tables.py`` runs files (later files win)."""
    value: dict[tuple[str, str, str, str], float] = {}
    for path in paths:
        with path.open() as handle:
            for r in csv.DictReader(handle):
                for column in ("100", "130"):
                    value[(r["trace"], r["seed"], r["policy"], column)] = float(r[f"alloc_{column}"])
    return value


def reference_bounds(path: Path) -> list[dict[str, str]]:
    """``upper_reference.py`` rows, one per (trace, seed, column): the last written wins."""
    with path.open() as handle:
        return list({(r["trace"], r["seed"], r["column"]): r for r in csv.DictReader(handle)}.values())
