"""A true upper bound on the GPU allocation of any placement: the configuration LP over GPU devices.

The aggregate LP of ``upper_bound.lp_upper_bound`` lets a share pod spill over devices, so it reaches
100 % and says nothing. Here a GPU device is filled by a *configuration* ``q``: a multiset of milli
values (``k_qm`` slots of ``m`` milli) with ``Σ_m m·k_qm ≤ 1000`` — an 810-milli share leaves a
190-milli hole that only pods of ≤ 190 milli can use, and the LP knows it (Gilmore–Gomory).

Node classes ``c`` (identical nodes: model, devices ``G_c``, CPU, memory; ``n_c`` nodes), pod shapes
``s`` (CPU, memory, milli ``m_s``, devices ``k_s``, allowed models; ``a_s`` pods arrived). Variables:
``w_sc ≥ 0`` pods of shape s on class c (only if s fits an *empty* node of c: CPU, memory,
``k_s ≤ G_c``, allowed model); ``y_cq ≥ 0`` devices of class c filled with configuration q::

    maximise   Σ_sc m_s·k_s·w_sc                                          (GPU milli allocated)
    subject to Σ_c w_sc ≤ a_s                                            (each pod at most once)
               Σ_{s: m_s = m} k_s·w_sc ≤ Σ_q k_qm·y_cq    for every c, m  (slots of m milli)
               Σ_q y_cq ≤ G_c·n_c                                         (devices of the class)
               Σ_s cpu_s·w_sc ≤ cpu_c·n_c,  Σ_s mem_s·w_sc ≤ mem_c·n_c    (CPU, memory of the class)

Why it bounds every packing (online or offline, any order): take any feasible placement of any
subset of the pods. Set ``w_sc`` = pods of shape s it put on class c; each device of class c holds
a multiset of slots (a share pod takes ``m`` milli of one device; a k-device pod ``1000`` on each of
k devices) summing to ≤ 1000 — that is a configuration, so count devices per configuration into
``y_cq`` (an empty device is the empty configuration, dropped). Every constraint holds, and the
objective equals the placement's allocated milli. So LP optimum ≥ optimum ≥ any policy's allocation.
CPU-only pods allocate no GPU milli and only consume CPU, so leaving them out can only raise the bound.
What it relaxes: CPU and memory per class, not per node; a k-device pod's slots need not be on one node.

Column generation: start from the single-value configurations; after each solve, for each class, the
most valuable configuration under the slot duals ``p_cm`` is an unbounded knapsack
``max Σ_m p_cm·k_m  s.t.  Σ_m m·k_m ≤ 1000`` (dynamic programme over milli); it enters if its value
exceeds the device dual of the class. When none enters, the restricted LP is the full LP's optimum.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import highspy
import numpy as np

from zhisuan.sim.traces import NodeTable, PodTable
from zhisuan.sim.upper_bound import node_classes, pod_shapes

MILLI = 1000
_TOLERANCE = 1e-7


@dataclass(frozen=True)
class ConfigurationBound:
    milli: float  # LP optimum: GPU milli, at least what any placement of these pods allocates
    configurations: int  # device configurations generated
    rounds: int  # column-generation rounds
    # Per pod shape (cpu, mem, milli, count, spec): pods of it the LP optimum places, per node class
    # (model, gpus, cpu, mem) — the guide of ``offline_packing.lp_guided_packing``.
    placed: dict[tuple[int, int, int, int, str], dict[tuple[str, int, int, int], float]] = field(default_factory=dict)

    def percent(self, total_gpus: int) -> float:
        """The bound as a percentage of GPU capacity, rounded *up* to 2 decimals (still a bound)."""
        return math.ceil(round(100.0 * self.milli / (MILLI * total_gpus), 6) * 100) / 100


def _classes(nodes: NodeTable) -> list[tuple[tuple[str, int, int, int], int]]:
    """The node classes that have devices (``upper_bound.node_classes`` without the CPU-only ones)."""
    return [(key, count) for key, count in node_classes(nodes) if key[1] > 0]


class _Model:
    """The restricted master LP (minimising −milli, so HiGHS duals of ≤ rows are ≤ 0)."""

    def __init__(self, nodes: NodeTable, pods: PodTable, events: np.ndarray) -> None:
        self.classes, shapes = _classes(nodes), pod_shapes(pods, events)
        self.shapes = [shape for shape, _ in shapes]
        self.pod_columns: list[tuple[int, int]] = []  # (shape, class) of the first columns
        self.values = sorted({shape[2] for shape, _ in shapes})
        self.solver = highspy.Highs()
        self.solver.setOptionValue("output_flag", False)
        inf = highspy.kHighsInf
        n_shapes, n_values = len(shapes), len(self.values)
        # Rows: shapes, then per class: the slot rows of every milli value, devices, CPU, memory.
        self.slot_row = {
            (c, v): n_shapes + c * (n_values + 3) + j
            for c in range(len(self.classes))
            for j, v in enumerate(self.values)
        }
        self.device_row = [n_shapes + c * (n_values + 3) + n_values for c in range(len(self.classes))]
        upper: list[float] = [float(a) for _, a in shapes]
        for (_, gpus, cpu, mem), n in self.classes:
            upper += [0.0] * n_values + [float(gpus * n), float(cpu * n), float(mem * n)]
        self.solver.addRows(len(upper), np.full(len(upper), -inf), np.array(upper), 0, [], [], [])
        for s, ((cpu, mem, milli, count, spec), _) in enumerate(shapes):
            allowed = set(spec.split("|")) if spec else None
            for c, ((model, gpus, ccpu, cmem), _) in enumerate(self.classes):
                if cpu <= ccpu and mem <= cmem and count <= gpus and (allowed is None or model in allowed):
                    device = self.device_row[c]
                    rows = [s, self.slot_row[(c, milli)], device + 1, device + 2]
                    self._add_column(-float(milli * count), rows, [1.0, float(count), float(cpu), float(mem)])
                    self.pod_columns.append((s, c))
        self.configurations = 0
        for c in range(len(self.classes)):
            for v in self.values:
                self.add_configuration(c, {v: MILLI // v})

    def _add_column(self, cost: float, rows: list[int], values: list[float]) -> None:
        kept = [(r, a) for r, a in zip(rows, values, strict=True) if a != 0.0]
        self.solver.addCol(
            cost,
            0.0,
            highspy.kHighsInf,
            len(kept),
            np.array([r for r, _ in kept], np.int32),
            np.array([a for _, a in kept]),
        )

    def add_configuration(self, c: int, slots: dict[int, int]) -> None:
        rows = [self.device_row[c]] + [self.slot_row[(c, v)] for v in slots]
        self._add_column(0.0, rows, [1.0] + [-float(k) for k in slots.values()])
        self.configurations += 1

    def solve(self) -> tuple[float, np.ndarray]:
        self.solver.run()
        status = self.solver.getModelStatus()
        if status != highspy.HighsModelStatus.kOptimal:
            raise RuntimeError(f"configuration LP not solved: {status}")
        return -float(self.solver.getInfo().objective_function_value), np.array(self.solver.getSolution().row_dual)

    def placed(self) -> dict[tuple[int, int, int, int, str], dict[tuple[str, int, int, int], float]]:
        values = self.solver.getSolution().col_value
        out: dict[tuple[int, int, int, int, str], dict[tuple[str, int, int, int], float]] = {}
        for j, (s, c) in enumerate(self.pod_columns):
            if values[j] > 1e-9:
                out.setdefault(self.shapes[s], {})[self.classes[c][0]] = float(values[j])
        return out


def best_configuration(values: list[int], prices: list[float]) -> tuple[float, dict[int, int]]:
    """Unbounded knapsack: the multiset of milli values (Σ ≤ 1000) of largest total price."""
    step = math.gcd(MILLI, *values)
    cells = MILLI // step
    best = [0.0] * (cells + 1)
    last: list[int | None] = [None] * (cells + 1)
    for cap in range(1, cells + 1):
        best[cap], last[cap] = best[cap - 1], None
        for j, v in enumerate(values):
            w = v // step
            if prices[j] > 0 and w <= cap and best[cap - w] + prices[j] > best[cap] + 1e-12:
                best[cap], last[cap] = best[cap - w] + prices[j], j
    chosen: Counter[int] = Counter()
    cap = cells
    while cap > 0:
        item = last[cap]
        if item is None:
            cap -= 1
            continue
        chosen[values[item]] += 1
        cap -= values[item] // step
    return best[cells], dict(chosen)


def configuration_bound(
    nodes: NodeTable, pods: PodTable, events: np.ndarray, max_rounds: int = 500
) -> ConfigurationBound:
    """The configuration LP optimum for the device-using pods of ``events`` (see the module docstring)."""
    model = _Model(nodes, pods, events)
    if not model.values:
        return ConfigurationBound(0.0, 0, 0)
    for rounds in range(1, max_rounds + 1):
        milli, duals = model.solve()
        entered = 0
        for c in range(len(model.classes)):
            prices = [-duals[model.slot_row[(c, v)]] for v in model.values]
            value, slots = best_configuration(model.values, prices)
            if value > -duals[model.device_row[c]] + _TOLERANCE * max(1.0, value):
                model.add_configuration(c, slots)
                entered += 1
        if not entered:
            return ConfigurationBound(milli, model.configurations, rounds, model.placed())
    raise RuntimeError(f"column generation did not converge in {max_rounds} rounds")
