"""The look-ahead on share leftovers (``leftover_score``): its waste table and how it changes decisions."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zhisuan.core.placement.fleet import Demand
from zhisuan.core.placement.fragmentation import TargetWorkload, target_workload
from zhisuan.core.placement.leftover_score import leftover_score, leftover_score_with, lookahead_waste, waste_tables
from zhisuan.core.placement.node_view import NodeView
from zhisuan.core.placement.zhisuan_score import zhisuan_score
from zhisuan.sim.replay import fleet_from_nodes
from zhisuan.sim.traces import NodeTable


@pytest.mark.parametrize(
    ("milli", "weight", "expected"),
    [
        ([], [], {0: 0.0, 190: 190.0, 1000: 1000.0}),  # nothing fits: the whole leftover is waste
        ([500], [1.0], {499: 499.0, 700: 200.0, 1000: 0.0}),  # 1000 = 500 + 500; 700 keeps 200 for good
        ([500], [0.5], {500: 250.0, 1000: 625.0}),  # W(500) = ½·500; W(1000) = ½·1000 + ½·W(500)
        ([810, 160], [0.5, 0.1], {190: 0.9 * 190 + 0.1 * 30, 160: 144.0, 150: 150.0}),
    ],
)
def test_lookahead_waste_follows_the_next_fitting_task(milli, weight, expected):
    waste = lookahead_waste(np.array(milli, np.int64), np.array(weight))
    for left, value in expected.items():
        assert waste[left] == pytest.approx(value)


@given(
    st.lists(st.tuples(st.integers(1, 1000), st.floats(0.0, 1.0)), max_size=6).filter(
        lambda tasks: sum(w for _, w in tasks) <= 1.0
    )
)
@settings(max_examples=40, deadline=None)
def test_lookahead_waste_is_between_zero_and_the_leftover(tasks):
    waste = lookahead_waste(np.array([m for m, _ in tasks], np.int64), np.array([w for _, w in tasks]))
    left = np.arange(1001)
    assert waste[0] == 0.0
    assert np.all(waste >= -1e-9) and np.all(waste <= left + 1e-9)


def test_waste_table_of_a_model_only_counts_tasks_that_may_use_it():
    fleet = fleet_from_nodes(NODES, np.arange(2))
    wl = target_workload([((4000, 500, 1, "P100"), 0.5), ((12000, 1000, 1, ""), 0.5)], fleet.models)
    tables = waste_tables(wl)
    p100, g2 = fleet.models.index("P100"), fleet.models.index("G2")
    assert tables[p100, 500] == pytest.approx(250.0)  # the 500-share fits: ½ of it is used
    assert tables[g2, 500] == pytest.approx(500.0)  # no task that may use a G2 fits 500
    blind = waste_tables(wl, model_blind=True)  # only tasks without a type constraint: the same on every model
    assert blind[p100, 500] == blind[g2, 500] == pytest.approx(500.0)


NODES = NodeTable(("p100", "g2"), np.array([64000, 96000]), np.array([1 << 20] * 2), np.array([2, 2]), ("P100", "G2"))
WORKLOAD = [
    ((12000, 1000, 1, ""), 0.5),
    ((3000, 810, 1, ""), 0.2),
    ((4000, 470, 1, ""), 0.2),
    ((4000, 160, 1, ""), 0.1),
]
CONSTRAINED = [((12000, 1000, 1, "G2"), 0.5), *WORKLOAD[1:]]  # some typical task depends on G2: it is contested


def share_view(left: list[int], milli: int, workload: list) -> tuple[NodeView, TargetWorkload]:
    one = NodeTable(("n",), np.array([96000]), np.array([1 << 20]), np.array([len(left)]), ("G2",))
    fleet = fleet_from_nodes(one, np.arange(1))
    fleet.gpu_left[0] = left
    view = NodeView(fleet, Demand(cpu=4000, mem=0, milli=milli, count=1), np.arange(1))
    return view, target_workload(workload, fleet.models)


@pytest.mark.parametrize(
    ("workload", "left", "milli", "zhisuan_slot", "leftover_slot"),
    [
        # Best fit puts a 320-share on the 470 device (150 left: no typical task fits); with constrained
        # demand (coarse bins) the look-ahead takes the 480 device (160 left: the 160-share fills it).
        (CONSTRAINED, [470, 480], 320, 0, 1),
        (WORKLOAD, [470, 540], 320, 0, 0),  # no constrained demand: the look-ahead is off (on, it takes 540)
        (CONSTRAINED, [1000, 470], 470, 1, 1),  # an exact fit stays an exact fit
    ],
)
def test_a_share_leaves_what_a_typical_share_can_still_use(workload, left, milli, zhisuan_slot, leftover_slot):
    view, wl = share_view(left, milli, workload)
    assert zhisuan_score(view, wl).slot.tolist() == [zhisuan_slot]
    view, wl = share_view(left, milli, workload)
    assert leftover_score(view, wl).slot.tolist() == [leftover_slot]


@given(
    st.lists(st.integers(0, 100).map(lambda x: 10 * x), min_size=1, max_size=4),
    st.integers(1, 99).map(lambda x: 10 * x),
    st.sampled_from([0, 3000, 90000]),
)
@settings(max_examples=60, deadline=None)
def test_it_is_zhisuan_without_weight_without_constrained_demand_and_for_whole_devices(left, milli, cpu):
    one = NodeTable(("n",), np.array([96000]), np.array([1 << 20]), np.array([len(left)]), ("G2",))
    fleet = fleet_from_nodes(one, np.arange(1))
    fleet.gpu_left[0] = left
    free, constrained = target_workload(WORKLOAD, fleet.models), target_workload(CONSTRAINED, fleet.models)
    for demand in (Demand(cpu=cpu, mem=0, milli=milli, count=1), Demand(cpu=cpu, mem=0, milli=1000, count=1)):
        if not (np.array(left) >= demand.milli).any():
            continue
        cases = [(leftover_score_with(0.0), constrained), (leftover_score, free)]
        if not demand.is_share:  # whole devices leave no share: the look-ahead never changes their score
            cases.append((leftover_score, constrained))
        for score, wl in cases:
            plain = zhisuan_score(NodeView(fleet, demand, np.arange(1)), wl)
            other = score(NodeView(fleet, demand, np.arange(1)), wl)
            assert plain.score.tolist() == other.score.tolist() and plain.slot.tolist() == other.slot.tolist()
