"""The vectorised fragmentation measure equals a line-by-line reading of the FGD formula."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from zhisuan.core.placement.fragmentation import (
    accumulate,
    fragmentation_now_and_after_share,
    fragmentation_now_and_after_whole,
    node_fragmentation,
    sequential_sum,
    target_workload,
    task_aggregates,
    typical_shapes,
)

MODELS = ("G2", "T4")
SHAPES = [
    (4000, 500, 1, ""),
    (8000, 1000, 1, ""),
    (2000, 0, 0, ""),
    (16000, 1000, 2, ""),
    (3000, 250, 1, "T4"),
    (12000, 1000, 8, ""),
    (6000, 750, 1, "G2|T4"),
]


def reference_fragmentation(wl, cpu_left, left, model_code):
    """F_n exactly as the Go simulator accumulates it (seven buckets, task order)."""
    data = [0.0] * 7
    idle = int(sum(left))
    for t in range(wl.size):
        cpu, milli, count, p = int(wl.cpu[t]), int(wl.milli[t]), int(wl.count[t]), float(wl.weight[t])
        if milli == 0:
            data[4 if cpu_left >= cpu else 5] += p * float(idle)
            continue
        if not wl.access[t, model_code]:
            data[6] += p * float(idle)
            continue
        gpu_ok = sum(1 for v in left if v >= milli) >= count
        if gpu_ok and cpu_left >= cpu:
            small = sum(v for v in left if v < milli)
            data[1] += p * float(small)
            data[2] += p * float(idle - small)
        else:
            data[{(True, False): 3, (False, True): 1, (False, False): 0}[(gpu_ok, cpu_left >= cpu)]] += p * float(idle)
    return (((((0.0 + data[0]) + data[1]) + data[3]) + data[4]) + data[5]) + data[6]


def workload(counts):
    shapes = [s for s, c in zip(SHAPES, counts, strict=True) for _ in range(c)]
    return target_workload(typical_shapes(shapes), MODELS)


states = st.lists(
    st.tuples(
        st.integers(0, 64000),
        st.lists(st.sampled_from([0, 100, 250, 500, 750, 1000]), min_size=8, max_size=8),
        st.integers(0, 1),
    ),
    min_size=1,
    max_size=6,
)
counts = st.lists(st.integers(1, 9), min_size=len(SHAPES), max_size=len(SHAPES))


@settings(max_examples=80, deadline=None)
@given(states, counts)
def test_vectorised_fragmentation_is_bit_identical_to_reference(nodes, shape_counts):
    wl = workload(shape_counts)
    cpu = np.array([n[0] for n in nodes], np.int64)
    left = np.array([n[1] for n in nodes], np.int64)
    model = np.array([n[2] for n in nodes], np.int32)
    got = node_fragmentation(wl, cpu, left, model)
    for k in range(len(nodes)):
        assert got[k] == reference_fragmentation(wl, int(cpu[k]), left[k].tolist(), int(model[k]))
    assert np.array_equal(accumulate(wl, cpu, left.sum(axis=1), *task_aggregates(wl, left), model), got)


@settings(max_examples=60, deadline=None)
@given(states, counts, st.sampled_from([100, 250, 500, 750]), st.integers(0, 8000), st.integers(0, 3))
def test_hypothetical_states_match_direct_recomputation(nodes, shape_counts, milli, cpu_req, devices):
    wl = workload(shape_counts)
    cpu = np.array([n[0] for n in nodes], np.int64)
    left = np.array([n[1] for n in nodes], np.int64)
    model = np.array([n[2] for n in nodes], np.int32)
    now, after = fragmentation_now_and_after_share(wl, cpu, left, model, cpu_req, milli, left >= milli)
    for k, g in zip(*np.nonzero(np.isfinite(after)), strict=True):
        changed = left[k].copy()
        changed[g] -= milli
        assert after[k, g] == reference_fragmentation(wl, int(cpu[k]) - cpu_req, changed.tolist(), int(model[k]))
    assert np.array_equal(now, node_fragmentation(wl, cpu, left, model))
    whole = (left == 1000).sum(axis=1) >= devices
    now2, after2 = fragmentation_now_and_after_whole(wl, cpu[whole], left[whole], model[whole], cpu_req, devices)
    for row, k in enumerate(np.flatnonzero(whole)):
        changed = left[k].copy()
        changed[np.flatnonzero(changed == 1000)[:devices]] = 0
        assert after2[row] == reference_fragmentation(wl, int(cpu[k]) - cpu_req, changed.tolist(), int(model[k]))


def test_sequential_sum_adds_strictly_in_order():
    rng = np.random.default_rng(1)
    values = rng.random((7, 40, 33)) * 10.0 ** rng.integers(-4, 7, size=(7, 40, 33))
    expected = np.zeros((7, 33))
    for t in range(40):
        expected = expected + values[:, t]
    assert np.array_equal(sequential_sum(values), expected)


def test_typical_shapes_cover_95_percent_and_renormalise():
    shapes = [("a",)] * 60 + [("b",)] * 30 + [("c",)] * 6 + [("d",)] * 4
    taken = typical_shapes(shapes)  # type: ignore[arg-type]
    assert [s for s, _ in taken] == [("a",), ("b",), ("c",)]
    assert abs(sum(w for _, w in taken) - 1.0) < 1e-12


def test_remembered_fragmentation_equals_recomputed_after_states_change():
    """With fleet rows, F_n comes from ``wl.node_memo`` where a row's state is unchanged since a call that
    computed it, and is recomputed where it changed (or the row is new); either way it equals F_n computed
    from scratch, and so do the after-states."""
    rng = np.random.default_rng(7)
    wl = workload([5, 3, 4, 2, 3, 1, 2])
    n = 80  # ≥ MEMO_MIN_STATES, so the memo path is taken
    cpu = rng.integers(0, 64000, n)
    left = rng.choice([0, 100, 250, 500, 750, 1000], size=(n, 8))
    model = rng.integers(0, 2, n).astype(np.int32)
    rows = np.arange(n)
    for step in range(4):
        fits = left >= 250
        assert all(np.array_equal(a, b) for a, b in zip(
            fragmentation_now_and_after_share(wl, cpu, left, model, 2000, 250, fits, rows),
            fragmentation_now_and_after_share(wl, cpu, left, model, 2000, 250, fits), strict=True))
        assert all(np.array_equal(a, b) for a, b in zip(
            fragmentation_now_and_after_whole(wl, cpu, left, model, 3000, 1, rows),
            fragmentation_now_and_after_whole(wl, cpu, left, model, 3000, 1), strict=True))
        changed = rng.choice(len(rows), 10, replace=False)  # new states on some rows, same rows elsewhere
        cpu[changed] = rng.integers(0, 64000, 10)
        left[changed[:5]] = rng.choice([0, 500, 1000], size=(5, 8))
        model[changed[5:]] = 1 - model[changed[5:]]
        if step == 2:  # a subset of the rows, in another order
            rows, cpu, left, model = rows[::-2], cpu[::-2], left[::-2], model[::-2]
    assert wl.node_memo.known.sum() > 0


def test_a_single_state_is_summed_in_task_order_like_many():
    """numpy sums a lone contiguous column pairwise; F of one state must still be the task-order sum."""
    shapes = [(1000 * (1 + i % 9), (0, 250, 500, 1000)[i % 4], 1 + i % 2, "") for i in range(40)]
    wl = target_workload([(s, 1.0 / (3 + i) ** 0.5) for i, s in enumerate(shapes)], MODELS)
    left = np.array([[1000, 750, 500, 250, 100, 0, 0, 0]])
    for cpu_left in (0, 3000, 9000):
        got = node_fragmentation(wl, np.array([cpu_left]), left, np.array([0], np.int32))
        assert got[0] == reference_fragmentation(wl, cpu_left, left[0].tolist(), 0)
