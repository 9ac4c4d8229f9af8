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


def nodes_gone_quiet(beats: tuple[NodeBeat, ...], now: datetime, timeout: timedelta) -> tuple[int, ...]:
    """Nodes to mark unreachable: agent-managed, currently ``ready``, and silent for
    longer than ``timeout`` (``now - last_heartbeat_at > timeout``).

    Declared nodes have no agent and are watched by their engine's driver instead; a node already
    unreachable is not reported again, so applying the decision is idempotent.
    """
    quiet = []
    for beat in beats:
        if beat.managed_by != "agent" or beat.status == "unreachable":
            continue
        if beat.last_heartbeat_at is None or now - beat.last_heartbeat_at > timeout:
            quiet.append(beat.node_id)
    return tuple(quiet)
