"""The cycle's placement cache answers exactly what a fresh ``place_gang`` would: the shared-shape
shortcut for tenants with leases gives the same decision and the same per-node reasons."""

from __future__ import annotations

import copy

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.core.queueing.builders import job, node

from zhisuan.core.placement import ClusterSnapshot, Rejection
from zhisuan.core.placement.fleet import fleet_from_snapshot
from zhisuan.core.placement.gang import GangPlacement, place_gang
from zhisuan.core.placement.policies import get_policy
from zhisuan.core.queueing.placing import CyclePlacer


def fresh_copy(fleet):
    clone = copy.copy(fleet)
    for name in ("cpu_free", "mem_free", "gpu_left", "affinity"):
        setattr(clone, name, getattr(fleet, name).copy())
    return clone


@st.composite
def leased_clusters(draw) -> ClusterSnapshot:
    nodes = [
        node(
            f"n{i}",
            draw(st.sampled_from(["s1", "s2"])),
            "A800",
            draw(st.sampled_from([0, 2, 8])),
            draw(st.sampled_from([2000, 16000])),
            65536,
            leased=draw(st.sampled_from([None, "acme", "beta"])),
        )
        for i in range(draw(st.integers(1, 6)))
    ]
    return ClusterSnapshot(tuple(nodes))


@settings(max_examples=150, deadline=None)
@given(
    leased_clusters(),
    st.sampled_from([1, 2, 8]),
    st.integers(1, 3),
    st.sampled_from([None, {"s1"}]),
    st.sampled_from([0, 1, 3]),
)
def test_leasing_tenant_gets_the_answer_of_a_fresh_placement(cluster, devices, workers, sites, fill):
    fleet = fleet_from_snapshot(cluster)
    rng = np.random.default_rng(0)
    policy = get_policy("best-fit")
    placer = CyclePlacer(fleet, policy, None, rng, rng.permutation(fleet.size))
    # Fill the unleased nodes with a tenant-less job first (so the shared shape fails and is cached).
    filler = job(100, "nobody", devices=devices, workers=workers, sites=sites, cpu=1000)
    for _ in range(fill + 1):
        placer.place(filler, placer.demand(filler, None, leased=False))
    asked = job(1, "acme", devices=devices, workers=workers, sites=sites, cpu=1000)
    demand = placer.demand(asked, None, leased=False)
    expected = place_gang(fresh_copy(fleet), demand, workers, policy, sites=asked.sites, priority=placer.priority)
    got = placer.place(asked, demand)
    assert isinstance(got, Rejection) == isinstance(expected, Rejection)
    if isinstance(got, Rejection):
        assert got.message == expected.message
    else:
        assert isinstance(got, GangPlacement) and len(got.rows) == workers
