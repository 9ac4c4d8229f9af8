"""zhisuan's stranding term knows which capacity type-constrained demand depends on."""

import numpy as np
import pytest

from zhisuan.core.placement.fleet import Demand
from zhisuan.core.placement.fragmentation import target_workload
from zhisuan.core.placement.node_view import NodeView
from zhisuan.core.placement.zhisuan_score import stranded_gain, zhisuan_score
from zhisuan.sim.replay import fleet_from_nodes
from zhisuan.sim.traces import NodeTable

# Two CPU-poor nodes (8 cores per GPU; the workload asks 12 per GPU) that differ only in their model.
NODES = NodeTable(("p100", "g2"), np.array([64000, 64000]), np.array([1 << 20] * 2), np.array([8, 8]), ("P100", "G2"))


def gains(workload_shapes, demand):
    fleet = fleet_from_nodes(NODES, np.arange(2))
    wl = target_workload(workload_shapes, fleet.models)
    return dict(zip(fleet.names, stranded_gain(NodeView(fleet, demand, np.arange(2)), wl).tolist(), strict=True))


@pytest.mark.parametrize(
    ("typed", "p100_rewarded", "g2_rewarded"),
    [
        ("", True, True),  # no constrained demand: relieving any CPU-poor node is rewarded
        ("P100", False, True),  # P100 is what constrained tasks depend on: keep flexible work off it
        ("P100|G2", False, False),
    ],
)
def test_only_uncontested_cpu_poor_nodes_reward_flexible_device_work(typed, p100_rewarded, g2_rewarded):
    shapes = [((12000, 1000, 1, ""), 0.5), ((12000, 1000, 1, typed), 0.5)]
    gain = gains(shapes, Demand(cpu=4000, mem=0, milli=1000, count=1))
    # Global κ = 12000: S = 8000 − 64000·1000/12000 = 2667 before, 7000 − 60000·1000/12000 = 2000 after.
    assert gain["p100"] == pytest.approx(2000 / 3 if p100_rewarded else 0.0)
    assert gain["g2"] == pytest.approx(2000 / 3 if g2_rewarded else 0.0)


def test_cpu_only_work_on_a_cpu_poor_uncontested_node_is_charged():
    gain = gains([((12000, 1000, 1, ""), 1.0)], Demand(cpu=6000, mem=0, milli=0, count=0))
    assert gain["g2"] == pytest.approx(-500.0)  # 6000 milli-CPU no longer feed 0.5 device


# Two 8-GPU nodes with ~12 cores per GPU; a CPU-only task of 1.38 cores strands (κ = 12 cores per GPU)
# 85 device milli on the first (96.36 cores) and 115 on the second (96 cores): σ(−0.085)·100 = 47.9 and
# σ(−0.115)·100 = 47.1 — the same coarse bin, different quarter-point bins.
TWINS = NodeTable(("roomy", "tight"), np.array([96360, 96000]), np.array([1 << 20] * 2), np.array([8, 8]), ("G2", "G2"))


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("", {"roomy": 47.75, "tight": 47.0}),  # no constrained demand: quarter-point bins tell them apart
        ("G2", {"roomy": 47.0, "tight": 47.0}),  # constrained demand: FGD's coarse bins, the priority decides
    ],
)
def test_bins_are_finer_only_without_type_constrained_demand(typed, expected):
    fleet = fleet_from_nodes(TWINS, np.arange(2))
    wl = target_workload([((12000, 1000, 1, ""), 0.5), ((12000, 1000, 1, typed), 0.5)], fleet.models)
    scored = zhisuan_score(NodeView(fleet, Demand(cpu=1380, mem=0, milli=0, count=0), np.arange(2)), wl)
    assert dict(zip(fleet.names, scored.score.tolist(), strict=True)) == expected
