"""Credibility anchor: the paper's published seed-42 values for openb_pod_list_default, to the digit."""

from pathlib import Path

import pytest

from zhisuan.sim.bucketing import alloc_discrete, frag_discrete
from zhisuan.sim.orders import load_paper_order
from zhisuan.sim.replay import replay
from zhisuan.sim.traces import load_nodes, load_pods, node_models

REPO = Path(__file__).resolve().parents[2]
TRACES = REPO.parent / "shared" / "traces" / "alibaba-gpu-v2023"
needs_traces = pytest.mark.skipif(
    not (TRACES / "openb_node_list_gpu_node.csv").is_file(),
    reason="shared traces not found beside the repository",
)


# fgd-protocol.md §7: alloc at columns 50, 90, 100, 130; frag at 100, 130.
PUBLISHED = {
    "best-fit": ((49.95, 89.98, 92.94, 93.13), (6.99, 6.8)),
    "fgd": ((49.95, 89.98, 95.14, 95.29), (4.83, 4.69)),
}


@needs_traces
@pytest.mark.parametrize("policy", sorted(PUBLISHED))
def test_seed_42_matches_the_paper_exactly(policy):
    nodes = load_nodes(TRACES / "openb_node_list_gpu_node.csv")
    pods = load_pods(TRACES / "openb_pod_list_default.csv", node_models(nodes))
    order = load_paper_order(TRACES / "paper-order", "default", 42, pods, nodes)
    assert len(order.events) == 10866
    result = replay(nodes, pods, order, policy, 42)
    alloc = alloc_discrete(result.arrived, result.used, result.total_gpus)
    frag = frag_discrete(result.arrived, result.frag, result.total_gpus)
    assert (alloc[50], alloc[90], alloc[100], alloc[130]) == PUBLISHED[policy][0]
    assert (frag[100], frag[130]) == PUBLISHED[policy][1]
