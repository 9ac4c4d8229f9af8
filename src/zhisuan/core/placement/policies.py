"""Placement policies: which score plugin, how scores are normalised, how a node and devices are chosen.

The six policies of the FGD paper's evaluation (Random, DotProd, GpuClustering, GpuPacking, BestFit,
FGD) as specified in docs fgd-protocol.md §4, zhisuan's own default (``zhisuan_score``) and its variant with a
look-ahead on share leftovers (``leftover_score``, BENCHMARKS.md Placement §12).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from zhisuan.core.placement import scores
from zhisuan.core.placement.fragmentation import TargetWorkload
from zhisuan.core.placement.leftover_score import leftover_score
from zhisuan.core.placement.node_view import NodeView
from zhisuan.core.placement.zhisuan_score import zhisuan_score

ScoreFn = Callable[[NodeView, TargetWorkload | None], scores.NodeScores]


@dataclass(frozen=True)
class Policy:
    name: str
    score: ScoreFn
    device_method: str = "best"  # best | random | scored (see devices.choose_slots)
    normalise: bool = False  # BestFit's min–max normalisation over the feasible nodes
    uniform: bool = False  # Random: pick uniformly among feasible nodes
    needs_workload: bool = False  # uses the target workload (fragmentation)


POLICIES: dict[str, Policy] = {
    p.name: p
    for p in (
        Policy("random", scores.constant, device_method="random", uniform=True),
        Policy("dotprod", scores.dot_product),
        Policy("gpu-clustering", scores.gpu_clustering),
        Policy("gpu-packing", scores.gpu_packing),
        Policy("best-fit", scores.best_fit, normalise=True),
        Policy("fgd", scores.fgd, device_method="scored", needs_workload=True),
        Policy("zhisuan", zhisuan_score, device_method="scored", needs_workload=True),
        Policy("zhisuan-leftover", leftover_score, device_method="scored", needs_workload=True),
    )
}
DEFAULT_POLICY = "zhisuan"
PAPER_NAMES = {
    "random": "01-Random",
    "dotprod": "02-DotProd",
    "gpu-clustering": "03-GpuClustering",
    "gpu-packing": "04-GpuPacking",
    "best-fit": "05-BestFit",
    "fgd": "06-FGD",
    "zhisuan": "07-Zhisuan",
}


def get_policy(name: str) -> Policy:
    try:
        return POLICIES[name]
    except KeyError:
        raise ValueError(f"unknown policy {name!r}; choose one of {', '.join(POLICIES)}") from None
