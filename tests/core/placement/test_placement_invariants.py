"""Property tests: whatever the fleet and the requests, decisions respect capacity and constraints."""

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from zhisuan.core.placement import (
    POLICIES,
    ClusterSnapshot,
    DeviceSnapshot,
    NodeSnapshot,
    Placement,
    PlacementRequest,
    place,
)

MODELS = ("A800", "H20", "910B")


@st.composite
def clusters(draw):
    nodes = []
    for i in range(draw(st.integers(1, 6))):
        model = draw(st.sampled_from(MODELS))
        devices = tuple(
            DeviceSnapshot(
                j,
                model,
                65536,
                draw(st.sampled_from([0, 100, 300, 500, 1000])),
                healthy=draw(st.booleans()) or draw(st.booleans()),
            )
            for j in range(draw(st.integers(0, 8)))
        )
        nodes.append(
            NodeSnapshot(
                f"n{i}",
                "s",
                draw(st.integers(0, 64000)),
                draw(st.integers(0, 256000)),
                devices,
                healthy=draw(st.booleans()) or draw(st.booleans()),
                exclusive_tenant=draw(st.sampled_from([None, None, "acme", "beta"])),
            )
        )
    return ClusterSnapshot(tuple(nodes))


@st.composite
def requests(draw):
    count = draw(st.integers(0, 4))
    milli = 1000 if count != 1 else draw(st.sampled_from([250, 500, 1000]))
    allowed = draw(st.sampled_from([None, frozenset({"A800"}), frozenset({"H20", "910B"})]))
    return PlacementRequest(
        draw(st.integers(0, 32000)),
        draw(st.integers(0, 64000)),
        count,
        milli,
        allowed_models=allowed,
        tenant=draw(st.sampled_from([None, "acme", "beta"])),
    )


def apply(cluster: ClusterSnapshot, request: PlacementRequest, decision: Placement) -> ClusterSnapshot:
    """The snapshot after the decision (what the platform's ledger would record)."""
    nodes = []
    for n in cluster.nodes:
        if n.name == decision.node:
            devices = tuple(
                replace(d, free_milli=d.free_milli - decision.milli_per_device)
                if d.index in decision.device_indices
                else d
                for d in n.devices
            )
            n = replace(
                n,
                cpu_milli_free=n.cpu_milli_free - request.cpu_milli,
                memory_mib_free=n.memory_mib_free - request.memory_mib,
                devices=devices,
            )
        nodes.append(n)
    return ClusterSnapshot(tuple(nodes))


def check_decision(cluster: ClusterSnapshot, request: PlacementRequest, decision: Placement) -> None:
    chosen = next(n for n in cluster.nodes if n.name == decision.node)
    assert chosen.healthy
    assert chosen.exclusive_tenant in (None, request.tenant)
    assert request.cpu_milli <= chosen.cpu_milli_free and request.memory_mib <= chosen.memory_mib_free
    assert len(decision.device_indices) == request.device_count  # all-or-nothing, one node
    assert len(set(decision.device_indices)) == request.device_count
    by_index = {d.index: d for d in chosen.devices}
    for index in decision.device_indices:
        device = by_index[index]
        assert device.healthy and device.free_milli >= request.milli_per_device
        assert request.allowed_models is None or device.model in request.allowed_models


@settings(max_examples=60, deadline=None)
@given(
    clusters(),
    st.lists(requests(), min_size=1, max_size=6),
    st.sampled_from(sorted(POLICIES)),
    st.integers(0, 3),
)
def test_sequences_of_decisions_never_overallocate(cluster, reqs, policy, seed):
    for request in reqs:
        decision = place(cluster, request, policy=policy, seed=seed)
        if isinstance(decision, Placement):
            check_decision(cluster, request, decision)
            cluster = apply(cluster, request, decision)
            for n in cluster.nodes:
                assert n.cpu_milli_free >= 0 and n.memory_mib_free >= 0
                assert all(0 <= d.free_milli <= 1000 for d in n.devices)
        else:
            assert sum(count for _, count in decision.reasons) == len(cluster.nodes)


@settings(max_examples=40, deadline=None)
@given(clusters(), requests(), st.sampled_from(sorted(POLICIES)), st.integers(0, 5))
def test_same_seed_same_decision(cluster, request, policy, seed):
    assert place(cluster, request, policy=policy, seed=seed) == place(cluster, request, policy=policy, seed=seed)
