"""Replay mechanics: exact caching, invariants, reproducible orders, the paper's bucketing."""

from pathlib import Path

import numpy as np
import pytest

from zhisuan.core.placement.policies import POLICIES
from zhisuan.sim.bucketing import alloc_discrete
from zhisuan.sim.orders import generate_order
from zhisuan.sim.replay import replay
from zhisuan.sim.traces import NodeTable, PodTable, load_nodes, load_pods, node_models

REPO = Path(__file__).resolve().parents[2]
TRACES = REPO.parent / "shared" / "traces" / "alibaba-gpu-v2023"
needs_traces = pytest.mark.skipif(
    not (TRACES / "openb_node_list_gpu_node.csv").is_file(),
    reason="shared traces not found beside the repository",
)


def small_case() -> tuple[NodeTable, PodTable]:
    nodes = load_nodes(TRACES / "openb_node_list_gpu_node.csv")
    keep = np.arange(0, len(nodes.names), 12)  # ~100 nodes of every kind
    nodes = NodeTable(
        tuple(nodes.names[i] for i in keep),
        nodes.cpu[keep],
        nodes.mem[keep],
        nodes.gpus[keep],
        tuple(nodes.model[i] for i in keep),
    )
    pods = load_pods(TRACES / "openb_pod_list_gpuspec10.csv", node_models(nodes))
    take = np.arange(0, len(pods), 10)
    pods = PodTable(
        tuple(pods.names[i] for i in take),
        pods.cpu[take],
        pods.mem[take],
        pods.count[take],
        pods.milli[take],
        tuple(pods.spec[i] for i in take),
    )
    return nodes, pods


@needs_traces
@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_cached_evaluation_makes_identical_decisions(policy):
    nodes, pods = small_case()
    order = generate_order(pods, nodes, seed=5)
    cached = replay(nodes, pods, order, policy, 5, cached=True)
    fresh = replay(nodes, pods, order, policy, 5, cached=False)
    assert np.array_equal(cached.placed, fresh.placed)
    assert np.array_equal(cached.frag, fresh.frag)


@needs_traces
@pytest.mark.parametrize("policy", ["fgd", "zhisuan", "random"])
def test_replay_never_overallocates_and_respects_types(policy):
    nodes, pods = small_case()
    order = generate_order(pods, nodes, seed=9)
    result = replay(nodes, pods, order, policy, 9)
    fleet = result.fleet
    assert (fleet.cpu_free >= 0).all() and (fleet.mem_free >= 0).all()
    assert (fleet.gpu_left >= 0).all() and (fleet.gpu_left <= 1000).all()
    assert result.used[-1] == nodes.total_gpus * 1000 - fleet.gpu_left.sum()
    for event, pod in enumerate(order.events):
        if result.placed[event] >= 0 and pods.spec[pod]:
            assert nodes.model[result.placed[event]] in pods.spec[pod].split("|")


@needs_traces
def test_generated_orders_are_reproducible_and_tuned_to_130_percent():
    nodes, pods = small_case()
    first, second = generate_order(pods, nodes, 3), generate_order(pods, nodes, 3)
    assert np.array_equal(first.events, second.events) and np.array_equal(first.tie_rank, second.tie_rank)
    demand = pods.gpu_milli()[first.events].sum()
    capacity = nodes.total_gpus * 1000
    assert 1.3 * capacity - 1000 < demand <= 1.3 * capacity


def test_bucketing_uses_neighbours_when_a_column_is_empty():
    arrived = np.array([0, 1000, 3000, 3000]) * 62  # 6.2 GPUs per percent -> 0, 1, 3, 3 %
    used = np.array([0, 62000, 124000, 186000]) // 1000
    curve = alloc_discrete(arrived, used * 1000, 6200)
    assert curve[2] == round(np.mean([1.0, 2.0, 3.0]), 2)
    assert np.isnan(curve[10])
