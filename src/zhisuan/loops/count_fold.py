"""Folds the fleet's count rows in the background, so they never pile up while nobody reads them.

Triggers append a signed row to ``fleet_node_counts`` / ``fleet_device_counts`` for every change of
a node's status or a device's health or availability, and every registration (migration 0022,
``inventory.fleet_counts``). Readers sum them; without this loop only a reader folded them, so a busy
fleet nobody looked at for a day left millions of rows for the first read to fold.

One pass: (1) take the ``count-fold`` lease in a short transaction (one process of ``zhisuan up
--workers N`` folds; the others skip) and count each table's rows, up to what one pass may fold, and
(past 512 rows) their distinct keys; (2) decide in pure code whether and in how many chunks to fold
each (``core.count_folding``: only a table whose rows are mostly redundant); (3) fold each chunk in
its own short transaction, only while the lease is still ours: delete the chunk's oldest rows and
insert one sum per key. Writers only INSERT, which a DELETE of other rows never blocks; rows appended
meanwhile are outside the fold's snapshot and are kept, so no count changes (``inventory.fleet_counts``).
On PostgreSQL a reader folding at the same moment holds the advisory lock and this pass leaves that
table to it.
"""

from __future__ import annotations

import socket
from datetime import datetime, timedelta

from sqlalchemy import TableClause, text
from sqlalchemy.orm import Session, sessionmaker

from zhisuan.core.count_folding import FoldPlan, needs_vacuum, plan_fold
from zhisuan.inventory.fleet_counts import (
    DEVICE_COUNTS,
    FOLD_AFTER_ROWS,
    FOLD_CHUNK_ROWS,
    NODE_COUNTS,
    count_keys,
    count_rows,
    fold,
)
from zhisuan.store.base import transaction
from zhisuan.store.leases import acquire_lease, lease_is_held

LEASE = "count-fold"
TABLES: dict[str, TableClause] = {"fleet_node_counts": NODE_COUNTS, "fleet_device_counts": DEVICE_COUNTS}
# Chunks of one table per pass: 50 × 10,000 rows, ~1–2 s; a larger backlog waits for the next pass.
MAX_CHUNKS = 50


def fold_pass(sessions: sessionmaker[Session], now: datetime, holder: str | None = None,
              ttl: timedelta = timedelta(seconds=60), fold_after: int = FOLD_AFTER_ROWS,
              chunk_rows: int = FOLD_CHUNK_ROWS, max_chunks: int = MAX_CHUNKS) -> dict[str, int] | None:
    """Fold what has piled up; rows folded per table, or None if another process holds the lease."""
    holder = holder or socket.gethostname()
    probe = max(chunk_rows * max_chunks, fold_after) + 1  # enough to decide; a backlog is not scanned
    with transaction(sessions) as session:
        token = acquire_lease(session, LEASE, holder, now, ttl)
        if token is None:
            return None
        plans: dict[str, FoldPlan] = {}
        for name, counts in TABLES.items():
            rows = count_rows(session, counts, probe)
            keys = count_keys(session, counts) if rows > fold_after else 0  # a small table: not needed
            plans[name] = plan_fold(rows, keys, fold_after, chunk_rows, max_chunks)
    folded = dict.fromkeys(TABLES, 0)
    for name, plan in plans.items():
        for _ in range(plan.chunks):
            with transaction(sessions) as session:
                if not lease_is_held(session, LEASE, token, now):
                    return folded  # another process took over: it folds the rest
                deleted = fold(session, TABLES[name], plan.chunk_rows)
            if not deleted:
                break  # a reader is folding this table (PostgreSQL), or nothing was left to fold
            folded[name] += deleted
    if any(folded.values()):
        vacuum_if_bloated(sessions, [name for name, rows in folded.items() if rows])
    return folded


def vacuum_if_bloated(sessions: sessionmaker[Session], names: list[str]) -> None:
    """PostgreSQL: VACUUM the folded tables whose dead rows dwarf their live ones
    (``core.count_folding.needs_vacuum``) — for a database run without autovacuum, where every read
    would otherwise scan a day's folded rows. A plain VACUUM blocks neither readers nor writers
    (its lock conflicts only with other VACUUMs and DDL); it runs outside a transaction."""
    engine = sessions.kw["bind"]
    if engine.dialect.name != "postgresql":
        return
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        stats = connection.execute(
            text("SELECT relname, n_dead_tup, n_live_tup FROM pg_stat_user_tables WHERE relname = ANY(:names)"),
            {"names": names}).all()
        for name, dead, live in stats:
            if needs_vacuum(dead, live):
                connection.execute(text(f"VACUUM {TABLES[name].name}"))
