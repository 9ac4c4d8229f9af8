"""Marks nodes unreachable when their agent stops sending heartbeats.

The node is cordoned ("agent lost") until its agent reports clean health again for the cordon's
clear period, and the job workers on it are marked ``lost`` with reason ``agent_lost`` (their state
can no longer be known: the job scheduler restarts their jobs elsewhere). Their desired state becomes
``stop``, so an agent that comes back stops what it left running rather than training twice.

One pass: (0) write this process's buffered beats (``inventory.beats``); (1) take the loop's lease in
a short transaction and load the beats of the nodes that look quiet — only those, so the pass costs
what changed, not the fleet's size; (2) decide in pure code (core.liveness); (3) apply in short
transactions of at most ``MARK_CHUNK`` nodes, each only if the lease is still ours and — checked in
the guarded UPDATE itself — the node has not beaten in between.

"Quiet" is judged as of ``decided_at``: ``now``, or earlier if another API process (``--workers N``)
has not yet written its buffered beats up to ``now`` (``beat_flushes``): a beat waiting in some
process's buffer must not make its node look silent.

Start-up grace (``heard_since``, ``core.liveness.listening_since``): silence is counted from the
later of a node's last beat and one heartbeat interval after this process started serving. A
control plane restarted under a beating fleet finds every last beat older than the timeout (it was
down, or the fleet's first beats are still queued behind each other); without the grace it would
mark the whole fleet unreachable at its first pass, and every node would come back on its next beat
— a storm of cordons, lost job workers and full-path beats. With it, no node is judged before
``start + interval + timeout`` (40 s by default); a node that is really gone is marked then.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, selectinload, sessionmaker

from zhisuan.core.liveness import NodeBeat, nodes_gone_quiet
from zhisuan.inventory.beats import BeatBuffer, forget_gone_processes, others_flushed_through
from zhisuan.inventory.cordon import apply_health
from zhisuan.inventory.models import Node
from zhisuan.inventory.service import refresh_availability
from zhisuan.serving.autoscaler import mark_node_replicas_lost
from zhisuan.store.base import transaction
from zhisuan.store.leases import acquire_lease, lease_is_held
from zhisuan.workloads.local_driver import WORKER_ENDED
from zhisuan.workloads.models import JobWorker

LEASE = "heartbeat-monitor"
MARK_CHUNK = 200


def monitor_pass(
    sessions: sessionmaker[Session], now: datetime, timeout: timedelta, holder: str | None = None,
    beats: BeatBuffer | None = None, heard_since: datetime | None = None,
) -> list[int]:
    holder = holder or socket.gethostname()
    if beats is not None:
        beats.flush(sessions, now)
    with transaction(sessions) as session:
        token = acquire_lease(session, LEASE, holder, now, ttl=timeout)
        if token is None:
            return []
        forget_gone_processes(session, now, 10 * timeout)
        decided_at = others_flushed_through(session, holder, now, timeout)
        cutoff = decided_at - timeout
        if heard_since is not None and cutoff <= heard_since:
            return []  # still in the start-up grace: nobody can have been silent for the timeout
        beats_now = tuple(
            NodeBeat(node_id=row[0], status=row[1], managed_by=row[2], last_heartbeat_at=row[3])
            for row in session.execute(
                select(Node.id, Node.status, Node.managed_by, Node.last_heartbeat_at).where(
                    Node.managed_by == "agent", Node.status != "unreachable",
                    or_(Node.last_heartbeat_at.is_(None), Node.last_heartbeat_at < cutoff)))
        )
    quiet = sorted(nodes_gone_quiet(beats_now, decided_at, timeout, heard_since))
    marked: list[int] = []
    # In short transactions of MARK_CHUNK nodes: a mass marking (a partition, a restart under a large
    # fleet) never holds thousands of node rows locked while their beats wait for them.
    for first in range(0, len(quiet), MARK_CHUNK):
        done = mark_unreachable(sessions, quiet[first:first + MARK_CHUNK], cutoff, token, now, timeout)
        if done is None:
            break  # the lease was lost: another process carries on
        marked += done
    if beats is not None:  # their next beat here takes the full path: ready again at once, not at the flush
        beats.known.forget_nodes(marked)
    return sorted(marked)


def mark_unreachable(sessions: sessionmaker[Session], quiet: list[int], cutoff: datetime, token: str,
                     now: datetime, timeout: timedelta) -> list[int] | None:
    """Mark these quiet nodes unreachable (None: the lease is no longer ours)."""
    with transaction(sessions) as session:
        if not lease_is_held(session, LEASE, token, now):
            return None
        # Re-check in the write itself: a heartbeat may commit between the decision and this
        # transaction, or between a read here and its write — a read-then-write would then mark a
        # node unreachable just after its beat. The guarded UPDATE waits for a beat in progress (its
        # row lock on PostgreSQL; SQLite serialises writers) and then re-evaluates the condition.
        marked = list(session.execute(
            update(Node)
            .where(Node.id.in_(quiet), Node.status != "unreachable",
                   or_(Node.last_heartbeat_at.is_(None), Node.last_heartbeat_at < cutoff))
            .values(status="unreachable")
            .returning(Node.id)
            .execution_options(synchronize_session=False)
        ).scalars())
        nodes = session.execute(
            select(Node).where(Node.id.in_(marked)).options(selectinload(Node.devices))).scalars().all()
        for node in nodes:
            apply_health(node, now, timeout, reachable=False)
            refresh_availability(node)
        mark_workers_lost(session, list(nodes), now)
        # Their model-service replicas too, at once: holds end and the autoscaler replaces them.
        mark_node_replicas_lost(session, marked, now)
        return marked


def mark_workers_lost(session: Session, nodes: list[Node], now: datetime) -> None:
    """The job workers of these nodes, all in one query."""
    by_id = {node.id: node for node in nodes}
    if not by_id:
        return
    for worker in session.execute(select(JobWorker).where(
            JobWorker.node_id.in_(sorted(by_id)), JobWorker.state.not_in(WORKER_ENDED))).scalars():
        assert worker.node_id is not None  # selected by it
        node = by_id[worker.node_id]
        quiet_for = (now - node.last_heartbeat_at).total_seconds() if node.last_heartbeat_at else None
        since = f"no heartbeat for {quiet_for:.0f} s" if quiet_for is not None else "never sent a heartbeat"
        worker.state, worker.desired, worker.ended_at = "lost", "stop", now
        worker.reason = f"agent_lost: node {node.name} unreachable ({since})"


MonitorFn = Callable[[], list[int]]
