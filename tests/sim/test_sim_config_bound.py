"""The configuration LP is a true upper bound: ≥ the exact optimum (brute force) ≥ every policy's replay."""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zhisuan.sim.config_bound import best_configuration, configuration_bound
from zhisuan.sim.offline_packing import best_fit_packing, largest_first_order, lp_guided_order
from zhisuan.sim.orders import ArrivalOrder
from zhisuan.sim.replay import replay
from zhisuan.sim.traces import NodeTable, PodTable

SHARES = [100, 190, 200, 300, 450, 500, 700, 810, 1000]


@st.composite
def instances(draw: st.DrawFn) -> tuple[NodeTable, PodTable]:
    n_nodes = draw(st.integers(1, 3))
    nodes = NodeTable(
        tuple(f"n{i}" for i in range(n_nodes)),
        np.array([draw(st.sampled_from([4000, 8000, 16000])) for _ in range(n_nodes)], np.int64),
        np.array([draw(st.sampled_from([16384, 65536])) for _ in range(n_nodes)], np.int64),
        np.array([draw(st.integers(1, 3)) for _ in range(n_nodes)], np.int64),
        tuple(draw(st.sampled_from(["A", "B"])) for _ in range(n_nodes)),
    )
    n_pods = draw(st.integers(1, 6))
    count = [draw(st.sampled_from([0, 1, 1, 1, 2])) for _ in range(n_pods)]
    milli = [0 if k == 0 else 1000 if k > 1 else draw(st.sampled_from(SHARES)) for k in count]
    pods = PodTable(
        tuple(f"p{i}" for i in range(n_pods)),
        np.array([draw(st.sampled_from([1000, 2000, 4000, 8000])) for _ in range(n_pods)], np.int64),
        np.array([draw(st.sampled_from([1024, 8192, 32768])) for _ in range(n_pods)], np.int64),
        np.array(count, np.int64),
        np.array(milli, np.int64),
        tuple(draw(st.sampled_from(["", "", *sorted(set(nodes.model))])) if k else "" for k in count),
    )
    return nodes, pods


def exact_optimum(nodes: NodeTable, pods: PodTable) -> int:
    """Most GPU milli any placement of a subset of the pods allocates (exhaustive search)."""
    cpu, mem = nodes.cpu.astype(int).tolist(), nodes.mem.astype(int).tolist()
    free = [[1000] * int(g) for g in nodes.gpus]
    gpu_pods = [p for p in range(len(pods)) if pods.count[p] > 0]

    def search(i: int) -> int:
        if i == len(gpu_pods):
            return 0
        p = gpu_pods[i]
        best = search(i + 1)  # drop it
        k, m, spec = int(pods.count[p]), int(pods.milli[p]), pods.spec[p]
        for n in range(len(nodes.names)):
            if cpu[n] < pods.cpu[p] or mem[n] < pods.mem[p] or (spec and nodes.model[n] not in spec.split("|")):
                continue
            fitting = [d for d, left in enumerate(free[n]) if left >= m]
            choices = [fitting[:k]] if k > 1 else [[d] for d in {free[n][d]: d for d in fitting}.values()]
            for devices in choices:
                if len(devices) < k:
                    continue
                cpu[n] -= int(pods.cpu[p])
                mem[n] -= int(pods.mem[p])
                for d in devices:
                    free[n][d] -= m
                best = max(best, k * m + search(i + 1))
                for d in devices:
                    free[n][d] += m
                cpu[n] += int(pods.cpu[p])
                mem[n] += int(pods.mem[p])
        return best

    return search(0)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instances(), st.randoms(use_true_random=False))
def test_bound_is_above_the_exact_optimum_which_is_above_every_policy(instance, rnd):
    nodes, pods = instance
    events = np.array(rnd.sample(range(len(pods)), len(pods)), np.int64)
    bound = configuration_bound(nodes, pods, events).milli
    optimum = exact_optimum(nodes, pods)
    assert bound >= optimum - 1e-6
    order = ArrivalOrder(events, np.arange(len(nodes.names), dtype=np.int64), "test")
    for policy in ("fgd", "zhisuan", "best-fit", "random"):
        assert replay(nodes, pods, order, policy, 1).used[-1] <= optimum


def test_an_810_share_leaves_room_only_for_small_shares():
    """Two 810 pods and two 300 pods on one 2-GPU node: 1620 fits, a 300 beside an 810 does not.

    The aggregate LP says 2000 (all 2220 milli arrived, 2000 capacity). The configuration LP knows a
    device holds {810} or {300, 300, 300}: its optimum takes 4/3 devices of {810} and 2/3 of {300×3},
    810·4/3 + 300·2 = 1680 — a relaxation, above the exact 1620, far below 2000."""
    nodes = NodeTable(("n",), np.array([64000]), np.array([65536]), np.array([2]), ("A",))
    pods = PodTable(
        ("a", "b", "c", "d"), np.full(4, 1000), np.full(4, 1024), np.ones(4, np.int64),
        np.array([810, 810, 300, 300]), ("",) * 4,
    )  # fmt: skip
    bound = configuration_bound(nodes, pods, np.arange(4))
    assert abs(bound.milli - 1680) < 1e-6
    assert exact_optimum(nodes, pods) == 1620


def test_cpu_of_the_class_caps_the_bound():
    nodes = NodeTable(("n",), np.array([4000]), np.array([65536]), np.array([4]), ("A",))
    pods = PodTable(
        ("a", "b", "c"), np.full(3, 2000), np.full(3, 1024), np.ones(3, np.int64), np.full(3, 1000), ("",) * 3
    )  # fmt: skip
    assert configuration_bound(nodes, pods, np.arange(3)).milli == 2000


def test_best_configuration_is_the_most_valuable_multiset_under_1000_milli():
    value, slots = best_configuration([300, 450, 810], [3.0, 5.0, 8.0])
    assert value == 10.0 and slots == {450: 2}
    value, slots = best_configuration([100, 810], [1.0, 9.0])
    assert value == 10.0 and slots == {810: 1, 100: 1}


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instances(), st.sampled_from([0.0, 3.0, 30.0]), st.sampled_from([None, 0.25, 0.5]))
def test_offline_packings_are_feasible_so_never_above_the_exact_optimum(instance, weight, quantile):
    nodes, pods = instance
    events = np.arange(len(pods), dtype=np.int64)
    optimum = exact_optimum(nodes, pods)
    guide = configuration_bound(nodes, pods, events).placed
    for sequence in (largest_first_order(pods, events), lp_guided_order(pods, events, guide)):
        assert sorted(sequence.tolist()) == events.tolist()
        used, placed = best_fit_packing(nodes, pods, sequence, None, weight, quantile)
        assert used <= optimum
        assert used == int((pods.milli[sequence] * pods.count[sequence])[placed].sum())


def test_best_fit_puts_a_small_share_into_the_hole_an_810_leaves():
    """Largest first: 810 and 650 open two devices; the 190 goes beside the 810 (slack 0), so the 350
    still fits beside the 650 — all 2000 milli allocated."""
    nodes = NodeTable(("n",), np.array([64000]), np.array([65536]), np.array([2]), ("A",))
    pods = PodTable(
        ("a", "b", "c", "d"), np.full(4, 1000), np.full(4, 1024), np.ones(4, np.int64),
        np.array([190, 810, 350, 650]), ("",) * 4,
    )  # fmt: skip
    sequence = largest_first_order(pods, np.arange(4))
    assert pods.milli[sequence].tolist() == [810, 650, 350, 190]
    used, placed = best_fit_packing(nodes, pods, sequence, stranding_weight=0.0)
    assert used == 2000 and placed.all()


def test_lp_guided_order_tries_the_shapes_the_optimum_drops_last():
    """Three 810 pods and two 450 pods on 2 devices: the LP fills one device with 450+450 and one with
    an 810, dropping two 810s — so the 450 pods come first, and the packing reaches 1710, not 1620."""
    nodes = NodeTable(("n",), np.array([64000]), np.array([65536]), np.array([2]), ("A",))
    pods = PodTable(
        tuple("abcde"), np.full(5, 1000), np.full(5, 1024), np.ones(5, np.int64),
        np.array([810, 810, 810, 450, 450]), ("",) * 5,
    )  # fmt: skip
    events = np.arange(5, dtype=np.int64)
    guide = configuration_bound(nodes, pods, events).placed
    sequence = lp_guided_order(pods, events, guide)
    assert pods.milli[sequence].tolist()[:2] == [450, 450]
    assert best_fit_packing(nodes, pods, sequence)[0] == 1710
    assert best_fit_packing(nodes, pods, largest_first_order(pods, events))[0] == 1620
