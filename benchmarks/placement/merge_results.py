"""Merge replay output directories (later ones replace earlier rows of the same workload/policy/seed)
and rewrite curves, summary and plot into OUT_DIR.

Usage: uv run python benchmarks/placement/merge_results.py OUT_DIR IN_DIR [IN_DIR ...]
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from zhisuan.sim.outputs import RunCurves, summarise, write_curves_csv, write_plot, write_summary_csv


def read(directory: Path, metric: str) -> dict[tuple[str, str, int], list[float]]:
    with (directory / f"analysis_{metric}_discrete.csv").open() as handle:
        return {
            (row["workload"], row["sc_policy"], int(row["seed"])): [float(row[str(c)] or "nan") for c in range(131)]
            for row in csv.DictReader(handle)
        }


def main() -> None:
    out, inputs = Path(sys.argv[1]), [Path(p) for p in sys.argv[2:]]
    alloc: dict[tuple[str, str, int], list[float]] = {}
    frag: dict[tuple[str, str, int], list[float]] = {}
    for directory in inputs:
        alloc.update(read(directory, "allo"))
        frag.update(read(directory, "frag"))
    runs = [
        RunCurves(w, p, s, "see BENCHMARKS.md", alloc[(w, p, s)], frag[(w, p, s)], float("nan"))
        for (w, p, s) in sorted(alloc)
    ]
    out.mkdir(parents=True, exist_ok=True)
    write_curves_csv(runs, out / "analysis_allo_discrete.csv", "alloc")
    write_curves_csv(runs, out / "analysis_frag_discrete.csv", "frag")
    write_summary_csv(summarise(runs), out / "summary.csv")
    write_plot(runs, out / "replay.png")
    print(f"{len(runs)} runs -> {out}")


if __name__ == "__main__":
    main()
