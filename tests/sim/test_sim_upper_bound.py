"""The offline references: the LP bound is above every policy's packing; the offline order is a sort."""

import numpy as np
import pytest

from zhisuan.sim.cli import DEFAULT_NODES, DEFAULT_TRACE
from zhisuan.sim.orders import generate_order
from zhisuan.sim.replay import replay
from zhisuan.sim.traces import NodeTable, PodTable, load_nodes, load_pods, node_models
from zhisuan.sim.upper_bound import lp_upper_bound, offline_order


def small_case() -> tuple[NodeTable, PodTable]:
    nodes = load_nodes(DEFAULT_NODES)
    keep = np.arange(0, len(nodes.names), 12)  # ~100 nodes of every kind
    nodes = NodeTable(
        tuple(nodes.names[i] for i in keep), nodes.cpu[keep], nodes.mem[keep], nodes.gpus[keep],
        tuple(nodes.model[i] for i in keep),
    )  # fmt: skip
    pods = load_pods(DEFAULT_TRACE, node_models(nodes))
    take = np.arange(0, len(pods), 10)
    pods = PodTable(
        tuple(pods.names[i] for i in take), pods.cpu[take], pods.mem[take], pods.count[take], pods.milli[take],
        tuple("T4" if i % 7 == 0 and pods.count[i] else "" for i in take),  # some type-constrained pods
    )  # fmt: skip
    return nodes, pods


@pytest.mark.parametrize("policy", ["fgd", "zhisuan", "best-fit"])
def test_lp_bound_is_above_online_and_offline_packings(policy):
    nodes, pods = small_case()
    order = generate_order(pods, nodes, seed=3)
    bound = lp_upper_bound(nodes, pods, order.events)
    assert bound <= nodes.total_gpus * 1000
    for arrival in (order, offline_order(pods, order)):
        assert replay(nodes, pods, arrival, policy, 3).used[-1] <= bound + 1e-6


def test_offline_order_takes_the_largest_device_demand_first_and_cpu_only_last():
    nodes, pods = small_case()
    order = generate_order(pods, nodes, seed=4)
    offline = offline_order(pods, order)
    assert sorted(offline.events.tolist()) == sorted(order.events.tolist())
    count = pods.count[offline.events]
    gpu_part = count[count > 0]
    assert (np.diff(gpu_part) <= 0).all() and (count[len(gpu_part) :] == 0).all()
