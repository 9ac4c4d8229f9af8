"""An upper reference for any placement policy: the LP relaxation of packing the same pods offline.

For an experiment's arrival order (the pods of ``events``), group nodes into classes ``c`` of identical
nodes (model, devices, CPU, memory; ``n_c`` nodes) and pods into shapes ``s`` (CPU, memory, milli per
device, devices, allowed models; ``a_s`` pods). With ``x_sc ≥ 0`` pods of shape s on class c::

    maximise   Σ_sc x_sc · milli_s·count_s                        (GPU milli allocated)
    subject to Σ_c x_sc ≤ a_s                                     (each pod at most once; any may be dropped)
               Σ_s x_sc · milli_s·count_s ≤ 1000·gpus_c·n_c       (devices of the class)
               Σ_s x_sc · cpu_s ≤ cpu_c·n_c,  Σ_s x_sc · mem_s ≤ mem_c·n_c
               x_sc = 0 unless s fits an empty node of c (CPU, memory, device count, allowed model)

Every packing of the pods — by any online policy, in any order, with departures or not — is a feasible
integral point of this LP, so its optimum bounds the allocation any policy can reach once all pods have
arrived (column 130 of the paper's curves). It is a relaxation (pods may split across the nodes of a
class, CPU-only pods may be dropped for free), so the true optimum may lie below it. On the openb
traces it is 100 % everywhere (shares spill across devices); ``config_bound.configuration_bound`` is the
bound that says something.
"""

from __future__ import annotations

from collections import Counter

import highspy
import numpy as np

from zhisuan.sim.orders import ArrivalOrder
from zhisuan.sim.traces import NodeTable, PodTable


def node_classes(nodes: NodeTable) -> list[tuple[tuple[str, int, int, int], int]]:
    """((model, gpus, cpu milli, memory MiB), number of nodes) for each class of identical nodes."""
    counts = Counter(
        (nodes.model[i], int(nodes.gpus[i]), int(nodes.cpu[i]), int(nodes.mem[i])) for i in range(len(nodes.names))
    )
    return sorted(counts.items())


def pod_shapes(pods: PodTable, events: np.ndarray) -> list[tuple[tuple[int, int, int, int, str], int]]:
    """((cpu, mem, milli, count, spec), number of events) over the device-using pods of ``events``."""
    counts = Counter(
        (int(pods.cpu[p]), int(pods.mem[p]), int(pods.milli[p]), int(pods.count[p]), pods.spec[p])
        for p in events.tolist()
        if pods.count[p] > 0
    )
    return sorted(counts.items())


def lp_upper_bound(nodes: NodeTable, pods: PodTable, events: np.ndarray) -> float:
    """The LP optimum above, as GPU milli (divide by 1000·total GPUs for the allocation ratio)."""
    classes, shapes = node_classes(nodes), pod_shapes(pods, events)
    cols: list[tuple[int, int]] = []
    for s, ((cpu, mem, _, count, spec), _) in enumerate(shapes):
        allowed = set(spec.split("|")) if spec else None
        for c, ((model, gpus, ccpu, cmem), _) in enumerate(classes):
            if cpu <= ccpu and mem <= cmem and count <= gpus and (allowed is None or model in allowed):
                cols.append((s, c))
    gpu = np.array([shapes[s][0][2] * shapes[s][0][3] for s, _ in cols], np.float64)
    rows: list[tuple[float, list[int], list[float]]] = []  # (upper bound, columns, coefficients)
    for s, (_, available) in enumerate(shapes):
        rows.append((float(available), [j for j, (t, _) in enumerate(cols) if t == s], []))
    for c, ((_, gpus, ccpu, cmem), n) in enumerate(classes):
        mine = [j for j, (_, d) in enumerate(cols) if d == c]
        rows.append((1000.0 * gpus * n, mine, [gpu[j] for j in mine]))
        rows.append((float(ccpu * n), mine, [float(shapes[cols[j][0]][0][0]) for j in mine]))
        rows.append((float(cmem * n), mine, [float(shapes[cols[j][0]][0][1]) for j in mine]))
    return _solve(gpu, rows)


def _solve(objective: np.ndarray, rows: list[tuple[float, list[int], list[float]]]) -> float:
    solver = highspy.Highs()
    solver.setOptionValue("output_flag", False)
    empty = np.zeros(0, dtype=np.int32)
    n = len(objective)
    solver.addCols(n, objective, np.zeros(n), np.full(n, highspy.kHighsInf), 0, empty, empty, np.zeros(0))
    starts: list[int] = []
    index: list[int] = []
    value: list[float] = []
    for _, columns, coefficients in rows:
        starts.append(len(index))
        index.extend(columns)
        value.extend(coefficients or [1.0] * len(columns))
    upper = np.array([r[0] for r in rows])
    solver.addRows(
        len(rows),
        np.zeros(len(rows)),
        upper,
        len(index),
        np.array(starts, np.int32),
        np.array(index, np.int32),
        np.array(value, np.float64),
    )
    solver.changeObjectiveSense(highspy.ObjSense.kMaximize)
    solver.run()
    if solver.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        raise RuntimeError(f"upper-bound LP not solved: {solver.getModelStatus()}")
    return float(solver.getInfo().objective_function_value)


def offline_order(pods: PodTable, order: ArrivalOrder) -> ArrivalOrder:
    """The same pods, sorted as an offline packer that knows them all would take them: largest device
    demand first (devices, then milli per device), type-constrained before flexible pods of the same size,
    more CPU first; CPU-only pods last (they add no device allocation and may be dropped if no room)."""
    events = order.events
    typed = np.array([1 if pods.spec[p] else 0 for p in events.tolist()])
    keys = (-pods.cpu[events], -typed, -pods.milli[events], -pods.count[events], pods.count[events] == 0)
    return ArrivalOrder(events[np.lexsort(keys)], order.tie_rank, f"offline-{order.source}")
