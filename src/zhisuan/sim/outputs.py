"""Writers for replay results: per-run curve CSVs (the paper's analysis_*_discrete.csv layout),
a per-policy summary CSV and a PNG plot. Every artefact carries the data attribution."""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zhisuan.sim.bucketing import COLUMNS

ATTRIBUTION = "Data: Alibaba clusterdata cluster-trace-gpu-v2023 (openb), CC BY 4.0, Alibaba Group"
SUMMARY_COLUMNS = (100, 130)


@dataclass(frozen=True)
class RunCurves:
    workload: str
    policy: str
    seed: int
    order: str  # "paper" | "generated"
    alloc: list[float]
    frag: list[float]
    seconds: float


def _fmt(value: float) -> str:
    return "" if math.isnan(value) else repr(float(value))


def write_curves_csv(runs: list[RunCurves], path: Path, metric: str) -> None:
    """One row per (workload, policy, seed): ``workload, sc_policy, seed, 0 … 130``."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["workload", "sc_policy", "seed", *COLUMNS])
        for run in runs:
            writer.writerow([run.workload, run.policy, run.seed, *(_fmt(v) for v in getattr(run, metric))])


def summarise(runs: list[RunCurves]) -> list[dict[str, object]]:
    """Mean ± sample std over seeds at columns 100 and 130, per (workload, policy)."""
    groups: dict[tuple[str, str], list[RunCurves]] = defaultdict(list)
    for run in runs:
        groups[(run.workload, run.policy)].append(run)
    rows: list[dict[str, object]] = []
    for (workload, policy), group in groups.items():
        row: dict[str, object] = {
            "workload": workload,
            "sc_policy": policy,
            "seeds": len(group),
            "order": group[0].order,
            "seconds_mean": round(float(np.mean([g.seconds for g in group])), 3),
        }
        for metric in ("alloc", "frag"):
            for col in SUMMARY_COLUMNS:
                values = np.array([getattr(g, metric)[col] for g in group])
                row[f"{metric}_{col}_mean"] = round(float(values.mean()), 3)
                row[f"{metric}_{col}_std"] = round(float(values.std(ddof=1)), 3) if len(values) > 1 else 0.0
        rows.append(row)
    return rows


def write_summary_csv(rows: list[dict[str, object]], path: Path) -> None:
    if not rows:
        return
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def write_plot(runs: list[RunCurves], path: Path) -> None:
    """Mean allocation and fragmentation curves per (workload, policy) over arrival 0–130 %."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[tuple[str, str], list[RunCurves]] = defaultdict(list)
    for run in runs:
        groups[(run.workload, run.policy)].append(run)
    fig, (ax_alloc, ax_frag) = plt.subplots(1, 2, figsize=(12, 4.5))
    for (workload, policy), group in sorted(groups.items()):
        if len(group) == 1:
            alloc, frag = np.array(group[0].alloc), np.array(group[0].frag)
        else:
            alloc, frag = np.mean([g.alloc for g in group], axis=0), np.mean([g.frag for g in group], axis=0)
        label = f"{policy} ({workload}, {len(group)} seeds)"
        ax_alloc.plot(COLUMNS, alloc, label=label)
        ax_frag.plot(COLUMNS, frag, label=label)
    ax_alloc.set(xlabel="arrived GPU demand (% of capacity)", ylabel="GPU allocation ratio (%)", title="Allocation")
    ax_frag.set(
        xlabel="arrived GPU demand (% of capacity)",
        ylabel="fragmented GPUs (% of all)",
        title="Fragmentation",
    )
    ax_alloc.set_xlim(70, 130)
    ax_alloc.set_ylim(70, 100)
    ax_alloc.legend(fontsize=7)
    fig.text(0.5, 0.005, ATTRIBUTION, ha="center", fontsize=7)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)
