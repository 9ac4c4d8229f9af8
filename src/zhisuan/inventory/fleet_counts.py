"""The fleet's counts as kept by the database (migration 0022): nodes per (site, status), devices per
(site, model, health, available).

Triggers on ``nodes`` and ``devices`` append signed rows (+1 / −n per key) to ``fleet_node_counts``
and ``fleet_device_counts`` in the same transaction as every change, whoever makes it; a key's count
is the sum of its rows:

    count(key) = Σ rows(key).delta  =  |{ rows of the base table with that key }|

Reading is a grouped sum over a few rows per key (a few hundred rows for a fleet of any size once
folded), not a scan of every device. Folding deletes the oldest rows (at most ``FOLD_CHUNK_ROWS``)
and inserts one sum per key of them, in one transaction — which changes no count: rows appended by
writers meanwhile are not in its snapshot, so they are neither deleted nor summed, and a row another
folder deleted first is not returned by this one's DELETE. The fold loop (``loops.count_fold``)
folds every few seconds, so rows never pile up while nobody reads; a reader that still finds many
rows (no loop running: tests, a process started without loops) folds one chunk itself.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ColumnElement,
    Integer,
    String,
    TableClause,
    column,
    delete,
    func,
    insert,
    select,
    table,
)
from sqlalchemy.orm import Session

from zhisuan.identity.access import Principal
from zhisuan.inventory.models import Site

NODE_COUNTS = table("fleet_node_counts", column("id", BigInteger), column("site_id", Integer),
                    column("status", String), column("nodes", Integer))
DEVICE_COUNTS = table("fleet_device_counts", column("id", BigInteger), column("site_id", Integer),
                      column("model", String), column("health", String), column("available", Boolean),
                      column("devices", Integer))
# A table is folded once its rows outnumber this (a registration of 1,000 nodes adds ~1,000).
FOLD_AFTER_ROWS = 512
# Rows folded per transaction: 135–285 ms of DELETE … RETURNING and Python summing on PostgreSQL at load
# 8–9 (BENCHMARKS.md, session 7); writers only INSERT and never wait for a fold. SQLite holds its write
# lock that long, but only a backlog fills a whole chunk: the loop folds every 5 s, from 512 rows.
FOLD_CHUNK_ROWS = 10_000
FOLD_LOCK = 0x7A68_0022  # PostgreSQL advisory lock: one folder at a time, the others just read


def _scoped(query: Any, counts: TableClause, principal: Principal) -> Any:
    # Providers see their own capacity; operators and tenants (who shop for capacity) see all of it.
    # The join also drops the rows of sites deleted since (their nodes' deletes brought them to 0).
    query = query.join(Site, Site.id == counts.c.site_id)
    if principal.role == "provider":
        return query.where(Site.provider_id == principal.provider_id)
    return query


def _grouped(session: Session, counts: TableClause, keys: list[ColumnElement[Any]], total: ColumnElement[Any],
             scope: Any) -> list[tuple[Any, ...]]:
    """Σ ``total`` per key (keys whose sum is 0 left out); folds a chunk of ``counts`` when it holds many
    rows, most of them redundant (more than two per key seen: with thousands of keys, a folded table
    is above ``FOLD_AFTER_ROWS`` and must not be folded again by every read)."""
    rows = session.execute(scope(select(*keys, func.sum(total), func.count()).group_by(*keys))).all()
    seen = sum(row[-1] for row in rows)
    if seen > max(FOLD_AFTER_ROWS, 2 * len(rows)):
        fold(session, counts, max(FOLD_CHUNK_ROWS, 2 * len(rows)))
    return [tuple(row[:-1]) for row in rows if row[-2]]


def node_statuses(session: Session, principal: Principal) -> dict[str, int]:
    """Nodes per status over the sites the caller may count."""
    rows = _grouped(session, NODE_COUNTS, [NODE_COUNTS.c.status], NODE_COUNTS.c.nodes,
                    lambda query: _scoped(query, NODE_COUNTS, principal))
    return {status: int(count) for status, count in rows}


def device_counts(session: Session, principal: Principal) -> list[tuple[str, bool, str, int]]:
    """(model, available, health, count) over the devices the caller may count."""
    c = DEVICE_COUNTS.c
    rows = _grouped(session, DEVICE_COUNTS, [c.model, c.available, c.health], c.devices,
                    lambda query: _scoped(query, DEVICE_COUNTS, principal))
    return [(model, bool(available), health, int(count)) for model, available, health, count in rows]


def exported_gauges(session: Session) -> tuple[list[tuple[str, str, int]], list[tuple[str, str, str, bool, int]]]:
    """What ``/metrics`` exports, over every site: (site, status, nodes) and (site, model, health, available,
    devices) — a sum over the kept counts instead of grouping every device at each scrape."""
    n, c = NODE_COUNTS.c, DEVICE_COUNTS.c
    nodes = _grouped(session, NODE_COUNTS, [Site.name.expression, n.status], n.nodes,
                     lambda query: query.select_from(NODE_COUNTS).join(Site, Site.id == n.site_id))
    devices = _grouped(session, DEVICE_COUNTS, [Site.name.expression, c.model, c.health, c.available], c.devices,
                       lambda query: query.select_from(DEVICE_COUNTS).join(Site, Site.id == c.site_id))
    return ([(site, status, int(count)) for site, status, count in nodes],
            [(site, model, health, bool(available), int(count)) for site, model, health, available, count in devices])


@dataclass(frozen=True)
class SiteCounts:
    nodes: int = 0
    accelerators: int = 0
    available: int = 0
    unhealthy: int = 0


def site_counts(session: Session, site_ids: list[int]) -> dict[int, SiteCounts]:
    """Nodes and accelerators (all, available, unhealthy) per site."""
    nodes = dict(_grouped(session, NODE_COUNTS, [NODE_COUNTS.c.site_id], NODE_COUNTS.c.nodes,
                          lambda query: query.select_from(NODE_COUNTS).where(NODE_COUNTS.c.site_id.in_(site_ids))))
    c = DEVICE_COUNTS.c
    devices: dict[int, Counter[str]] = {sid: Counter() for sid in site_ids}
    for site_id, available, health, count in _grouped(
            session, DEVICE_COUNTS, [c.site_id, c.available, c.health], c.devices,
            lambda query: query.select_from(DEVICE_COUNTS).where(c.site_id.in_(site_ids))):
        devices[site_id].update(all=count, available=count if available else 0,
                                unhealthy=count if health != "healthy" else 0)
    return {sid: SiteCounts(int(nodes.get(sid, 0)), devices[sid]["all"], devices[sid]["available"],
                            devices[sid]["unhealthy"]) for sid in site_ids}


def count_rows(session: Session, counts: TableClause, up_to: int) -> int:
    """The table's rows, counted up to ``up_to`` at most (a piled-up table is not scanned to its end)."""
    probe = select(counts.c.id).limit(up_to).subquery()
    return int(session.execute(select(func.count()).select_from(probe)).scalar_one())


def count_keys(session: Session, counts: TableClause) -> int:
    """The table's distinct keys (all its rows: a count over some of them could say fewer keys than a
    chunk meets, and a chunk with no more rows than keys may fold nothing)."""
    distinct = select(*key_columns(counts)).distinct().subquery()
    return int(session.execute(select(func.count()).select_from(distinct)).scalar_one())


def key_columns(counts: TableClause) -> list[ColumnElement[Any]]:
    return [col for col in counts.c if col.name not in ("id", "nodes", "devices")]


def fold(session: Session, counts: TableClause, limit: int = FOLD_CHUNK_ROWS) -> int | None:
    """The oldest ``limit`` rows replaced by one row per key, same sums (see the module doc); the rows
    deleted. On PostgreSQL a folder that finds another folding skips it (None: the other's fold will
    do); on SQLite the transaction's write lock already makes folders take turns."""
    postgresql = session.get_bind().dialect.name == "postgresql"
    if postgresql and not session.execute(select(func.pg_try_advisory_xact_lock(FOLD_LOCK))).scalar_one():
        return None
    keys = key_columns(counts)
    total = counts.c.nodes if "nodes" in counts.c else counts.c.devices
    oldest = select(counts.c.id).order_by(counts.c.id).limit(limit)
    sums: Counter[tuple[Any, ...]] = Counter()
    deleted = 0
    for *key, delta in session.execute(delete(counts).where(counts.c.id.in_(oldest)).returning(*keys, total)):
        sums[tuple(key)] += delta
        deleted += 1
    kept = [dict(zip([col.name for col in keys], key, strict=True), **{total.name: delta})
            for key, delta in sorted(sums.items(), key=lambda item: repr(item[0])) if delta]
    if kept:
        session.execute(insert(counts), kept)
    return deleted
