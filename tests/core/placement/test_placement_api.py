"""The snapshot-level API the live platform calls: decisions, reasons, constraints, determinism."""

import pytest

from zhisuan.core.placement import (
    POLICIES,
    ClusterSnapshot,
    DeviceSnapshot,
    NodeSnapshot,
    Placement,
    PlacementRequest,
    Rejection,
    place,
)


def node(name, model="A800", gpus=8, free=1000, cpu=64000, mem=512000, **kw):
    devices = tuple(
        DeviceSnapshot(i, model, 81920, free if isinstance(free, int) else free[i], tflops_bf16=312.0, stack="cuda")
        for i in range(gpus)
    )
    return NodeSnapshot(name, kw.pop("site", "bj-1"), cpu, mem, devices, **kw)


def test_whole_devices_land_on_one_node_with_distinct_indices():
    cluster = ClusterSnapshot((node("a", gpus=2), node("b", gpus=8)))
    decision = place(cluster, PlacementRequest(cpu_milli=8000, memory_mib=1000, device_count=4))
    assert isinstance(decision, Placement)
    assert decision.node == "b" and len(set(decision.device_indices)) == 4
    assert decision.milli_per_device == 1000 and decision.site == "bj-1"


def test_rejection_counts_nodes_per_first_failed_filter():
    cluster = ClusterSnapshot(
        (
            node("t4-1", model="T4"),
            node("t4-2", model="T4"),
            node("t4-3", model="T4"),
            node("busy", free=0),
            node("small-cpu", cpu=100),
            node("sick", healthy=False),
            node("leased", exclusive_tenant="acme"),
        )
    )
    request = PlacementRequest(
        cpu_milli=4000, memory_mib=100, device_count=1, allowed_models=frozenset({"A800"}), tenant="other"
    )
    result = place(cluster, request)
    assert isinstance(result, Rejection)
    assert dict(result.reasons) == {
        "model not allowed": 3,
        "not enough free GPU share": 1,
        "not enough free CPU": 1,
        "node unhealthy": 1,
        "leased exclusively to another tenant": 1,
    }
    assert result.message == (
        "1 node: node unhealthy; 1 node: leased exclusively to another tenant; 1 node: not enough free CPU; "
        "3 nodes: model not allowed; 1 node: not enough free GPU share"
    )


def test_exclusive_node_serves_its_tenant_only():
    cluster = ClusterSnapshot((node("leased", exclusive_tenant="acme"),))
    assert isinstance(place(cluster, PlacementRequest(1000, 10, 1, tenant="acme")), Placement)
    assert isinstance(place(cluster, PlacementRequest(1000, 10, 1)), Rejection)


def test_share_goes_to_a_device_with_enough_free_milli():
    cluster = ClusterSnapshot((node("a", gpus=4, free=(200, 600, 1000, 300)),))
    for policy in POLICIES:
        decision = place(cluster, PlacementRequest(1000, 10, 1, milli_per_device=500), policy=policy, seed=3)
        assert isinstance(decision, Placement)
        assert decision.device_indices[0] in (1, 2)
        assert decision.milli_per_device == 500


def test_device_minimums_and_stack_filter():
    cluster = ClusterSnapshot((node("a"),))
    assert isinstance(place(cluster, PlacementRequest(1, 1, 1, min_device_memory_mib=90000)), Rejection)
    assert isinstance(place(cluster, PlacementRequest(1, 1, 1, min_device_tflops=1000.0)), Rejection)
    assert isinstance(place(cluster, PlacementRequest(1, 1, 1, stack="cann")), Rejection)
    assert isinstance(place(cluster, PlacementRequest(1, 1, 1, stack="cuda", min_device_memory_mib=80000)), Placement)


def test_node_selector():
    cluster = ClusterSnapshot((node("a", labels={"zone": "x"}), node("b", labels={"zone": "y"})))
    decision = place(cluster, PlacementRequest(1, 1, 1, node_selector={"zone": "y"}))
    assert isinstance(decision, Placement) and decision.node == "b"


def test_cpu_only_request_takes_no_devices():
    decision = place(ClusterSnapshot((node("a"),)), PlacementRequest(2000, 100, 0))
    assert isinstance(decision, Placement) and decision.device_indices == ()


def test_same_seed_same_decision_and_seed_changes_ties():
    cluster = ClusterSnapshot(tuple(node(f"n{i}") for i in range(30)))
    request = PlacementRequest(1000, 10, 1)
    first = {place(cluster, request, seed=7).node for _ in range(3)}  # type: ignore[union-attr]
    assert len(first) == 1
    assert len({place(cluster, request, seed=s).node for s in range(10)}) > 1  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "bad",
    [
        dict(cpu_milli=-1, memory_mib=0, device_count=0),
        dict(cpu_milli=0, memory_mib=0, device_count=2, milli_per_device=500),
        dict(cpu_milli=0, memory_mib=0, device_count=1, milli_per_device=0),
        dict(cpu_milli=0, memory_mib=0, device_count=1, same_node=False),
    ],
)
def test_malformed_requests_are_refused(bad):
    with pytest.raises(ValueError):
        PlacementRequest(**bad)


def test_unknown_policy():
    with pytest.raises(ValueError, match="unknown policy"):
        place(ClusterSnapshot((node("a"),)), PlacementRequest(1, 1, 0), policy="nope")


def test_zhisuan_keeps_cpu_of_device_dense_nodes_for_device_work():
    """A CPU-only task goes to the CPU-rich node; FGD sees no fragmentation change and takes the priority order."""
    dense = node("dense", gpus=8, cpu=96000)  # 12 cores per GPU
    rich = node("rich", gpus=2, cpu=104000)  # 52 cores per GPU
    cluster = ClusterSnapshot((dense, rich))
    workload = [((11000, 1000, 1, ""), 0.6), ((4000, 500, 1, ""), 0.2), ((32000, 0, 0, ""), 0.2)]
    request = PlacementRequest(cpu_milli=32000, memory_mib=1000, device_count=0)
    for seed in range(6):
        decision = place(cluster, request, policy="zhisuan", seed=seed, workload=workload)
        assert isinstance(decision, Placement) and decision.node == "rich"
    assert {place(cluster, request, policy="fgd", seed=s, workload=workload).node for s in range(6)} == {  # type: ignore[union-attr]
        "dense",
        "rich",
    }
