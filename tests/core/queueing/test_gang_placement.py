"""``place_gang``: the ordinary pipeline for one worker, all-or-nothing for many, one site, restored arrays."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.core.queueing.builders import node

from zhisuan.core.placement import ClusterSnapshot, Placement, PlacementRequest, Rejection, place
from zhisuan.core.placement.fleet import fleet_from_snapshot
from zhisuan.core.placement.gang import GangPlacement, place_gang
from zhisuan.core.placement.snapshot import DeviceSnapshot, NodeSnapshot

MUTABLE = ("cpu_free", "mem_free", "gpu_left", "affinity")


@st.composite
def clusters(draw) -> ClusterSnapshot:
    nodes = []
    for i in range(draw(st.integers(1, 7))):
        base = node(
            f"n{i}",
            draw(st.sampled_from(["s1", "s2"])),
            draw(st.sampled_from(["A800", "H20"])),
            draw(st.sampled_from([0, 2, 8])),
            draw(st.integers(0, 32000)),
            draw(st.integers(0, 65536)),
            {"zhisuan.io/ib-domain": f"ib{draw(st.integers(0, 1))}"},
            draw(st.sampled_from([None, None, "acme"])),
        )
        devices = tuple(
            DeviceSnapshot(d.index, d.model, d.memory_mib, draw(st.sampled_from([0, 500, 1000]))) for d in base.devices
        )
        nodes.append(
            NodeSnapshot(
                base.name,
                base.site,
                base.cpu_milli_free,
                base.memory_mib_free,
                devices,
                base.labels,
                exclusive_tenant=base.exclusive_tenant,
            )
        )
    return ClusterSnapshot(tuple(nodes))


@st.composite
def requests(draw) -> PlacementRequest:
    count = draw(st.sampled_from([0, 1, 2, 4, 8]))
    milli = draw(st.sampled_from([250, 500, 1000])) if count == 1 else 1000
    models = draw(st.sampled_from([None, frozenset({"A800"}), frozenset({"H20"})]))
    return PlacementRequest(
        draw(st.integers(0, 16000)),
        draw(st.integers(0, 32768)),
        count,
        milli,
        allowed_models=models,
        tenant=draw(st.sampled_from([None, "acme", "beta"])),
    )


@settings(max_examples=150, deadline=None)
@given(clusters(), requests(), st.sampled_from(["zhisuan", "best-fit", "random"]), st.integers(0, 5))
def test_one_worker_decides_exactly_like_place(cluster, request, policy, seed):
    expected = place(cluster, request, policy, seed)
    fleet = fleet_from_snapshot(cluster)
    rng = np.random.default_rng(seed)
    got = place_gang(fleet, request, 1, policy, rng=rng, priority=rng.permutation(fleet.size))
    if isinstance(expected, Rejection):
        assert got == expected
        return
    assert isinstance(expected, Placement) and isinstance(got, GangPlacement)
    row, slots = got.rows[0], got.slots[0]
    assert fleet.names[row] == expected.node
    assert tuple(int(fleet.device_index[row, s]) for s in slots) == expected.device_indices


@settings(max_examples=200, deadline=None)
@given(clusters(), requests(), st.integers(2, 4), st.sampled_from([None, frozenset({"s1"})]))
def test_gang_all_or_nothing_on_one_site(cluster, request, workers, sites):
    fleet = fleet_from_snapshot(cluster)
    before = {name: getattr(fleet, name).copy() for name in MUTABLE}
    got = place_gang(fleet, request, workers, "zhisuan", sites=sites)
    if isinstance(got, Rejection):
        for name in MUTABLE:
            np.testing.assert_array_equal(getattr(fleet, name), before[name])
        assert got.message
        return
    assert len(got.rows) == workers
    assert {fleet.sites[r] for r in got.rows} == {got.site}
    assert sites is None or got.site in sites
    assert (fleet.cpu_free >= 0).all() and (fleet.mem_free >= 0).all() and (fleet.gpu_left >= 0).all()
    taken = before["gpu_left"].sum() - fleet.gpu_left.sum()
    per_worker = request.device_count * request.milli_per_device if request.device_count else 0
    assert taken == workers * per_worker
    assert before["cpu_free"].sum() - fleet.cpu_free.sum() == workers * request.cpu_milli


def test_gang_prefers_the_rack_when_no_ib_domain_fits():
    labels = [{"rack": "r1"}, {"rack": "r2"}, {"rack": "r2"}, {"rack": "r1"}]
    nodes = [node(f"n{i}", labels=lab, devices=8) for i, lab in enumerate(labels)]
    fleet = fleet_from_snapshot(ClusterSnapshot(tuple(nodes)))
    fleet.gpu_left[0, :] = 0  # n0 is busy: only rack r2 still has two whole free nodes
    got = place_gang(fleet, PlacementRequest(1000, 1024, 8), 2, "zhisuan")
    assert isinstance(got, GangPlacement) and got.domain == ("rack", "r2")
    assert sorted(fleet.names[r] for r in got.rows) == ["s1/n1", "s1/n2"]


def test_rejection_keeps_the_per_node_reasons_of_place():
    cluster = ClusterSnapshot((node("a", model="H20"), node("b", site="s2")))
    fleet = fleet_from_snapshot(cluster)
    got = place_gang(fleet, PlacementRequest(1000, 1024, 1, allowed_models=frozenset({"A800"})), 2, sites={"s1"})
    assert isinstance(got, Rejection)
    assert got.message == "1 node: model not allowed; 1 node: site not allowed for this job"
