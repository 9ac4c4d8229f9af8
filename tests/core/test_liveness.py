"""core.liveness: which nodes have gone quiet, with and without the start-up grace."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zhisuan.core.liveness import NodeBeat, listening_since, may_wait_in_buffer, nodes_gone_quiet

T0 = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
TIMEOUT = timedelta(seconds=30)
INTERVAL = timedelta(seconds=10)


def at(seconds: float | None) -> datetime | None:
    return None if seconds is None else T0 + timedelta(seconds=seconds)


@pytest.mark.parametrize(("last_beat_s", "now_s", "started_s", "quiet"), [
    # no grace (started None): quiet after more than the timeout
    (0, 30, None, False), (0, 30.001, None, True), (None, 0, None, True),
    # restarted at t=100 (listening from 110): old beats count from 110, so quiet only after 140
    (0, 139, 100, False), (0, 140, 100, False), (0, 140.5, 100, True), (None, 139, 100, False),
    (None, 141, 100, True),
    # a beat after the listening point counts as usual
    (115, 145, 100, False), (115, 145.5, 100, True),
])
def test_silence_counts_from_the_later_of_the_last_beat_and_the_listening_point(
        last_beat_s: float | None, now_s: float, started_s: float | None, quiet: bool) -> None:
    heard_since = None if started_s is None else listening_since(T0 + timedelta(seconds=started_s), INTERVAL)
    beat = NodeBeat(node_id=1, status="ready", managed_by="agent", last_heartbeat_at=at(last_beat_s))
    assert nodes_gone_quiet((beat,), T0 + timedelta(seconds=now_s), TIMEOUT, heard_since) == ((1,) if quiet else ())


@pytest.mark.parametrize(("status", "managed_by"), [("unreachable", "agent"), ("ready", "declared")])
def test_nodes_without_an_agent_or_already_unreachable_are_not_reported(status: str, managed_by: str) -> None:
    beat = NodeBeat(node_id=1, status=status, managed_by=managed_by, last_heartbeat_at=None)
    assert nodes_gone_quiet((beat,), T0 + timedelta(hours=1), TIMEOUT, T0) == ()


seconds = st.floats(min_value=0, max_value=1000, allow_nan=False)


@given(last=st.one_of(st.none(), seconds), now=seconds, started=seconds)
def test_no_node_is_judged_before_the_start_plus_an_interval_plus_the_timeout(
        last: float | None, now: float, started: float) -> None:
    beat = NodeBeat(node_id=7, status="ready", managed_by="agent", last_heartbeat_at=at(last))
    heard_since = listening_since(T0 + timedelta(seconds=started), INTERVAL)
    quiet = nodes_gone_quiet((beat,), T0 + timedelta(seconds=now), TIMEOUT, heard_since)
    if now <= started + (INTERVAL + TIMEOUT).total_seconds():
        assert quiet == ()
    # The grace only ever delays a judgement, never makes one: quiet with it ⇒ quiet without it.
    if quiet:
        assert nodes_gone_quiet((beat,), T0 + timedelta(seconds=now), TIMEOUT) == quiet


def test_a_beat_may_wait_in_a_buffer_only_while_a_recent_time_vouches_for_its_node() -> None:
    now = T0
    assert may_wait_in_buffer(now - timedelta(seconds=10), now, TIMEOUT)  # a steady node: the flush writes it
    assert may_wait_in_buffer(now - timedelta(seconds=29), now, TIMEOUT)
    assert not may_wait_in_buffer(now - timedelta(seconds=29.5), now, TIMEOUT)  # within the clock skew
    assert not may_wait_in_buffer(now - timedelta(seconds=40), now, TIMEOUT)  # it looks quiet: written at once
    assert not may_wait_in_buffer(None, now, TIMEOUT)  # never heard


@given(vouched_s=st.floats(0, 100), beat_s=st.floats(0, 100), decided_s=st.floats(0, 100))
def test_no_monitor_can_mark_a_node_for_the_silence_a_buffered_beat_ended(
        vouched_s: float, beat_s: float, decided_s: float) -> None:
    """The argument of ``may_wait_in_buffer``: while the beat waits, a monitor judges as of a moment no
    later than the beat (the serving process's flush mark); the node's last written beat is at least
    the vouching time. Whenever the beat may wait, that monitor finds the node not quiet."""
    vouched, beat = T0 + timedelta(seconds=vouched_s), T0 + timedelta(seconds=max(beat_s, vouched_s))
    decided = min(beat, T0 + timedelta(seconds=decided_s))
    if may_wait_in_buffer(vouched, beat, TIMEOUT):
        assert nodes_gone_quiet((NodeBeat(1, "ready", "agent", vouched),), decided, TIMEOUT) == ()
