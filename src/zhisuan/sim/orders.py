"""Arrival orders and node tie-break priorities: the paper's shipped ones, or generated from a seed.

An experiment schedules ``events`` (indices into the pod table) one at a time; among nodes with equal
score the one with the smallest ``tie_rank`` wins. The paper's orders (Go math/rand) are shipped as
``paper-order/<trace>-seed<S>.events.csv.gz`` and ``.node-order.csv.gz``. Generated orders follow the
same recipe with numpy's PCG64: sort pods by name, shuffle, then tune the GPU demand to 130 % of
capacity (append uniform draws from the original trace until the next draw's per-device milli would
exceed the target; or remove random pods while above it), and draw a random node priority.
"""

from __future__ import annotations

import csv
import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zhisuan.sim.traces import NodeTable, PodTable, TraceFormatError

TUNE_RATIO = 1.3


@dataclass(frozen=True)
class ArrivalOrder:
    events: np.ndarray  # int64[E] pod indices, in scheduling order
    tie_rank: np.ndarray  # int64[N] per node (node-table order), smaller wins ties
    source: str  # "paper" or "generated"


def trace_name(pod_path: Path) -> str:
    """``openb_pod_list_default.csv`` (or ``.csv.gz``) -> ``default``."""
    stem = pod_path.name.removesuffix(".gz").removesuffix(".csv")
    return stem.removeprefix("openb_pod_list_")


def paper_order_files(order_dir: Path, trace: str, seed: int) -> tuple[Path, Path]:
    return (
        order_dir / f"{trace}-seed{seed}.events.csv.gz",
        order_dir / f"{trace}-seed{seed}.node-order.csv.gz",
    )


def _gz_rows(path: Path, columns: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    with gzip.open(path, "rt", newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise TraceFormatError(path, 1, missing[0], "missing column")
        return [(reader.line_num, row) for row in reader]


def load_paper_order(order_dir: Path, trace: str, seed: int, pods: PodTable, nodes: NodeTable) -> ArrivalOrder:
    """Read the shipped order; tuned copies ``<source>-tuned-<i>`` get the resources of ``source_pod``."""
    events_path, nodes_path = paper_order_files(order_dir, trace, seed)
    pod_index = {name: i for i, name in enumerate(pods.names)}
    events = []
    for line, row in _gz_rows(events_path, ("event", "pod", "source_pod")):
        if row["source_pod"] not in pod_index:
            raise TraceFormatError(events_path, line, "source_pod", f"pod {row['source_pod']!r} is not in the trace")
        events.append(pod_index[row["source_pod"]])
    node_index = {name: i for i, name in enumerate(nodes.names)}
    rank = np.full(len(nodes.names), -1, np.int64)
    for line, row in _gz_rows(nodes_path, ("node", "tie_break_rank")):
        if row["node"] not in node_index:
            raise TraceFormatError(nodes_path, line, "node", f"node {row['node']!r} is not in the node list")
        rank[node_index[row["node"]]] = int(row["tie_break_rank"])
    if (rank < 0).any():
        raise TraceFormatError(nodes_path, 0, "node", f"{int((rank < 0).sum())} nodes have no tie_break_rank")
    return ArrivalOrder(np.array(events, np.int64), rank, "paper")


def generate_order(pods: PodTable, nodes: NodeTable, seed: int, tune: float = TUNE_RATIO) -> ArrivalOrder:
    """Shuffle, tune to ``tune`` × GPU capacity and draw a node priority, all from ``seed``."""
    rng = np.random.default_rng(seed)
    by_name = np.array(sorted(range(len(pods)), key=lambda i: pods.names[i]), np.int64)
    order = list(by_name[rng.permutation(len(by_name))])
    demand = pods.gpu_milli()
    total = int(demand.sum())
    target = tune * float(nodes.total_gpus * 1000)
    if 0 < total < target:
        while True:
            pick = int(by_name[rng.integers(len(by_name))])
            if total + pods.milli[pick] > target:
                break
            total += int(demand[pick])
            order.append(pick)
    while total > target:
        gone = order.pop(int(rng.integers(len(order))))
        total -= int(demand[gone])
    return ArrivalOrder(np.array(order, np.int64), rng.permutation(len(nodes.names)).astype(np.int64), "generated")
