"""How much of the fleet's count rows the fold loop folds in one pass. Pure: the loop counts, this decides.

The count tables (migration 0022, ``inventory.fleet_counts``) grow by one signed row per changed key
per writing transaction; folding replaces the oldest rows by one sum per key, a chunk of rows per
short transaction, the sums appended at the table's end. A folded table holds one row per key (a few
hundred; thousands with a hundred sites), so a table is worth folding only when most of its rows are
redundant, and a chunk must hold more rows than there are keys or folding would just rotate them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FoldPlan:
    chunks: int  # transactions this pass (0: leave the table alone)
    chunk_rows: int  # oldest rows folded per transaction


def plan_fold(rows: int, keys: int, fold_after: int, chunk_rows: int, max_chunks: int) -> FoldPlan:
    """What to fold of a table holding ``rows`` rows over ``keys`` distinct keys:

        worth folding ⇔ rows > max(fold_after, 2 × keys)        (at least half the rows redundant)
        chunk = max(chunk_rows, 2 × keys)
        chunks = min(max_chunks, ⌈rows / chunk⌉)

    A chunk of ``chunk`` rows leaves at most ``keys`` sums, so one sweep over the table at least
    halves it: a backlog converges in a few passes, and a folded table is not folded again every
    pass however many keys it has. ``max_chunks`` bounds a pass after a long quiet period (a backlog
    of millions of rows): the rest waits for the next pass."""
    if chunk_rows < 1 or max_chunks < 1:
        raise ValueError("chunk_rows and max_chunks must be at least 1")
    chunk = max(chunk_rows, 2 * keys)
    if rows <= max(fold_after, 2 * keys):
        return FoldPlan(0, chunk)
    return FoldPlan(min(max_chunks, -(-rows // chunk)), chunk)


def needs_vacuum(dead_rows: int, live_rows: int, at_least: int = 10_000) -> bool:
    """PostgreSQL: a folded table's deleted rows stay as dead tuples that every read still scans until
    a VACUUM reclaims them (autovacuum does, when it runs). Vacuum when they outnumber the live rows
    four to one and are many:

        vacuum ⇔ dead_rows > max(at_least, 4 × live_rows)"""
    return dead_rows > max(at_least, 4 * live_rows)
