"""A job's avoid set (nodes an earlier attempt failed on): the placement filter and the cycle's fallback.

The filter ("the job failed on this node before") is the last of the pipeline, so a node is reported
as avoided only when it would otherwise fit. The admission cycle places away from the avoid set when
that fits and falls back to those nodes when nothing else is free (a restart does not wait), saying which
it did in the admission's reason.
"""

from __future__ import annotations

import dataclasses

import pytest
from tests.core.queueing.builders import job, node

from zhisuan.core.placement import ClusterSnapshot, NodeSnapshot, Placement, Rejection, place
from zhisuan.core.placement.snapshot import PlacementRequest
from zhisuan.core.queueing import QueuedJob, QueueSnapshot, schedule


def busy(snapshot: NodeSnapshot) -> NodeSnapshot:
    """The node with every device taken."""
    return dataclasses.replace(snapshot, devices=tuple(dataclasses.replace(d, free_milli=0) for d in snapshot.devices))


def one_gpu(avoid: set[str]) -> PlacementRequest:
    return PlacementRequest(1000, 1024, 1, avoid_nodes=frozenset(avoid))


@pytest.mark.parametrize(("nodes", "avoid", "expected"), [
    # (free nodes (busy ones marked !), avoid set, where it goes or the rejection's message)
    (["a", "b"], set(), {"s1/a", "s1/b"}),
    (["a", "b"], {"s1/a"}, {"s1/b"}),
    (["a", "b"], {"s1/b"}, {"s1/a"}),
    (["a", "b", "c"], {"s1/a", "s1/b"}, {"s1/c"}),
    (["a"], {"s1/a"}, "1 node: the job failed on this node before"),
    (["a", "!b"], {"s1/a"}, "1 node: not enough free GPU share; 1 node: the job failed on this node before"),
    (["!a", "b"], {"s1/a"}, {"s1/b"}),  # an avoided node that does not fit anyway: its real reason
    (["!a"], {"s1/a"}, "1 node: not enough free GPU share"),
    (["a", "b"], {"s9/elsewhere"}, {"s1/a", "s1/b"}),  # a node that left the fleet changes nothing
])
def test_the_filter_keeps_a_job_off_the_nodes_it_failed_on(nodes: list[str], avoid: set[str],
                                                           expected: set[str] | str) -> None:
    cluster = ClusterSnapshot(tuple(busy(node(n[1:])) if n.startswith("!") else node(n) for n in nodes))
    result = place(cluster, one_gpu(avoid))
    if isinstance(expected, str):
        assert isinstance(result, Rejection) and result.message == expected
    else:
        assert isinstance(result, Placement) and result.node in expected


def restarting(job_id: int, avoid: set[str], workers: int = 1, devices: int = 8) -> QueuedJob:
    queued = job(job_id, "acme", devices=devices, workers=workers)
    return dataclasses.replace(queued, request=dataclasses.replace(queued.request, avoid_nodes=frozenset(avoid)))


@pytest.mark.parametrize(("nodes", "queued", "placed_on", "reason_says"), [
    (["a", "b"], restarting(1, {"s1/a"}), {"s1/b"}, "away from the 1 node(s) it failed on"),
    (["a", "b"], restarting(1, {"s1/b"}), {"s1/a"}, "away from the 1 node(s) it failed on"),
    (["a"], restarting(1, {"s1/a"}), {"s1/a"}, "back on s1/a where it failed before: no other node fits now"),
    (["a", "!b"], restarting(1, {"s1/a"}), {"s1/a"}, "back on s1/a where it failed before"),
    (["a", "b", "c"], restarting(1, {"s1/b"}, workers=2), {"s1/a", "s1/c"}, "away from"),  # a gang
    (["a", "b"], restarting(1, {"s1/b"}, workers=2), {"s1/a", "s1/b"}, "back on s1/b"),
    (["a", "b"], restarting(1, set()), None, ""),  # no avoid set: the reason says nothing of it
])
def test_the_cycle_places_away_from_the_avoid_set_and_falls_back_when_nothing_else_fits(
        nodes: list[str], queued: QueuedJob, placed_on: set[str] | None, reason_says: str) -> None:
    cluster = ClusterSnapshot(tuple(busy(node(n[1:])) if n.startswith("!") else node(n) for n in nodes))
    result = schedule(QueueSnapshot(cluster, {}, (queued,), ()))
    (admission,) = result.admissions
    if placed_on is not None:
        assert {w.node for w in admission.workers} == placed_on
    assert reason_says in admission.reason
    if not queued.request.avoid_nodes:
        assert "failed" not in admission.reason


def test_an_avoided_node_is_still_free_for_other_jobs_in_the_same_cycle() -> None:
    cluster = ClusterSnapshot((node("a", devices=1), node("b", devices=1)))
    first = restarting(1, {"s1/a"}, devices=1)
    second = job(2, "beta", devices=1)
    result = schedule(QueueSnapshot(cluster, {}, (first, second), ()))
    where = {a.job_id: a.workers[0].node for a in result.admissions}
    assert where == {1: "s1/b", 2: "s1/a"}
