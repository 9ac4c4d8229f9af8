"""First-of-shape evaluation (capacity pruning + one evaluation per distinct node state) decides
exactly like the uncached pipeline.

Fleets are built from a few node templates copied several times, so many nodes share a state (what
the state classes exploit); holds then make some copies differ. After every change, each request is
placed by the live fleet (whose cache is mostly first-of-shape evaluations with shared classes) and
by ``pipeline.place`` on a fresh snapshot; a second live fleet placing the same requests after the
change checks the refreshed (not first-of-shape) entries too.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from zhisuan.core.placement import POLICIES, ClusterSnapshot, DeviceSnapshot, NodeSnapshot, PlacementRequest, place
from zhisuan.core.placement.cached import CachedEvaluator, RowClasses
from zhisuan.core.placement.fleet import Demand, commit, fleet_from_snapshot
from zhisuan.core.placement.live import Holds, InventoryNode, LiveFleet, held_node
from zhisuan.core.placement.policies import get_policy

MODELS = ("A800", "H20")


@st.composite
def tiled_inventory(draw):  # type: ignore[no-untyped-def]
    templates = []
    for _ in range(draw(st.integers(1, 3))):
        model = draw(st.sampled_from(MODELS))
        devices = tuple(DeviceSnapshot(j, model, 65536, 1000, healthy=draw(st.booleans()) or draw(st.booleans()))
                        for j in range(draw(st.integers(0, 4))))
        templates.append((draw(st.sampled_from([8000, 32000])), devices, draw(st.sampled_from(["a", "b"]))))
    nodes, device_id = [], 0
    for node_id in range(draw(st.integers(2, 12))):
        cpu, devices, pool = templates[node_id % len(templates)]
        node = NodeSnapshot(f"s/n{node_id}", "s", cpu, 128000, devices, labels={"pool": pool})
        nodes.append(InventoryNode(node_id, node, tuple(range(device_id, device_id + len(devices)))))
        device_id += len(devices)
    return nodes


@st.composite
def some_holds(draw, inventory: list[InventoryNode]) -> Holds:  # type: ignore[no-untyped-def]
    devices = [d for inv in inventory for d in inv.device_ids]
    nodes = [inv.node_id for inv in inventory]
    milli = {d: draw(st.sampled_from([250, 500, 1000])) for d in draw(st.lists(st.sampled_from(devices), max_size=6))
             } if devices else {}
    cpu = {n: (draw(st.sampled_from([2000, 8000])), 0) for n in draw(st.lists(st.sampled_from(nodes), max_size=4))}
    exclusive = {n: draw(st.sampled_from(["acme", "beta"])) for n in draw(st.lists(st.sampled_from(nodes), max_size=2))}
    return Holds(milli, cpu, exclusive)


@st.composite
def a_request(draw, names: list[str]) -> PlacementRequest:  # type: ignore[no-untyped-def]
    count = draw(st.integers(0, 3))
    return PlacementRequest(
        draw(st.sampled_from([0, 4000, 8000])), 0, count, 1000 if count != 1 else draw(st.sampled_from([250, 1000])),
        allowed_models=draw(st.sampled_from([None, frozenset({"H20"})])),
        tenant=draw(st.sampled_from([None, "acme"])),
        node_selector=draw(st.sampled_from([None, {"pool": "a"}])),
        avoid_nodes=frozenset(draw(st.lists(st.sampled_from(names), max_size=2))),
    )


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_first_of_shape_decisions_equal_the_uncached_pipeline(data: st.DataObject) -> None:
    inventory = data.draw(tiled_inventory())
    names = [inv.node.name for inv in inventory]
    live = LiveFleet(inventory, data.draw(some_holds(inventory)))
    for _ in range(data.draw(st.integers(1, 4))):
        holds = data.draw(some_holds(inventory))
        live.update(holds)
        cluster = ClusterSnapshot(tuple(held_node(inv, holds) for inv in inventory))
        newcomer = LiveFleet(inventory, holds)  # every shape is first-of-shape here
        for request in data.draw(st.lists(a_request(names), min_size=1, max_size=3)):
            policy, seed = data.draw(st.sampled_from(sorted(POLICIES))), data.draw(st.integers(0, 3))
            expected = place(cluster, request, policy, seed)
            assert live.place(request, policy, seed) == expected, (policy, request)
            assert newcomer.place(request, policy, seed) == expected, (policy, request)


def test_equal_rows_share_a_class_until_one_changes() -> None:
    node = NodeSnapshot("s/n", "s", 8000, 64000, tuple(DeviceSnapshot(j, "A800", 81920, 1000) for j in range(2)))
    fleet = fleet_from_snapshot(ClusterSnapshot(tuple(
        NodeSnapshot(f"s/n{i}", "s", 8000, 64000, node.devices, labels={"pool": "a" if i < 3 else "b"})
        for i in range(4))))
    classes = RowClasses(fleet)
    reps, spread = classes.representatives(np.arange(4))
    assert len(reps) == 2 and spread[0] == spread[1] == spread[2] != spread[3]  # labels differ: node 3 alone
    demand = Demand(cpu=1000, mem=0, milli=500, count=1)
    commit(fleet, 1, np.array([0]), demand)
    classes.mark(1)
    reps, spread = classes.representatives(np.arange(4))
    assert len(reps) == 3 and spread[0] == spread[2] != spread[1]
    reps, spread = classes.representatives(np.arange(4), own=frozenset({0}))  # an avoided row stands alone
    assert len(reps) == 4


def test_pruned_and_grouped_evaluation_equals_every_node_every_time() -> None:
    fleet = fleet_from_snapshot(ClusterSnapshot(tuple(
        NodeSnapshot(f"s/n{i}", "s", 16000, 64000, tuple(DeviceSnapshot(j, "A800", 81920, 1000) for j in range(4)))
        for i in range(30))))
    reference = fleet_from_snapshot(ClusterSnapshot(tuple(
        NodeSnapshot(f"s/n{i}", "s", 16000, 64000, tuple(DeviceSnapshot(j, "A800", 81920, 1000) for j in range(4)))
        for i in range(30))))
    policy = get_policy("best-fit")
    cached = CachedEvaluator(fleet, policy, None)
    uncached = CachedEvaluator(reference, policy, None, enabled=False)
    rng = np.random.default_rng(3)
    demands = [Demand(cpu=c, mem=0, milli=m, count=k) for c in (0, 4000) for m, k in ((250, 1), (1000, 2), (0, 0))]
    for step in range(60):
        demand = demands[int(rng.integers(len(demands)))]
        got, want = cached.feasible_scores(demand), uncached.feasible_scores(demand)
        assert np.array_equal(got[0], want[0]), step
        assert np.array_equal(got[1][got[0]], want[1][want[0]]), step
        node = int(rng.choice(np.flatnonzero(got[0]))) if got[0].any() else -1
        if node >= 0:
            slots = np.flatnonzero(fleet.gpu_left[node] >= demand.milli)[: demand.count] if demand.count else []
            for f in (fleet, reference):
                commit(f, node, np.asarray(slots, np.int64), demand)
            cached.record_change(node)
