"""Which nodes have gone quiet. Pure: the heartbeat monitor loads beats, this decides."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class NodeBeat:
    node_id: int
    status: str
    managed_by: str
    last_heartbeat_at: datetime | None


def listening_since(started_at: datetime, interval: timedelta) -> datetime:
    """From when a control plane that started serving at ``started_at`` counts a node's silence:
    one heartbeat ``interval`` later, the first moment a node beating all along has surely had the
    chance to be heard. Before it started, beats had nowhere to go (the control plane was down):
    that silence is the control plane's, not the node's."""
    return started_at + interval


def nodes_gone_quiet(beats: tuple[NodeBeat, ...], now: datetime, timeout: timedelta,
                     heard_since: datetime | None = None) -> tuple[int, ...]:
    """Nodes to mark unreachable: agent-managed, currently ``ready``, and silent for
    longer than ``timeout``, silence counted from the later of the node's last beat and
    ``heard_since`` (``listening_since``; None: the control plane always listened):

        silent_for = now − max(last_heartbeat_at, heard_since)      quiet ⇔ silent_for > timeout

    So after a (re)start no node is marked before ``heard_since + timeout`` (start + interval +
    timeout), however old its last beat. Declared nodes have no agent and are watched by their
    engine's driver instead; a node already unreachable is not reported again, so applying the
    decision is idempotent.
    """
    quiet = []
    for beat in beats:
        if beat.managed_by != "agent" or beat.status == "unreachable":
            continue
        heard = beat.last_heartbeat_at
        if heard_since is not None and (heard is None or heard < heard_since):
            heard = heard_since
        if heard is None or now - heard > timeout:
            quiet.append(beat.node_id)
    return tuple(quiet)


# Clocks of API processes on different hosts may disagree by this much (NTP keeps them far closer).
CLOCK_SKEW = timedelta(seconds=1)


def may_wait_in_buffer(vouched_at: datetime | None, beat_at: datetime, timeout: timedelta,
                       skew: timedelta = CLOCK_SKEW) -> bool:
    """Whether a beat acknowledged at ``beat_at`` may wait in its process's buffer (written by the
    next flush) instead of being written before it is acknowledged.

    ``vouched_at`` is a time the node's ``last_heartbeat_at`` is sure to reach before any monitor
    can judge a moment after it: the value read from the database, or an earlier beat of this
    process (itself written, buffered under this same rule, or written at once). Then

        may wait  ⇔  beat_at − vouched_at ≤ timeout − skew

    Why it is enough: while the beat waits, every monitor judges silence as of a moment ``D`` no later
    than the serving process's flush mark, which is earlier than the beat (``D ≤ beat_at``), and
    marks only a node with ``last_heartbeat_at < D − timeout ≤ beat_at − timeout ≤ vouched_at`` —
    none. A beat after a longer silence (its node already looks quiet) is written before its
    answer: otherwise a monitor could mark the node for the very silence this beat ended, after the
    agent was told it was heard. ``skew`` covers clocks of different hosts."""
    return vouched_at is not None and beat_at - vouched_at <= timeout - skew
