"""The FGD paper's fragmentation measure (Weng et al., ATC'23, §5 of docs fgd-protocol.md), vectorised.

Target workload: the most frequent task shapes ``t`` of a trace with weights ``p_t`` (sum 1).
For a node n with idle device milli ``I_n = Σ_g left_g`` and a task t::

    frag(n,t) = I_n                            if t is CPU-only, or t's type list excludes n's model
              = Σ_{g: left_g < t.milli} left_g  if ≥ t.count devices have left_g ≥ t.milli, cpuL_n ≥ t.cpu
                                               (Q3; otherwise I_n: lacks GPU and/or CPU)
    F_n = Σ_t p_t · frag(n,t)

For bit-exactness with the Go simulator the terms are accumulated into seven buckets in task order
(Q1=0, Q2=1, Q3=2, Q4=3, XL=4, XR=5, NA=6; Q3's fragment part goes to Q2) and
``F = ((((d0 + d1) + d3) + d4) + d5) + d6``. Sequential per-bucket sums are done with ``cumsum``
(strictly left to right; adding 0.0 for tasks of other buckets is exact).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

import numpy as np

TaskShape = tuple[int, int, int, str]  # (cpu milli, milli per device, device count, "|"-joined models or "")


@dataclass(frozen=True)
class TargetWorkload:
    """Typical task shapes as arrays over T tasks; ``access[t, model]``: t may use the model."""

    cpu: np.ndarray  # int64[T]
    milli: np.ndarray  # int64[T]
    count: np.ndarray  # int64[T]
    weight: np.ndarray  # float64[T]
    access: np.ndarray  # bool[T, M+1]; last column is "no model" (code -1)
    shapes: tuple[TaskShape, ...]
    cpu_per_device: float = 0.0  # κ = Σ p·cpu / Σ p·milli·count/1000 over device tasks (0 if none)

    @property
    def size(self) -> int:
        return len(self.shapes)

    @cached_property
    def contested_models(self) -> np.ndarray:
        """bool[M+1]: models some type-constrained typical task may use (that demand depends on them)."""
        typed = ~self.access[:, -1] & (self.milli > 0)
        return np.asarray(self.access[typed].any(axis=0))

    @cached_property
    def milli_levels(self) -> tuple[np.ndarray, np.ndarray]:
        """(distinct milli values, index of each task's value)."""
        levels, task_level = np.unique(self.milli, return_inverse=True)
        return levels, task_level


def typical_shapes(shapes: Iterable[TaskShape], coverage_percent: int = 95) -> list[tuple[TaskShape, float]]:
    """Most frequent shapes covering ≥ coverage of all tasks, with renormalised weights (GetTypicalPods).

    Sorted by count descending, ties by shape descending; ``p_t = (count_t/total) / (cum/total)``.
    If every shape is needed, weights stay ``count_t/total``.
    """
    counts = Counter(shapes)
    total = float(sum(counts.values()))
    ordered = sorted(counts.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)
    expected = float(coverage_percent) * total / 100.0
    taken: list[tuple[TaskShape, float]] = []
    cumulative = 0.0
    for shape, count in ordered:
        if cumulative >= expected:
            break
        cumulative += count
        taken.append((shape, count / total))
    if len(taken) == len(ordered):
        return taken
    return [(shape, share / (cumulative / total)) for shape, share in taken]


def target_workload(weighted: list[tuple[TaskShape, float]], models: tuple[str, ...]) -> TargetWorkload:
    access = np.ones((len(weighted), len(models) + 1), bool)
    for row, ((_, _, _, types), _) in enumerate(weighted):
        if types:
            allowed = set(types.split("|"))
            access[row, :-1] = [m in allowed for m in models]
            access[row, -1] = False
    cpu = np.array([s[0] for s, _ in weighted], np.int64)
    milli = np.array([s[1] for s, _ in weighted], np.int64)
    count = np.array([s[2] for s, _ in weighted], np.int64)
    weight = np.array([w for _, w in weighted], np.float64)
    devices = milli > 0
    device_mass = float((weight * milli * count / 1000.0)[devices].sum())
    return TargetWorkload(
        cpu=cpu,
        milli=milli,
        count=count,
        weight=weight,
        access=access,
        shapes=tuple(s for s, _ in weighted),
        cpu_per_device=float((weight * cpu)[devices].sum()) / device_mass if device_mass > 0 else 0.0,
    )


def _expand(values: np.ndarray, ndim: int) -> np.ndarray:
    return values.reshape(values.shape + (1,) * ndim)


def accumulate(
    wl: TargetWorkload,
    cpu_left: np.ndarray,
    idle: np.ndarray,
    fit: np.ndarray,
    small: np.ndarray,
    model: np.ndarray,
) -> np.ndarray:
    """F for states described by per-task aggregates: ``fit[t,...]`` devices with left ≥ t.milli and
    ``small[t,...] = Σ_{left < t.milli} left``; ``cpu_left``, ``idle``, ``model`` broadcast to ``...``."""
    extra = fit.ndim - 1
    p = _expand(wl.weight, extra)
    cpu_ok = cpu_left[None] >= _expand(wl.cpu, extra)
    gpu_ok = fit >= _expand(wl.count, extra)
    access = wl.access[:, model]  # [T, ...] (model code -1 picks the "no model" column)
    cpu_only = _expand(wl.milli == 0, extra)
    bucket = np.where(
        cpu_only,
        np.where(cpu_ok, 4, 5),
        np.where(~access, 6, np.where(gpu_ok, np.where(cpu_ok, 1, 3), np.where(cpu_ok, 1, 0))),
    )
    q3 = ~cpu_only & access & gpu_ok & cpu_ok  # Q3: only its too-small devices count, booked under Q2
    value = p * np.where(q3, small, idle[None]).astype(np.float64)
    buckets = np.zeros((7, value.size))
    buckets[bucket.ravel(), np.arange(value.size)] = value.ravel()
    sums = sequential_sum(buckets.reshape((7,) + value.shape))
    return ((((sums[0] + sums[1]) + sums[3]) + sums[4]) + sums[5]) + sums[6]


def sequential_sum(buckets: np.ndarray) -> np.ndarray:
    """Σ over axis 1 strictly in order (numpy reduces a non-innermost axis row by row, no pairwise
    summation; tests/core/placement check this against an explicit loop)."""
    return np.add.reduce(buckets, axis=1)


def task_aggregates(wl: TargetWorkload, gpu_left: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(fit[T,...], small[T,...]) for device states ``gpu_left[..., G]``.

    Both depend on a task only through its milli, and typical tasks share few distinct milli values
    (e.g. 127 gpuspec33 shapes, 16 values), so they are computed per distinct value and gathered."""
    levels, task_level = wl.milli_levels
    fits = gpu_left[None] >= _expand(levels, gpu_left.ndim)
    fit, small = fits.sum(axis=-1), np.where(fits, 0, gpu_left[None]).sum(axis=-1)
    return fit[task_level], small[task_level]


def node_fragmentation(wl: TargetWorkload, cpu_left: np.ndarray, gpu_left: np.ndarray, model: np.ndarray) -> np.ndarray:
    """F_n for nodes ``cpu_left[K]``, ``gpu_left[K,G]`` (absent slots 0), ``model[K]`` (node model code)."""
    fit, small = task_aggregates(wl, gpu_left)
    return accumulate(wl, cpu_left, gpu_left.sum(axis=-1), fit, small, model)


def distinct_candidates(left: np.ndarray, fits: np.ndarray) -> np.ndarray:
    """bool[K,G]: slots that fit and hold the first occurrence of their ``left`` value on the node.

    Slots with equal ``left`` lead to identical node states, so only the lowest-index one is evaluated
    (it also wins ties, which keeps the first-maximum-by-index device choice)."""
    earlier_same = (left[:, :, None] == left[:, None, :]) & fits[:, None, :] & np.tri(left.shape[1], k=-1, dtype=bool)
    return fits & ~earlier_same.any(axis=2)


def fragmentation_now_and_after_share(
    wl: TargetWorkload,
    cpu_left: np.ndarray,
    gpu_left: np.ndarray,
    model: np.ndarray,
    cpu: int,
    milli: int,
    fits: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """(F_n[K], F_n'[K,G]): fragmentation now, and if a (cpu, milli) share were put on device g of node k
    (for ``distinct_candidates`` slots; other slots get -inf in F_n' … callers use the fitting ones).

    Uses ``fit' = fit − [left_g ≥ m_t] + [left_g − milli ≥ m_t]`` and the same for ``small``, so only the
    changed device is re-examined; the current states and all candidate states are one batch.
    """
    fit, small = task_aggregates(wl, gpu_left)
    rows, cols = np.nonzero(distinct_candidates(gpu_left, fits))
    m_t = wl.milli[:, None]
    before = gpu_left[rows, cols][None]
    after = before - milli
    idle = gpu_left.sum(axis=-1)
    frag = accumulate(
        wl,
        np.concatenate([cpu_left, cpu_left[rows] - cpu]),
        np.concatenate([idle, idle[rows] - milli]),
        np.concatenate([fit, fit[:, rows] - (before >= m_t) + (after >= m_t)], axis=1),
        np.concatenate(
            [small, small[:, rows] - np.where(before < m_t, before, 0) + np.where(after < m_t, after, 0)],
            axis=1,
        ),
        np.concatenate([model, model[rows]]),
    )
    now = frag[: len(idle)]
    per_slot = np.full(gpu_left.shape, np.inf)
    per_slot[rows, cols] = frag[len(idle) :]
    return now, per_slot


def fragmentation_now_and_after_whole(
    wl: TargetWorkload, cpu_left: np.ndarray, gpu_left: np.ndarray, model: np.ndarray, cpu: int, devices: int
) -> tuple[np.ndarray, np.ndarray]:
    """(F_n[K], F_n'[K]) now and after taking ``cpu`` milli-CPU and ``devices`` fully free devices.

    A fully free device has ``left = 1000 ≥ m_t`` for every task and becomes 0 (< every m_t > 0), so
    ``fit' = fit − devices`` and ``small' = small``; with ``devices = 0`` only the CPU changes.
    """
    fit, small = task_aggregates(wl, gpu_left)
    idle = gpu_left.sum(axis=-1)
    frag = accumulate(
        wl,
        np.concatenate([cpu_left, cpu_left - cpu]),
        np.concatenate([idle, idle - 1000 * devices]),
        np.concatenate([fit, fit - devices], axis=1),
        np.concatenate([small, small], axis=1),
        np.concatenate([model, model]),
    )
    return frag[: len(idle)], frag[len(idle) :]


def packed_take(gpu_left: np.ndarray, usable: np.ndarray, milli: int, count: int) -> np.ndarray:
    """bool[K,G]: the ``count`` usable slots chosen by visiting slots in ascending ``left`` (stable) and
    taking those with ``left ≥ milli`` (NodeResource.Sub)."""
    key = np.where(usable, gpu_left, 1 << 40)
    order = np.argsort(key, axis=1, kind="stable")
    sorted_ok = np.take_along_axis(usable & (gpu_left >= milli), order, axis=1)
    chosen_sorted = sorted_ok & (np.cumsum(sorted_ok, axis=1) <= count)
    chosen = np.zeros_like(chosen_sorted)
    np.put_along_axis(chosen, order, chosen_sorted, axis=1)
    return chosen
