"""Offline packings of an experiment's pods: lower bounds of the optimum, to set beside the upper bound.

An offline packer knows every pod of the experiment (or of its prefix up to a column) and may take
them in any order and drop any. ``best_fit_packing`` places pods in a given sequence, each on the
device where it leaves the least milli free (best-fit decreasing for bin packing):

- a share (``milli < 1000``): among nodes with room (CPU, memory, allowed model, a device with
  ≥ milli free) the (node, device) minimising ``free_d − milli``; ties to the node with the least
  free GPU milli (keep empty nodes empty for whole-GPU pods);
- a whole-device pod (``count`` devices of 1000): the node minimising ``full devices − count``, ties
  to the least free CPU; it takes that node's first ``count`` full devices;
- a CPU-only pod: the fitting node with the least free CPU (they come last and add no GPU milli).

``lp_guided_order`` orders pods by the configuration LP's optimum (``config_bound``): shapes the LP
places whole first, then by the fraction placed, each group largest device demand first — so the pods
the optimum would drop (e.g. 810-milli shares when the 190 holes they leave cannot be filled) are
tried last. With ``classes`` the first pass keeps each shape to the node classes the LP used for it.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from zhisuan.sim.traces import NodeTable, PodTable

MILLI = 1000
Shape = tuple[int, int, int, int, str]
NodeClass = tuple[str, int, int, int]


def _shape(pods: PodTable, p: int) -> Shape:
    return (int(pods.cpu[p]), int(pods.mem[p]), int(pods.milli[p]), int(pods.count[p]), pods.spec[p])


class _Fleet:
    def __init__(self, nodes: NodeTable, cpu_per_gpu: float, stranding_weight: float) -> None:
        self.cpu_per_gpu, self.stranding_weight = cpu_per_gpu, stranding_weight
        widest = int(nodes.gpus.max()) if len(nodes.gpus) else 0
        self.cpu = nodes.cpu.astype(np.int64).copy()
        self.mem = nodes.mem.astype(np.int64).copy()
        present = np.arange(widest)[None, :] < nodes.gpus[:, None]
        self.free = np.where(present, MILLI, -1).astype(np.int64)  # −1: no such device
        self.model = np.array(nodes.model)
        self.node_class = [
            (nodes.model[i], int(nodes.gpus[i]), int(nodes.cpu[i]), int(nodes.mem[i])) for i in range(len(nodes.names))
        ]

    def stranded_after(self, cpu: int, milli_taken: np.ndarray) -> np.ndarray:
        """GPU milli per node that the CPU left after taking ``cpu`` could not feed at ``cpu_per_gpu``."""
        gpu_left = np.where(self.free > 0, self.free, 0).sum(axis=1) - milli_taken
        fed = (self.cpu - cpu) * MILLI / max(self.cpu_per_gpu, 1.0)
        return np.maximum(0.0, gpu_left - fed)

    def place(self, pods: PodTable, p: int, allowed_nodes: np.ndarray | None) -> bool:
        k, m = int(pods.count[p]), int(pods.milli[p])
        ok = (self.cpu >= pods.cpu[p]) & (self.mem >= pods.mem[p])
        if pods.spec[p]:
            ok &= np.isin(self.model, pods.spec[p].split("|"))
        if allowed_nodes is not None:
            ok &= allowed_nodes
        if k == 0:
            node = int(np.argmin(np.where(ok, self.cpu, np.iinfo(np.int64).max))) if ok.any() else -1
            devices: list[int] = []
        elif m < MILLI:
            fits = ok[:, None] & (self.free >= m)
            if not fits.any():
                return False
            penalty = self.stranding_weight * self.stranded_after(int(pods.cpu[p]), np.full(len(self.cpu), m))
            cost = np.where(fits, self.free - m + penalty[:, None], np.inf)
            row, column = np.unravel_index(int(np.argmin(cost)), cost.shape)
            node, devices = int(row), [int(column)]
        else:
            full = (self.free == MILLI).sum(axis=1)
            fits = ok & (full >= k)
            if not fits.any():
                return False
            penalty = self.stranding_weight * self.stranded_after(int(pods.cpu[p]), np.full(len(self.cpu), k * MILLI))
            cost = np.where(fits, (full - k) * MILLI + penalty, np.inf)
            node = int(np.argmin(cost))
            devices = np.flatnonzero(self.free[node] == MILLI)[:k].tolist()
        if node < 0:
            return False
        self.cpu[node] -= pods.cpu[p]
        self.mem[node] -= pods.mem[p]
        self.free[node, devices] -= m
        return True


def best_fit_packing(
    nodes: NodeTable,
    pods: PodTable,
    sequence: np.ndarray,
    classes: Mapping[Shape, set[NodeClass]] | None = None,
    stranding_weight: float = 1.0,
    ratio_quantile: float | None = None,
) -> tuple[int, np.ndarray]:
    """(GPU milli allocated, bool per position of ``sequence``: placed). With ``classes``, a first pass
    places each pod only on nodes of its shape's classes, a second pass the rest anywhere."""
    gpu = pods.count[sequence] > 0
    demand = int((pods.milli[sequence] * pods.count[sequence]).sum())
    cpu_per_gpu = float(pods.cpu[sequence][gpu].sum()) * MILLI / demand if demand else 0.0
    if ratio_quantile is not None and demand:
        g = sequence[gpu]
        cpu_per_gpu = float(np.quantile(pods.cpu[g] * MILLI / (pods.milli[g] * pods.count[g]), ratio_quantile))
    fleet = _Fleet(nodes, cpu_per_gpu, stranding_weight)
    placed = np.zeros(len(sequence), bool)
    passes = [True, False] if classes is not None else [False]
    for restricted in passes:
        for i, p in enumerate(sequence.tolist()):
            if placed[i]:
                continue
            allowed = None
            if restricted and classes is not None:
                wanted = classes.get(_shape(pods, p), set())
                allowed = np.array([c in wanted for c in fleet.node_class])
            placed[i] = fleet.place(pods, p, allowed)
    used = int((pods.milli[sequence] * pods.count[sequence])[placed].sum())
    return used, placed


def largest_first_order(pods: PodTable, events: np.ndarray) -> np.ndarray:
    """Device-using pods by devices, then milli, then CPU, all descending; CPU-only pods last."""
    keys = (-pods.cpu[events], -pods.milli[events], -pods.count[events], pods.count[events] == 0)
    return events[np.lexsort(keys)]


def lp_guided_order(
    pods: PodTable, events: np.ndarray, placed: Mapping[Shape, Mapping[NodeClass, float]]
) -> np.ndarray:
    """Shapes the LP optimum places fully first, then by fraction placed (descending), each group
    largest first; CPU-only pods last. ``placed``: ``ConfigurationBound.placed``."""
    arrived: dict[Shape, int] = {}
    for p in events.tolist():
        arrived[_shape(pods, p)] = arrived.get(_shape(pods, p), 0) + 1
    share = np.array(
        [
            min(1.0, sum(placed.get(_shape(pods, p), {}).values()) / arrived[_shape(pods, p)]) if pods.count[p] else 0.0
            for p in events.tolist()
        ]
    )
    group = -np.round(share, 3)
    keys = (-pods.cpu[events], -pods.milli[events], -pods.count[events], group, pods.count[events] == 0)
    return events[np.lexsort(keys)]
