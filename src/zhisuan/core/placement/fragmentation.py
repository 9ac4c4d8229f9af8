"""The FGD paper's fragmentation measure (Weng et al., ATC'23, §5 of docs fgd-protocol.md), vectorised.

Target workload: the most frequent task shapes ``t`` of a trace with weights ``p_t`` (sum 1).
For a node n with idle device milli ``I_n = Σ_g left_g`` and a task t::

    frag(n,t) = I_n                            if t is CPU-only, or t's type list excludes n's model
              = Σ_{g: left_g < t.milli} left_g  if ≥ t.count devices have left_g ≥ t.milli, cpuL_n ≥ t.cpu
                                               (Q3; otherwise I_n: lacks GPU and/or CPU)
    F_n = Σ_t p_t · frag(n,t)

For bit-exactness with the Go simulator the terms are accumulated into seven buckets in task order
(Q1=0, Q2=1, Q3=2, Q4=3, XL=4, XR=5, NA=6; Q3's fragment part goes to Q2) and
``F = ((((d0 + d1) + d3) + d4) + d5) + d6``. ``_fragmentation`` does it for K states at once: each
task's value times a one-hot bucket mask (×1.0 or ×0.0, both exact) reduced over the task axis by
``np.add.reduce`` (strictly left to right when the other axes hold ≥ 2 values; adding 0.0 for tasks of
other buckets is exact). The aggregates a task needs (devices with ``left ≥ m_t``, milli on smaller
devices) depend on it only through ``m_t``, so they are computed per distinct milli *level*.

**Remembered F_n (for score plugins).** F_n depends only on a node's state (CPU left, device lefts,
model) and the workload, not on the demand, so ``TargetWorkload.node_memo`` (``NodeFragmentationMemo``)
keeps F_n and the level aggregates of each fleet row's last computed state; an entry is used only if
the row's current state equals it (compared on each call: exact for any fleet, no change feed). A
score plugin gets it by passing the view's rows, e.g.::

    now, after = fragmentation_now_and_after_whole(wl, view.cpu, view.left, view.node_model,
                                                   demand.cpu, devices, view.idx)
    now, after, candidate = scores.fragmentation_change(view, wl)   # shares and whole devices

(``rows=None``: no memo). It is consulted only for batches of ≥ ``MEMO_MIN_STATES`` states: the
replay's refreshes re-score ~1–10 rows per call, ~1 of them new since the last call, where the
lookup's numpy calls cost more than the rows they save (measured: BENCHMARKS.md, Placement §11).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache, cached_property

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
    def task_layout(self) -> _TaskLayout:
        return _layout(self)

    @cached_property
    def node_memo(self) -> NodeFragmentationMemo:
        """F_n of fleet rows' current states, shared by every call with ``rows`` (see the module docstring)."""
        return NodeFragmentationMemo(len(self.milli_levels[0]))

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


# Bucket of a task in a state, by (task kind, CPU fits, enough devices fit): index kind·4 + 2·cpu_ok + gpu_ok.
CPU_ONLY, DEVICE, DEVICE_NOT_ALLOWED = 0, 1, 2
# Positions 0–5 hold buckets Q1, Q2 (with Q3's fragment), Q4, XL, XR, NA.
_BUCKET_OF = np.array([4, 4, 3, 3,  # CPU-only task: XR if the node's CPU is short, else XL
                       0, 2, 1, 1,  # device task allowed on the node: Q1, Q4, Q2, Q3 (booked under Q2)
                       5, 5, 5, 5])  # device task whose type list excludes the node's model: NA
_Q3 = DEVICE * 4 + 3  # allowed, CPU fits, enough devices fit: only the too-small devices count
_POSITIONS = np.arange(6)[None, :, None]


@dataclass(frozen=True)
class _TaskLayout:
    """Per-task constants of ``_fragmentation``, as columns [T,1] broadcasting against K states."""

    p: np.ndarray  # float64[T,1]
    cpu: np.ndarray  # int64[T,1]
    count: np.ndarray  # int64[T,1]
    level: np.ndarray  # int64[T] index into milli_levels
    kind: np.ndarray  # int64[T,M+1] 4·(CPU_ONLY | DEVICE | DEVICE_NOT_ALLOWED) per node model (code -1: last)


def _layout(wl: TargetWorkload) -> _TaskLayout:
    device = (wl.milli > 0)[:, None]
    kind = np.where(device, np.where(wl.access, DEVICE, DEVICE_NOT_ALLOWED), CPU_ONLY)
    return _TaskLayout(wl.weight[:, None], wl.cpu[:, None], wl.count[:, None], wl.milli_levels[1], 4 * kind)


def _fragmentation(
    wl: TargetWorkload, cpu_left: np.ndarray, idle: np.ndarray, fit: np.ndarray, small: np.ndarray, model: np.ndarray
) -> np.ndarray:
    """F for K states given per *level* aggregates ``fit[L,K]``, ``small[L,K]`` (see ``level_aggregates``).

    Each task's value goes to one of six bucket positions (a one-hot [T,6,K]: value·1.0 or value·0.0,
    both exact); one ``np.add.reduce`` over the task axis gives the six bucket sums, strictly in task
    order, and a second one adds them in bucket order. Both are sequential only while the other axes
    hold ≥ 2 values (numpy sums one contiguous column pairwise), so a single state is padded to two.
    """
    if len(cpu_left) == 1:
        pad = (slice(None), [0, 0])
        return _fragmentation(wl, cpu_left[[0, 0]], idle[[0, 0]], fit[pad], small[pad], model[[0, 0]])[:1]
    lay: _TaskLayout = wl.task_layout
    cpu_ok = cpu_left >= lay.cpu  # [T,K]
    case = lay.kind[:, model] + 2 * cpu_ok + (fit[lay.level] >= lay.count)
    value = lay.p * np.where(case == _Q3, small[lay.level], idle).astype(np.float64)
    buckets = np.add.reduce(value[:, None, :] * (_BUCKET_OF[case][:, None, :] == _POSITIONS), axis=0)
    return np.add.reduce(buckets, axis=0)


def accumulate(
    wl: TargetWorkload,
    cpu_left: np.ndarray,
    idle: np.ndarray,
    fit: np.ndarray,
    small: np.ndarray,
    model: np.ndarray,
) -> np.ndarray:
    """F for states described by per-task aggregates: ``fit[t,...]`` devices with left ≥ t.milli and
    ``small[t,...] = Σ_{left < t.milli} left`` (as ``task_aggregates`` gives them: equal for tasks of one
    milli level); ``cpu_left``, ``idle``, ``model`` broadcast to ``...``."""
    shape = fit.shape[1:]
    first_of_level = np.unique(wl.milli_levels[1], return_index=True)[1]
    flat = (len(first_of_level), -1)
    frag = _fragmentation(
        wl, np.broadcast_to(cpu_left, shape).ravel(), np.broadcast_to(idle, shape).ravel(),
        fit[first_of_level].reshape(flat), small[first_of_level].reshape(flat), np.broadcast_to(model, shape).ravel(),
    )
    return frag.reshape(shape)


def sequential_sum(buckets: np.ndarray) -> np.ndarray:
    """Σ over axis 1 strictly in order (numpy reduces a non-innermost axis row by row, no pairwise
    summation; tests/core/placement check this against an explicit loop)."""
    return np.add.reduce(buckets, axis=1)


def level_aggregates(wl: TargetWorkload, gpu_left: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(fit[L,...], small[L,...]) per distinct milli level ``wl.milli_levels[0]`` for ``gpu_left[..., G]``."""
    levels = wl.milli_levels[0]
    fits = gpu_left[None] >= _expand(levels, gpu_left.ndim)
    return fits.sum(axis=-1), np.where(fits, 0, gpu_left[None]).sum(axis=-1)


def task_aggregates(wl: TargetWorkload, gpu_left: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(fit[T,...], small[T,...]) for device states ``gpu_left[..., G]``.

    Both depend on a task only through its milli, and typical tasks share few distinct milli values
    (e.g. 127 gpuspec33 shapes, 16 values), so they are computed per distinct value and gathered."""
    fit, small = level_aggregates(wl, gpu_left)
    task_level = wl.milli_levels[1]
    return fit[task_level], small[task_level]


class NodeFragmentationMemo:
    """F_n and the level aggregates of each fleet row's state, remembered between calls.

    An entry is used only if the row's (CPU left, device lefts, node model) equal the remembered ones
    (compared on every call), so it is exact for any fleet and needs no change notifications; a row
    that changed is recomputed once, by the first call that sees it, and then served to every demand
    shape. Not thread-safe: callers serialise decisions (the live fleet decides under a lock).
    """

    def __init__(self, levels: int) -> None:
        self.levels = levels
        self._allocate(0, 0)

    def _allocate(self, rows: int, width: int) -> None:
        self.known = np.zeros(rows, bool)
        self.cpu = np.zeros(rows, np.int64)
        self.left = np.zeros((rows, width), np.int64)
        self.model = np.zeros(rows, np.int64)
        self.frag = np.zeros(rows)
        self.fit = np.zeros((rows, self.levels), np.int64)
        self.small = np.zeros((rows, self.levels), np.int64)

    def recall(self, rows: np.ndarray, cpu_left: np.ndarray, gpu_left: np.ndarray, model: np.ndarray) -> np.ndarray:
        """bool[K]: rows whose remembered state is their current one."""
        if gpu_left.shape[1] != self.left.shape[1]:
            self._allocate(0, gpu_left.shape[1])
        if len(rows) and rows.max() >= len(self.known):
            old = (self.known, self.cpu, self.left, self.model, self.frag, self.fit, self.small)
            self._allocate(max(int(rows.max()) + 1, 2 * len(self.known)), gpu_left.shape[1])
            for mine, kept in zip((self.known, self.cpu, self.left, self.model, self.frag, self.fit, self.small),
                                  old, strict=True):
                mine[: len(kept)] = kept
        return (self.known[rows] & (self.cpu[rows] == cpu_left) & (self.model[rows] == model)
                & (self.left[rows] == gpu_left).all(axis=1))

    def store(self, rows: np.ndarray, cpu_left: np.ndarray, gpu_left: np.ndarray, model: np.ndarray,
              frag: np.ndarray, fit: np.ndarray, small: np.ndarray) -> None:
        """Remember F_n ``frag[K]`` and ``fit[L,K]``, ``small[L,K]`` of the states of ``rows``."""
        self.known[rows], self.cpu[rows], self.left[rows], self.model[rows] = True, cpu_left, gpu_left, model
        self.frag[rows], self.fit[rows], self.small[rows] = frag, fit.T, small.T


@dataclass(frozen=True)
class _Current:
    """Current states of K nodes: level aggregates, idle milli, F_n (valid where not ``missing``)."""

    fit: np.ndarray  # int64[L,K]
    small: np.ndarray
    idle: np.ndarray
    frag: np.ndarray
    missing: np.ndarray  # int64 positions whose F_n is still to be computed
    left: np.ndarray  # int64[K,G] the device lefts (to remember the computed states by)


def _current(wl: TargetWorkload, cpu_left: np.ndarray, gpu_left: np.ndarray, model: np.ndarray,
             rows: np.ndarray | None) -> _Current:
    idle = gpu_left.sum(axis=-1)
    if rows is None:
        fit, small = level_aggregates(wl, gpu_left)
        return _Current(fit, small, idle, np.zeros(len(idle)), np.arange(len(idle)), gpu_left)
    memo: NodeFragmentationMemo = wl.node_memo
    known = memo.recall(rows, cpu_left, gpu_left, model)
    if known.all():
        return _Current(memo.fit[rows].T, memo.small[rows].T, idle, memo.frag[rows], np.zeros(0, np.int64), gpu_left)
    missing = np.flatnonzero(~known)
    fit, small = memo.fit[rows].T, memo.small[rows].T  # gathered copies: the missing columns are refilled
    fit[:, missing], small[:, missing] = level_aggregates(wl, gpu_left[missing])
    return _Current(fit, small, idle, memo.frag[rows], missing, gpu_left)


def _with_current(wl: TargetWorkload, cur: _Current, cpu_left: np.ndarray, model: np.ndarray,
                  rows: np.ndarray | None, after: tuple[np.ndarray, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(F_n[K], F of the ``after`` states (cpu, idle, fit, small, model)), the missing F_n in the same batch."""
    miss = cur.missing
    frag = _fragmentation(
        wl,
        np.concatenate([cpu_left[miss], after[0]]),
        np.concatenate([cur.idle[miss], after[1]]),
        np.concatenate([cur.fit[:, miss], after[2]], axis=1),
        np.concatenate([cur.small[:, miss], after[3]], axis=1),
        np.concatenate([model[miss], after[4]]),
    )
    now = cur.frag.copy()
    now[miss] = frag[: len(miss)]
    if rows is not None and len(miss):
        wl.node_memo.store(rows[miss], cpu_left[miss], cur.left[miss], model[miss], now[miss],
                           cur.fit[:, miss], cur.small[:, miss])
    return now, frag[len(miss) :]


def node_fragmentation(wl: TargetWorkload, cpu_left: np.ndarray, gpu_left: np.ndarray, model: np.ndarray) -> np.ndarray:
    """F_n for nodes ``cpu_left[K]``, ``gpu_left[K,G]`` (absent slots 0), ``model[K]`` (node model code)."""
    fit, small = level_aggregates(wl, gpu_left)
    return _fragmentation(wl, cpu_left, gpu_left.sum(axis=-1), fit, small, model)


# Below this many states per call the per-call cost is numpy call overhead: looking F_n up costs more
# calls than it saves rows (the replay's refreshes: ~5 rows, ~1 of them new), so it is computed.
MEMO_MIN_STATES = 32


@cache
def _earlier(width: int) -> np.ndarray:
    """bool[G,G]: slot j comes before slot i (a constant per fleet width, built once)."""
    return np.tri(width, k=-1, dtype=bool)


def distinct_candidates(left: np.ndarray, fits: np.ndarray) -> np.ndarray:
    """bool[K,G]: slots that fit and hold the first occurrence of their ``left`` value on the node.

    Slots with equal ``left`` lead to identical node states, so only the lowest-index one is evaluated
    (it also wins ties, which keeps the first-maximum-by-index device choice)."""
    earlier_same = (left[:, :, None] == left[:, None, :]) & fits[:, None, :] & _earlier(left.shape[1])
    return fits & ~earlier_same.any(axis=2)


def fragmentation_now_and_after_share(
    wl: TargetWorkload,
    cpu_left: np.ndarray,
    gpu_left: np.ndarray,
    model: np.ndarray,
    cpu: int,
    milli: int,
    fits: np.ndarray,
    rows: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(F_n[K], F_n'[K,G]): fragmentation now, and if a (cpu, milli) share were put on device g of node k
    (for ``distinct_candidates`` slots; other slots get +inf in F_n' … callers use the fitting ones).

    The candidate states (device g of node k less ``milli``, CPU less ``cpu``) and the current ones not
    remembered for ``rows`` (the nodes' fleet rows: see ``NodeFragmentationMemo``) are one batch.
    """
    node, slot = np.nonzero(distinct_candidates(gpu_left, fits))
    after = gpu_left[node]
    after[np.arange(len(node)), slot] -= milli
    if rows is None or len(node) < MEMO_MIN_STATES:  # few states: fewer numpy calls beat fewer rows
        states = np.concatenate([gpu_left, after])
        fit, small = level_aggregates(wl, states)
        frag = _fragmentation(
            wl, np.concatenate([cpu_left, cpu_left[node] - cpu]), states.sum(axis=1), fit, small,
            np.concatenate([model, model[node]]),
        )
        now, frag = frag[: len(cpu_left)], frag[len(cpu_left) :]
    else:
        cur = _current(wl, cpu_left, gpu_left, model, rows)
        fit, small = level_aggregates(wl, after)
        now, frag = _with_current(wl, cur, cpu_left, model, rows,
                                  (cpu_left[node] - cpu, cur.idle[node] - milli, fit, small, model[node]))
    per_slot = np.full(gpu_left.shape, np.inf)
    per_slot[node, slot] = frag
    return now, per_slot


def fragmentation_now_and_after_whole(
    wl: TargetWorkload,
    cpu_left: np.ndarray,
    gpu_left: np.ndarray,
    model: np.ndarray,
    cpu: int,
    devices: int,
    rows: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(F_n[K], F_n'[K]) now and after taking ``cpu`` milli-CPU and ``devices`` fully free devices.

    A fully free device has ``left = 1000 ≥ m_t`` for every task and becomes 0 (< every m_t > 0), so
    ``fit' = fit − devices`` and ``small' = small``; with ``devices = 0`` only the CPU changes. ``rows``:
    as for ``fragmentation_now_and_after_share``.
    """
    if rows is None or len(rows) < MEMO_MIN_STATES:
        fit, small = level_aggregates(wl, gpu_left)
        idle = gpu_left.sum(axis=1)
        frag = _fragmentation(
            wl, np.concatenate([cpu_left, cpu_left - cpu]), np.concatenate([idle, idle - 1000 * devices]),
            np.concatenate([fit, fit - devices], axis=1), np.concatenate([small, small], axis=1),
            np.concatenate([model, model]),
        )
        return frag[: len(idle)], frag[len(idle) :]
    cur = _current(wl, cpu_left, gpu_left, model, rows)
    after = (cpu_left - cpu, cur.idle - 1000 * devices, cur.fit - devices, cur.small, model)
    return _with_current(wl, cur, cpu_left, model, rows, after)


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
