"""The live fleet (incremental arrays) always equals a fresh build, and decides exactly like ``place``.

Random inventories, random sequences of hold changes (device shares taken and released, CPU/memory
holds, exclusive leases of known and new tenants), requests placed between changes: after every step
the cached snapshot, the arrays and the decisions must equal those built from scratch.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from zhisuan.core.placement import (
    POLICIES,
    ClusterSnapshot,
    DeviceSnapshot,
    NodeSnapshot,
    PlacementRequest,
    place,
)
from zhisuan.core.placement.fleet import FleetArrays, fleet_from_snapshot
from zhisuan.core.placement.live import Holds, InventoryNode, LiveFleet, held_node

MODELS = ("A800", "H20", "910B")
TENANTS = ("acme", "beta", "gamma")


@st.composite
def inventories(draw):  # type: ignore[no-untyped-def]
    nodes, device_id = [], 0
    for node_id in range(draw(st.integers(1, 6))):
        model = draw(st.sampled_from(MODELS))
        indices = draw(st.permutations(range(draw(st.integers(0, 8)))))  # devices in any index order
        devices = tuple(DeviceSnapshot(j, model, 65536, 1000, healthy=draw(st.booleans()) or draw(st.booleans()))
                        for j in indices)
        node = NodeSnapshot(f"s/n{node_id}", "s", draw(st.integers(0, 64000)), draw(st.integers(0, 256000)), devices,
                            labels={"pool": draw(st.sampled_from(["a", "b"]))},
                            healthy=draw(st.booleans()) or draw(st.booleans()))
        ids = tuple(range(device_id, device_id + len(devices)))
        device_id += len(devices)
        nodes.append(InventoryNode(node_id, node, ids))
    return nodes


@st.composite
def holds_for(draw, inventory: list[InventoryNode]) -> Holds:  # type: ignore[no-untyped-def]
    devices = [d for inv in inventory for d in inv.device_ids]
    nodes = [inv.node_id for inv in inventory]
    milli = {d: draw(st.sampled_from([0, 100, 250, 500, 1000, 1200])) for d in draw(st.lists(st.sampled_from(devices)))
             } if devices else {}
    resources = {n: (draw(st.integers(0, 70000)), draw(st.integers(0, 300000)))
                 for n in draw(st.lists(st.sampled_from(nodes)))}
    exclusive = {n: draw(st.sampled_from(TENANTS)) for n in draw(st.lists(st.sampled_from(nodes), max_size=3))}
    return Holds(milli, resources, exclusive)


@st.composite
def requests(draw) -> PlacementRequest:  # type: ignore[no-untyped-def]
    count = draw(st.integers(0, 4))
    milli = 1000 if count != 1 else draw(st.sampled_from([250, 500, 1000]))
    return PlacementRequest(
        draw(st.sampled_from([0, 4000, 16000, 32000])), draw(st.sampled_from([0, 16000, 64000])), count, milli,
        allowed_models=draw(st.sampled_from([None, frozenset({"A800"}), frozenset({"H20", "910B"})])),
        tenant=draw(st.sampled_from([None, *TENANTS])),
        node_selector=draw(st.sampled_from([None, {"pool": "a"}])),
    )


def fresh(inventory: list[InventoryNode], holds: Holds) -> ClusterSnapshot:
    return ClusterSnapshot(tuple(held_node(inv, holds) for inv in inventory))


def assert_arrays_equal(cached: FleetArrays, built: FleetArrays) -> None:
    for name in ("cpu_free", "mem_free", "gpu_left", "device_index", "device_model", "device_healthy",
                 "node_healthy", "device_memory", "device_stack"):
        assert np.array_equal(getattr(cached, name), getattr(built, name)), name
    tenant = [None if c < 0 else cached.tenants[c] for c in cached.node_tenant]  # codes may differ, names not
    assert tenant == [None if c < 0 else built.tenants[c] for c in built.node_tenant]
    assert (cached.names, cached.sites, cached.models, cached.labels) == (
        built.names, built.sites, built.models, built.labels)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_cached_fleet_equals_a_fresh_build_after_random_hold_changes(data: st.DataObject) -> None:
    inventory = data.draw(inventories())
    live = LiveFleet(inventory, data.draw(holds_for(inventory)))
    for _ in range(data.draw(st.integers(1, 6))):
        holds = data.draw(holds_for(inventory))
        named = data.draw(st.booleans())  # the caller names the changed nodes (here: all of them), or diff
        live.update(holds, changed_nodes=[inv.node_id for inv in inventory] if named else None)
        cluster = fresh(inventory, holds)
        assert live.snapshot() == cluster
        assert_arrays_equal(live.fleet, fleet_from_snapshot(cluster))
        for request in data.draw(st.lists(requests(), min_size=1, max_size=3)):
            policy = data.draw(st.sampled_from(sorted(POLICIES)))
            seed = data.draw(st.integers(0, 3))
            assert live.place(request, policy, seed) == place(cluster, request, policy, seed), (policy, request)


def test_an_update_rewrites_only_the_changed_nodes() -> None:
    inventory = [InventoryNode(i, NodeSnapshot(f"s/n{i}", "s", 8000, 64000,
                                               tuple(DeviceSnapshot(j, "A800", 81920, 1000) for j in range(2))),
                               (2 * i, 2 * i + 1)) for i in range(4)]
    live = LiveFleet(inventory)
    first = live.place(PlacementRequest(1000, 0, 1, 500))
    assert live.update(Holds({0: 500, 1: 1000})) == 1  # both devices are node 0's: one row
    assert live.update(Holds({0: 500, 1: 1000}, exclusive={3: "acme"})) == 1
    assert live.update(Holds({0: 500, 1: 1000}, exclusive={3: "acme"})) == 0
    again = live.place(PlacementRequest(1000, 0, 1, 500))
    assert again == place(fresh(inventory, live.holds), PlacementRequest(1000, 0, 1, 500))
    assert first != again or first.node != "s/n0"  # type: ignore[union-attr]
