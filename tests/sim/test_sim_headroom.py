"""The idle split of Placement §14: every idle milli in exactly one class, classes by leftover size."""

import numpy as np
import pytest

from zhisuan.sim.cli import DEFAULT_NODES, DEFAULT_TRACE
from zhisuan.sim.headroom import idle_classes
from zhisuan.sim.orders import generate_order
from zhisuan.sim.replay import replay
from zhisuan.sim.traces import load_nodes, load_pods, node_models


@pytest.mark.parametrize(
    ("left", "present", "small", "partial", "whole"),
    [
        # 4 devices = 4,000 milli of capacity, so 40 milli is 1 %
        ([[190, 60, 530, 1000]], [[True, True, True, True]], 6.25, 13.25, 25.0),
        ([[0, 0, 0, 0]], [[True, True, True, True]], 0.0, 0.0, 0.0),
        ([[199, 200, 999, 1000]], [[True, True, True, True]], 4.975, 29.975, 25.0),
        # an absent slot (a node with fewer devices than the widest) holds nothing: 3 devices, 3,000 milli
        ([[1000, 1000], [150, 1000]], [[True, True], [True, False]], 5.0, 0.0, 200 / 3),
    ],
)
def test_idle_is_split_by_leftover_size(left, present, small, partial, whole):
    classes = idle_classes(np.array(left), np.array(present), int(np.array(present).sum()))
    assert (classes.small, classes.partial, classes.whole) == pytest.approx((small, partial, whole))
    assert classes.headroom == pytest.approx(partial + whole)


@pytest.mark.parametrize("policy", ["fgd", "zhisuan"])
def test_classes_add_up_to_the_idle_capacity_after_a_replay(policy):
    nodes = load_nodes(DEFAULT_NODES)
    keep = np.arange(0, len(nodes.names), 8)
    nodes = type(nodes)(tuple(nodes.names[i] for i in keep), nodes.cpu[keep], nodes.mem[keep], nodes.gpus[keep],
                        tuple(nodes.model[i] for i in keep))
    pods = load_pods(DEFAULT_TRACE, node_models(nodes))
    result = replay(nodes, pods, generate_order(pods, nodes, seed=3), policy, 3)
    classes = idle_classes(result.fleet.gpu_left, result.fleet.device_healthy, result.total_gpus)
    idle = 100.0 - 100.0 * result.used[-1] / (1000 * result.total_gpus)
    assert classes.small + classes.partial + classes.whole == pytest.approx(idle)
    assert classes.small > 0  # the 810-milli shares' leftovers exist on any openb replay past saturation
