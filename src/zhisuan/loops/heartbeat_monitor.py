"""Marks nodes unreachable when their agent stops sending heartbeats.

One pass: (1) take the loop's lease in a short transaction and load every node's last beat;
(2) decide in pure code (core.liveness); (3) apply in a second short transaction, only if the
lease is still ours and — checked in the guarded UPDATE itself — the node has not beaten in between.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, selectinload, sessionmaker

from zhisuan.core.liveness import NodeBeat, nodes_gone_quiet
from zhisuan.inventory.models import Node
from zhisuan.inventory.service import refresh_availability
from zhisuan.store.base import transaction
from zhisuan.store.leases import acquire_lease, lease_is_held

LEASE = "heartbeat-monitor"


def monitor_pass(
    sessions: sessionmaker[Session], now: datetime, timeout: timedelta, holder: str | None = None
) -> list[int]:
    holder = holder or socket.gethostname()
    with transaction(sessions) as session:
        token = acquire_lease(session, LEASE, holder, now, ttl=timeout)
        if token is None:
            return []
        beats = tuple(
            NodeBeat(node_id=row[0], status=row[1], managed_by=row[2], last_heartbeat_at=row[3])
            for row in session.execute(select(Node.id, Node.status, Node.managed_by, Node.last_heartbeat_at))
        )
    quiet = nodes_gone_quiet(beats, now, timeout)
    if not quiet:
        return []
    with transaction(sessions) as session:
        if not lease_is_held(session, LEASE, token, now):
            return []
        # Re-check in the write itself: a heartbeat may commit between the decision and this
        # transaction, or between a read here and its write — a read-then-write would then mark a
        # node unreachable just after its beat. The guarded UPDATE waits for a beat in progress (its
        # row lock on PostgreSQL; SQLite serialises writers) and then re-evaluates the condition.
        marked = list(session.execute(
            update(Node)
            .where(Node.id.in_(quiet), Node.status != "unreachable",
                   or_(Node.last_heartbeat_at.is_(None), Node.last_heartbeat_at < now - timeout))
            .values(status="unreachable")
            .returning(Node.id)
            .execution_options(synchronize_session=False)
        ).scalars())
        for node in session.execute(
            select(Node).where(Node.id.in_(marked)).options(selectinload(Node.devices))
        ).scalars():
            refresh_availability(node)
        return sorted(marked)

MonitorFn = Callable[[], list[int]]
