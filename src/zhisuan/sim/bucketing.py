"""The paper's discrete curves (experiments/analysis/merge_*_discrete.py), reproduced exactly.

For each event: ``arrive = round(arrived / total_gpus / 10, 0)`` (percent of GPU capacity, numpy
rounding) and ``alloc = round(used / total_gpus / 10, 2)``. Column ``a`` (0..130) is the mean of
``alloc`` over events with ``arrive == a`` (or, if none, ``a−1 ≤ arrive ≤ a+1``; else NaN), rounded
to 2 decimals. Fragmentation: ``round(100 · mean(frag_milli) / 1000 / total_gpus, 2)`` over the same
events, with each event's cluster fragmentation first rounded to 2 decimals as in the Go log.
"""

from __future__ import annotations

import numpy as np

COLUMNS = tuple(range(131))


def _bucket_means(arrive: np.ndarray, values: np.ndarray) -> list[float]:
    out = []
    for a in COLUMNS:
        chosen = values[arrive == a]
        if not len(chosen):
            chosen = values[(arrive >= a - 1) & (arrive <= a + 1)]
        out.append(float(np.mean(chosen)) if len(chosen) else float("nan"))
    return out


def arrive_ratio(arrived: np.ndarray, total_gpus: int) -> np.ndarray:
    return np.round(arrived / total_gpus / 10, 0)


def alloc_discrete(arrived: np.ndarray, used: np.ndarray, total_gpus: int) -> list[float]:
    """Allocation ratio (% of GPU capacity) at arrival columns 0..130."""
    alloc = np.round(used / total_gpus / 10, 2)
    return [round(np.float64(m), 2) for m in _bucket_means(arrive_ratio(arrived, total_gpus), alloc)]


def frag_discrete(arrived: np.ndarray, frag_milli: np.ndarray, total_gpus: int) -> list[float]:
    """Fragmented GPUs (% of all GPUs) at arrival columns 0..130."""
    means = _bucket_means(arrive_ratio(arrived, total_gpus), np.round(frag_milli, 2))
    return [round(np.float64(100 * m / 1000 / total_gpus), 2) for m in means]
