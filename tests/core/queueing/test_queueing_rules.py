"""The admission rules on small, hand-made clusters: one rule per scenario, decisions checked exactly."""

from __future__ import annotations

import pytest
from tests.core.queueing.builders import job, node, running, snapshot

from zhisuan.core.queueing import schedule


def admitted(result):
    return {a.job_id: a for a in result.admissions}


def pending(result):
    return {p.job_id: p.reason for p in result.pending}


@pytest.mark.parametrize(
    ("klass", "devices", "guarantee", "admit", "within"),
    [
        ("reserved", 2, 2000, True, True),  # exactly the guarantee
        ("reserved", 3, 2000, False, False),  # beyond: reserved waits
        ("elastic", 3, 2000, True, False),  # beyond: elastic uses the unguaranteed pool
        ("spot", 3, 0, True, False),
        ("elastic", 1, 2000, True, True),
    ],
)
def test_guarantee_decides_class_admission(klass, devices, guarantee, admit, within):
    result = schedule(snapshot([node("a")], [job(1, "acme", klass, devices)], {"acme": {"A800": guarantee}}))
    assert (1 in admitted(result)) is admit
    if admit:
        assert admitted(result)[1].within_guarantee is within
        assert admitted(result)[1].model == "A800"


def test_reserved_beyond_guarantee_pending_names_model_usage_and_guarantee():
    run = [running(50, "acme", "reserved", "s1/a", [0, 1], within=True)]
    result = schedule(snapshot([node("a")], [job(1, "acme", "reserved", 2)], {"acme": {"A800": 3000}}, run))
    reason = pending(result)[1]
    assert "quota" in reason and "A800" in reason
    assert "needs 2000 milli" in reason and "uses 2000 of 3000 guaranteed" in reason


def test_spot_borrows_idle_guarantee_of_another_tenant():
    result = schedule(snapshot([node("a", devices=4)], [job(1, "beta", "spot", 4)], {"acme": {"A800": 4000}}))
    admission = admitted(result)[1]
    assert admission.borrowing and not admission.within_guarantee


def test_unguaranteed_pool_is_used_before_borrowing():
    # 8 devices, 4 guaranteed to acme: beta's first 4 are the pool, the next 4 borrow acme's guarantee.
    queued = [job(1, "beta", "elastic", 4), job(2, "beta", "elastic", 4)]
    result = schedule(snapshot([node("a")], queued, {"acme": {"A800": 4000}}))
    assert [(a.job_id, a.borrowing) for a in result.admissions] == [(1, False), (2, True)]


def test_owner_reclaims_from_the_newest_borrower_first():
    run = [
        running(10, "beta", "spot", "s1/a", [0, 1, 2, 3], seq=5),
        running(11, "beta", "spot", "s1/a", [4, 5, 6, 7], seq=9),
    ]
    result = schedule(snapshot([node("a")], [job(1, "acme", "elastic", 4)], {"acme": {"A800": 8000}}, run))
    assert [(p.job_id, p.for_job) for p in result.preemptions] == [(11, 1)]
    assert result.preemptions[0].reason == "reclaimed by tenant acme's job 1 (within its guarantee)"
    assert pending(result)[1] == "waiting for 1 preempted job to stop (11)"
    assert not result.admissions


def test_spot_is_reclaimed_before_a_newer_elastic_borrower():
    run = [
        running(10, "beta", "elastic", "s1/a", [0, 1, 2, 3], seq=20),
        running(11, "beta", "spot", "s1/a", [4, 5, 6, 7], seq=3),
    ]
    result = schedule(snapshot([node("a")], [job(1, "acme", "reserved", 4)], {"acme": {"A800": 8000}}, run))
    assert [p.job_id for p in result.preemptions] == [11]


def test_the_fewest_victims_that_make_the_job_fit():
    run = [running(10 + i, "beta", "spot", "s1/a", [i], seq=i) for i in range(8)]
    result = schedule(snapshot([node("a")], [job(1, "acme", "elastic", 3)], {"acme": {"A800": 8000}}, run))
    assert sorted(p.job_id for p in result.preemptions) == [15, 16, 17]  # the three newest


def test_a_job_within_its_owners_guarantee_is_never_preempted():
    run = [running(10, "beta", "reserved", "s1/a", range(8), within=True)]
    guarantees = {"acme": {"A800": 8000}, "beta": {"A800": 8000}}
    result = schedule(snapshot([node("a")], [job(1, "acme", "reserved", 1)], guarantees, run))
    assert not result.preemptions
    assert "not enough free GPU share" in pending(result)[1]


def test_never_preempted_for_a_job_of_a_lower_class():
    run = [running(10, "beta", "elastic", "s1/a", range(8))]
    result = schedule(snapshot([node("a")], [job(1, "acme", "spot", 1)], {"acme": {"A800": 8000}}, run))
    assert not result.preemptions and 1 in pending(result)


@pytest.mark.parametrize(("klass", "preempts"), [("elastic", True), ("reserved", False), ("spot", False)])
def test_beyond_guarantee_only_non_spot_preempts_spot(klass, preempts):
    # nobody has a guarantee: reserved cannot run at all, elastic may push out spot, spot may not.
    run = [running(10, "beta", "spot", "s1/a", range(8))]
    result = schedule(snapshot([node("a")], [job(1, "acme", klass, 2)], {}, run))
    assert bool(result.preemptions) is preempts
    if preempts:
        assert result.preemptions[0].reason == "preempted by tenant acme's elastic job 1 (spot work yields first)"


def test_dominant_share_orders_tenants_beyond_guarantee():
    # x already holds 4 of 8 devices beyond guarantee; y holds none: y is served until it catches up.
    run = [running(10, "x", "elastic", "s1/a", range(4), cpu=0, mem=0)]
    queued = [job(i, "x", "elastic", 1, cpu=0, mem=0) for i in (1, 2, 3)]
    queued += [job(i, "y", "elastic", 1, cpu=0, mem=0) for i in (4, 5, 6)]
    result = schedule(snapshot([node("a")], queued, {}, run))
    assert [a.job_id for a in result.admissions] == [4, 5, 6, 1]


def test_a_tenants_jobs_go_by_class_then_priority_then_submission():
    queued = [
        job(1, "acme", "spot", 1, priority=9),
        job(2, "acme", "elastic", 1, priority=0, seq=5),
        job(3, "acme", "elastic", 1, priority=0, seq=4),
        job(4, "acme", "elastic", 1, priority=3, seq=9),
    ]
    result = schedule(snapshot([node("a", devices=3)], queued, {}))
    assert [a.job_id for a in result.admissions] == [4, 3, 2]


@pytest.mark.parametrize(
    ("tenant", "klass", "guarantee", "admit", "borrowing"),
    [
        ("owner", "reserved", {"owner": {"A800": 8000}}, True, False),  # the lease holder itself
        ("beta", "reserved", {"beta": {"A800": 1000}}, False, False),  # within guarantee: never on a lease
        ("beta", "elastic", {}, True, True),  # borrows the idle leased node
        ("beta", "spot", {}, True, True),
    ],
)
def test_leased_node_is_used_by_another_tenant_only_when_borrowing(tenant, klass, guarantee, admit, borrowing):
    result = schedule(snapshot([node("a", leased="owner")], [job(1, tenant, klass, 1)], guarantee))
    assert (1 in admitted(result)) is admit
    if admit:
        assert admitted(result)[1].borrowing is borrowing
    else:
        assert "leased exclusively to another tenant" in pending(result)[1]


def test_two_worker_gang_lands_within_one_ib_domain():
    def n(name, domain, free_devices):
        return node(name, labels={"zhisuan.io/ib-domain": domain, "rack": f"r-{name}"}), free_devices

    nodes = [n("a", "ib-1", 8), n("b", "ib-1", 4), n("c", "ib-2", 8), n("d", "ib-2", 8)]
    run = [running(10, "z", "reserved", "s1/b", range(4), within=True)]
    result = schedule(snapshot([x for x, _ in nodes], [job(1, "acme", "elastic", 8, workers=2)], {}, run))
    assert sorted(w.node for w in admitted(result)[1].workers) == ["s1/c", "s1/d"]
    assert all(w.device_indices == tuple(range(8)) for w in admitted(result)[1].workers)


def test_gang_never_spans_sites():
    nodes = [node("a", site="s1"), node("b", site="s2")]
    result = schedule(snapshot(nodes, [job(1, "acme", "elastic", 8, workers=2)], {}))
    assert not result.admissions
    assert "no single site has room for all 2 workers" in pending(result)[1]


def test_site_constraint_is_respected():
    nodes = [node("a", site="s1"), node("b", site="s2")]
    result = schedule(snapshot(nodes, [job(1, "acme", "elastic", 8, sites={"s2"})], {}))
    assert [w.node for w in admitted(result)[1].workers] == ["s2/b"]


def test_model_nobody_has_stays_pending_with_the_placement_reason():
    result = schedule(snapshot([node("a")], [job(1, "acme", "elastic", 1, models={"H100"})], {}))
    assert pending(result) == {1: "1 node: model not allowed"}


def test_admissions_stop_at_the_cycle_limit():
    queued = [job(i, "acme", "spot", 1) for i in range(5)]
    result = schedule(snapshot([node("a")], queued, {}, max_admissions=2))
    assert len(result.admissions) == 2
    assert sum("admission limit" in r for r in pending(result).values()) == 3


def test_cpu_only_job_holds_no_accelerator_quota():
    result = schedule(snapshot([node("a", devices=0)], [job(1, "acme", "reserved", 0, cpu=4000)], {}))
    assert admitted(result)[1].model is None and admitted(result)[1].within_guarantee
    assert admitted(result)[1].workers[0].cpu_milli == 4000


def test_flavors_prefer_the_model_with_guarantee_headroom():
    nodes = [node("a", model="A800"), node("b", model="H20")]
    result = schedule(snapshot(nodes, [job(1, "acme", "elastic", 1)], {"acme": {"H20": 1000}}))
    assert admitted(result)[1].model == "H20" and admitted(result)[1].within_guarantee


def test_preemptor_is_admitted_in_the_next_cycle_once_victims_stopped():
    spot = [running(10, "beta", "spot", "s1/a", range(8), seq=1)]
    queued = [job(1, "acme", "elastic", 8)]
    first = schedule(snapshot([node("a")], queued, {"acme": {"A800": 8000}}, spot))
    assert [p.job_id for p in first.preemptions] == [10]
    second = schedule(snapshot([node("a")], queued, {"acme": {"A800": 8000}}, []))  # the victim's hold is gone
    assert admitted(second)[1].within_guarantee and not second.preemptions


def test_gang_reclaim_frees_whole_nodes_on_one_site():
    nodes = [node("a"), node("b"), node("c", site="s2")]
    spot = [
        running(10, "beta", "spot", "s1/a", range(8), seq=1),
        running(11, "beta", "spot", "s1/b", range(8), seq=2),
        running(12, "beta", "spot", "s2/c", range(8), seq=3),  # newest, but its site alone cannot host the gang
    ]
    queued = [job(1, "acme", "reserved", 8, workers=2, sites={"s1"})]
    result = schedule(snapshot(nodes, queued, {"acme": {"A800": 16000}}, spot))
    assert sorted(p.job_id for p in result.preemptions) == [10, 11]
    assert pending(result)[1] == "waiting for 2 preempted jobs to stop (11, 10)"


def test_freed_room_goes_to_the_elastic_preemptor_not_back_to_the_preempted_spot_job():
    # aaa's spot job was preempted for zzz's elastic job and is queued again beside it: whatever the
    # tenants' names, elastic work is served before spot work (no preemption loop).
    queued = [job(1, "aaa", "spot", 8), job(2, "zzz", "elastic", 4)]
    result = schedule(snapshot([node("a")], queued, {}))
    assert [a.job_id for a in result.admissions] == [2]
    assert 1 in pending(result)
