"""The fold loop (``loops.count_fold``): the count rows triggers append are folded in the background,
without any reader, in short transactions that never change a count and that writers never wait for.

On both databases: Hypothesis-drawn churn interleaved with loop passes keeps the counts equal to a
full recount and the tables bounded; rows appended with nobody reading pile up until a pass folds
them (the test fails if the loop folds nothing); one process of several folds (the lease); an app
started with its loops folds by itself. On PostgreSQL: a fold neither waits for an open writer nor
makes one wait, and the writer's rows survive it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, sessionmaker

from tests.api.conftest import Api, Clock, make_settings
from tests.api.test_fleet_counts import STEPS, add_nodes, assert_counts_current, run
from zhisuan.api.app import create_app
from zhisuan.catalog.loader import default_catalog
from zhisuan.inventory import fleet_counts
from zhisuan.inventory.models import Node
from zhisuan.loops.count_fold import LEASE, TABLES, fold_pass
from zhisuan.store.base import transaction
from zhisuan.store.leases import LoopLease

# Keys of the small world: node counts 2 sites × 3 statuses, device counts 2 × 2 models × 3 healths × 2.
MOST_KEYS = 24
WRITER_STEPS = tuple(step for step in STEPS if step.__name__ != "fold")  # no reader-side folds here


def rows(sessions: sessionmaker[Session]) -> dict[str, int]:
    with transaction(sessions) as session:
        return {name: session.execute(select(func.count()).select_from(counts)).scalar_one()
                for name, counts in TABLES.items()}


def rows_and_keys(sessions: sessionmaker[Session]) -> dict[str, tuple[int, int]]:
    """Per table: its rows and its distinct keys (the message of a failed bound)."""
    with transaction(sessions) as session:
        return {name: (session.execute(select(func.count()).select_from(counts)).scalar_one(),
                       fleet_counts.count_keys(session, counts)) for name, counts in TABLES.items()}


def flip_every_health(session: Session, *_: Any) -> None:
    """A burst: every device's health changes in one statement (two rows appended per device)."""
    session.execute(text("UPDATE devices SET health = CASE health WHEN 'healthy' THEN 'failed' ELSE 'healthy' END"))


def flip_statuses_one_by_one(sessions: sessionmaker[Session], times: int) -> None:
    """``times`` transactions each changing one node's status, as beats and the monitor do."""
    with transaction(sessions) as session:
        node_ids = list(session.execute(select(Node.id).order_by(Node.id)).scalars())
    for n in range(times):
        with transaction(sessions) as session:
            session.execute(text("UPDATE nodes SET status = CASE status WHEN 'ready' THEN 'unreachable' "
                                 "ELSE 'ready' END WHERE id = :n"), {"n": node_ids[n % len(node_ids)]})


def fold_until_quiet(sessions: sessionmaker[Session], clock: Clock, **limits: int) -> int:
    """Loop passes, a second apart, until one folds nothing; how many passes folded something."""
    for passes in range(100):
        clock.advance(seconds=1)
        folded = fold_pass(sessions, clock(), "a", **limits)
        assert folded is not None
        if not any(folded.values()):
            return passes
    raise AssertionError("the fold loop never settled")


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(st.tuples(st.sampled_from((*WRITER_STEPS, flip_every_health)), st.integers(0, 2**32),
                                st.booleans()), min_size=1, max_size=10))
def test_churn_and_loop_passes_keep_counts_exact_and_tables_bounded(world: Api, clock: Clock,
                                                                    steps: list[Any]) -> None:
    sessions = world.client.app.state.ctx.sessions  # type: ignore[attr-defined]
    limits = {"fold_after": 2 * MOST_KEYS, "chunk_rows": 7, "max_chunks": 3}  # small: many chunks, many passes
    for step, seed, then_fold in steps:
        run(sessions, step, seed, commit=seed % 7 != 0)
        if then_fold:
            clock.advance(seconds=1)
            assert fold_pass(sessions, clock(), "a", **limits) is not None
    fold_until_quiet(sessions, clock, **limits)
    counted = rows(sessions)  # before any reader could fold
    assert all(count <= limits["fold_after"] for count in counted.values()), rows_and_keys(sessions)
    assert_counts_current(sessions)


def test_rows_pile_up_without_readers_until_the_loop_folds_them(world: Api, clock: Clock) -> None:
    sessions = world.client.app.state.ctx.sessions  # type: ignore[attr-defined]
    for seed in range(4):
        run(sessions, add_nodes, seed, commit=True)
    flip_statuses_one_by_one(sessions, 400)  # nobody reads: 800 rows appended
    piled = rows(sessions)
    assert piled["fleet_node_counts"] > 800
    # Chunks of 100, at most 3 a pass: the backlog folds over a few passes, each bounded.
    limits = {"fold_after": 10, "chunk_rows": 100, "max_chunks": 3}
    first = fold_pass(sessions, clock(), "a", **limits)
    assert first is not None and first["fleet_node_counts"] == 300
    assert fold_until_quiet(sessions, clock, **limits) >= 1
    after = rows(sessions)  # at most two rows per key (2 sites × 3 statuses; devices: MOST_KEYS)
    assert after["fleet_node_counts"] <= 12 and after["fleet_device_counts"] <= 2 * MOST_KEYS
    assert_counts_current(sessions)


def test_one_process_folds_the_others_skip_until_its_lease_expires(world: Api, clock: Clock) -> None:
    sessions = world.client.app.state.ctx.sessions  # type: ignore[attr-defined]
    assert fold_pass(sessions, clock(), "process-a") == {"fleet_node_counts": 0, "fleet_device_counts": 0}
    assert fold_pass(sessions, clock(), "process-b") is None
    clock.advance(seconds=61)  # process a is gone; its lease ran out
    assert fold_pass(sessions, clock(), "process-b") is not None
    with transaction(sessions) as session:
        assert session.get(LoopLease, LEASE).holder == "process-b"  # type: ignore[union-attr]


def test_an_app_with_its_loops_folds_by_itself(world: Api, tmp_path: Any) -> None:
    """A second process on the same database, loops on, a fold every 50 ms: nobody reads the counts."""
    url = world.client.app.state.ctx.settings.database_url  # type: ignore[attr-defined]
    sessions = world.client.app.state.ctx.sessions  # type: ignore[attr-defined]
    for seed in range(2):
        run(sessions, add_nodes, seed, commit=True)
    flip_statuses_one_by_one(sessions, 300)
    assert rows(sessions)["fleet_node_counts"] > fleet_counts.FOLD_AFTER_ROWS
    settings = replace(make_settings(url, tmp_path), run_background_loops=True, count_fold_interval_s=0.05)
    second = create_app(settings, catalog=default_catalog())
    with TestClient(second):
        deadline = time.monotonic() + 20
        while rows(sessions)["fleet_node_counts"] > fleet_counts.FOLD_AFTER_ROWS and time.monotonic() < deadline:
            time.sleep(0.05)
    second.state.engine.dispose()
    second.state.loop_engine.dispose()
    assert rows(sessions)["fleet_node_counts"] <= 6
    assert_counts_current(sessions)


@pytest.mark.parametrize("backend", ["postgresql"])
def test_a_fold_and_an_open_writer_never_wait_for_each_other(world: Api, clock: Clock) -> None:
    sessions = world.client.app.state.ctx.sessions  # type: ignore[attr-defined]
    run(sessions, add_nodes, 1, commit=True)
    flip_statuses_one_by_one(sessions, 300)
    writer = sessions()
    try:  # a writer appends rows and stays open across a whole fold pass
        writer.execute(text("SET LOCAL lock_timeout = '5s'"))
        writer.execute(text("UPDATE devices SET available = NOT available"))
        passed = in_thread(lambda: fold_pass(sessions, clock(), "a"))
        assert passed is not None and passed["fleet_node_counts"] > 600
        folding = sessions()  # and a fold stays open across a writer's transaction
        try:
            assert fleet_counts.fold(folding, fleet_counts.DEVICE_COUNTS) is not None
            in_thread(lambda: flip_statuses_one_by_one(sessions, 3))
        finally:
            folding.commit()
            folding.close()
        writer.commit()
    finally:
        writer.close()
    assert_counts_current(sessions)


def in_thread(work: Any, within: timedelta = timedelta(seconds=10)) -> Any:
    """``work``'s result, which must come while the caller keeps its transaction open."""
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(work()), daemon=True)
    thread.start()
    thread.join(within.total_seconds())
    assert not thread.is_alive(), "it waited for the other transaction"
    return result[0]
