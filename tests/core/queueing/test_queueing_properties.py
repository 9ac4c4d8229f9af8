"""Property tests: whatever the cluster, guarantees, running jobs and queue, a cycle's decisions keep
capacity, never preempt inside a guarantee, admit gangs whole on one site, and are deterministic."""

from __future__ import annotations

from collections import defaultdict

from hypothesis import given, settings
from hypothesis import strategies as st
from tests.core.queueing.builders import job, node, running, snapshot

from zhisuan.core.queueing import QueueSnapshot, schedule
from zhisuan.core.queueing.model import class_rank

MODELS = ("A800", "H20")
TENANTS = ("acme", "beta", "gamma")
CLASSES = ("reserved", "elastic", "spot")


@st.composite
def cycles(draw) -> QueueSnapshot:
    nodes = []
    for i in range(draw(st.integers(1, 6))):
        site = draw(st.sampled_from(["s1", "s2"]))
        labels = {"zhisuan.io/ib-domain": f"ib{draw(st.integers(0, 1))}", "rack": f"r{draw(st.integers(0, 2))}"}
        leased = draw(st.sampled_from([None, None, None, "acme", "beta"]))
        model, devices = draw(st.sampled_from(MODELS)), draw(st.sampled_from([0, 2, 4, 8]))
        nodes.append(node(f"n{i}", site, model, devices, draw(st.integers(4000, 64000)), 262144, labels, leased))
    run = []
    for n in nodes:  # holds: disjoint groups of devices per running job (shares possible on one device)
        free = list(range(len(n.devices)))
        while free and draw(st.booleans()):
            take = free[: draw(st.integers(1, len(free)))]
            free = free[len(take) :]
            klass = draw(st.sampled_from(CLASSES))
            milli = draw(st.sampled_from([500, 1000])) if len(take) == 1 else 1000
            within = klass == "reserved" or draw(st.booleans())
            run.append(
                running(
                    1000 + len(run),
                    draw(st.sampled_from(TENANTS)),
                    klass,
                    n.name,
                    take,
                    within,
                    seq=draw(st.integers(0, 50)),
                    model=n.devices[0].model,
                    milli=milli,
                    cpu=1000,
                    mem=1024,
                )
            )
    guarantees = {t: {m: draw(st.sampled_from([0, 1000, 4000, 8000])) for m in MODELS} for t in TENANTS}
    queued = []
    for i in range(draw(st.integers(0, 12))):
        devices = draw(st.sampled_from([0, 1, 2, 4, 8]))
        milli = draw(st.sampled_from([250, 1000])) if devices == 1 else 1000
        queued.append(
            job(
                i,
                draw(st.sampled_from(TENANTS)),
                draw(st.sampled_from(CLASSES)),
                devices,
                workers=draw(st.sampled_from([1, 1, 2, 3])),
                priority=draw(st.integers(0, 2)),
                seq=draw(st.integers(0, 100)),
                milli=milli,
                models=draw(st.sampled_from([None, {"A800"}, {"H20"}, {"A800", "H20"}])),
                cpu=draw(st.sampled_from([0, 1000, 8000])),
                sites=draw(st.sampled_from([None, {"s1"}, {"s2"}])),
            )
        )
    return snapshot(nodes, queued, guarantees, run, max_admissions=draw(st.integers(1, 10)))


@settings(max_examples=150, deadline=None)
@given(cycles())
def test_never_beyond_capacity(snap):
    result = schedule(snap)
    nodes = {n.name: n for n in snap.cluster.nodes}
    taken_cpu, taken_mem, taken_dev = defaultdict(int), defaultdict(int), defaultdict(int)
    for a in result.admissions:
        for w in a.workers:
            taken_cpu[w.node] += w.cpu_milli
            taken_mem[w.node] += w.memory_mib
            for d in w.device_indices:
                taken_dev[(w.node, d)] += w.milli_per_device
    for name, n in nodes.items():
        assert taken_cpu[name] <= n.cpu_milli_free and taken_mem[name] <= n.memory_mib_free
        for d in n.devices:  # running holds are already subtracted from free_milli
            assert taken_dev[(name, d.index)] <= d.free_milli


@settings(max_examples=150, deadline=None)
@given(cycles())
def test_preemptions_respect_guarantees_and_classes(snap):
    result = schedule(snap)
    running = {j.job_id: j for j in snap.running}
    queued = {j.job_id: j for j in snap.queued}
    assert len({p.job_id for p in result.preemptions}) == len(result.preemptions)
    for p in result.preemptions:
        victim, preemptor = running[p.job_id], queued[p.for_job]
        assert not victim.within_guarantee
        assert class_rank(victim.priority_class) <= class_rank(preemptor.priority_class)
        assert p.for_job in {x.job_id for x in result.pending}


@settings(max_examples=150, deadline=None)
@given(cycles())
def test_gangs_whole_on_one_allowed_site_and_every_job_answered(snap):
    result = schedule(snap)
    queued = {j.job_id: j for j in snap.queued}
    site = {n.name: n.site for n in snap.cluster.nodes}
    answered = [a.job_id for a in result.admissions] + [p.job_id for p in result.pending]
    assert sorted(answered) == sorted(queued)
    assert len(result.admissions) <= snap.max_admissions
    for a in result.admissions:
        j = queued[a.job_id]
        assert len(a.workers) == j.workers
        assert len({site[w.node] for w in a.workers}) == 1
        assert j.sites is None or site[a.workers[0].node] in j.sites
        assert all(len(w.device_indices) == j.request.device_count for w in a.workers)
        assert j.priority_class != "reserved" or a.within_guarantee


@settings(max_examples=150, deadline=None)
@given(cycles())
def test_within_guarantee_admissions_fit_the_guarantee(snap):
    """U_running[t,m] + Σ within-guarantee admissions ≤ G[t,m] (they are decided before any overflow)."""
    result = schedule(snap)
    queued = {j.job_id: j for j in snap.queued}
    usage = defaultdict(int)
    for r in snap.running:
        usage[(r.tenant, r.model)] += r.device_milli
    for a in result.admissions:
        if a.within_guarantee and a.model is not None:
            tenant = queued[a.job_id].tenant
            usage[(tenant, a.model)] += queued[a.job_id].need
            assert usage[(tenant, a.model)] <= snap.guarantees[tenant][a.model]


@settings(max_examples=80, deadline=None)
@given(cycles(), st.integers(0, 3))
def test_same_snapshot_same_decisions(snap, seed):
    assert schedule(snap, seed=seed) == schedule(snap, seed=seed)
    shuffled = QueueSnapshot(
        snap.cluster,
        snap.guarantees,
        tuple(reversed(snap.queued)),
        tuple(reversed(snap.running)),
        snap.max_admissions,
    )
    assert schedule(shuffled, seed=seed) == schedule(snap, seed=seed)  # input order does not matter
