"""Known beats: a heartbeat byte-for-byte equal to one already applied costs no SQL and no parsing.

A steady node sends the same body every interval (its name and its devices' health) with the same
agent key. Once a beat has been applied and left its node in the steady state (``ready``, not
cordoned, every device healthy), this process remembers (token digest → body digest, node, key,
answer). The next identical beat is answered from memory by ``api.beat_shortcut`` before routing,
validation or a thread hop, and its time goes into the beat buffer like any cheap beat.

What is no longer checked on every beat is checked once per flush instead (``sweep``, one statement
per 1,000 keys served, inside the flush's transaction): the key revoked, expired, deleted or
unscoped, its user disabled, the node gone, not ``ready``, cordoned or its health digest changed.

- A key that fails the check is forgotten and **the beats it had buffered since the last flush are
  dropped** (never written): revoking a key or disabling a user stops that node's liveness at once.
  Its agent saw at most the beats of one flush interval (``beat_flush_interval_s``, 1 s) acknowledged;
  the beat after goes the full way and gets 401.
- A node that changed (cordoned, marked unreachable, another report applied) keeps the beat (it was a
  valid beat) and is forgotten: its next beat takes the full path. A beat this process applies in
  full that leaves its node unsteady (a fault, a cordon of the node or of one of its devices) forgets
  its key's known beat at once, without waiting for the sweep. The monitor forgets the nodes it
  marks unreachable in its own process at once; in another process (``--workers N``), a beat answered
  from memory before the sweep is written by the flush, which brings its node back (``beats.revive``).
- Without a sweep for ``max_unswept_s`` (the flusher is failing: the database is down), nothing is
  answered from memory: every beat goes the full way and is checked as before.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from zhisuan.identity.models import ApiKey, User
from zhisuan.inventory.models import Node

KNOWN_KEPT = 200_000  # entries (≈ 300 bytes each); past it, the oldest learned are forgotten first
SWEEP_CHUNK = 1000


def token_key(token: bytes) -> bytes:
    return hashlib.sha256(token).digest()


def body_digest(body: bytes) -> bytes:
    return hashlib.blake2b(body, digest_size=16).digest()


@dataclass(frozen=True)
class KnownBeat:
    key_id: str
    node_id: int
    body: bytes  # body_digest of the raw request body
    report: str  # service.report_digest of its devices: the node's health_digest while it stays known
    ack: bytes  # the JSON answer


@dataclass(frozen=True)
class Verdict:
    """What a sweep decided: beats to drop (their keys failed), keys whose last use is due."""

    dropped_nodes: set[int]
    keys_used: set[str]


class KnownBeats:
    """This process's known beats (see the module docstring). Thread-safe: the event loop answers,
    request threads learn and forget, the flusher sweeps."""

    def __init__(self, max_unswept_s: float, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.max_unswept_s, self.monotonic = max_unswept_s, monotonic
        self.swept_at = monotonic()
        self._lock = threading.Lock()
        self._known: dict[bytes, KnownBeat] = {}
        self._served: dict[int, tuple[bytes, KnownBeat]] = {}  # node → what answered it since the sweep

    def __len__(self) -> int:
        return len(self._known)

    def answering(self) -> bool:
        """False while the sweep is overdue (the flusher is failing): nothing answered from memory."""
        return self.monotonic() - self.swept_at <= self.max_unswept_s

    def answer(self, token: bytes, body: bytes) -> KnownBeat | None:
        """The known beat ``body`` repeats (now counted as served), or None: take the full path."""
        if not self.answering():
            return None
        token_id = token_key(token)
        known = self._known.get(token_id)
        if known is None or known.body != body_digest(body):
            return None
        with self._lock:
            self._served[known.node_id] = (token_id, known)
        return known

    def learn(self, token: str, known: KnownBeat) -> None:
        with self._lock:
            self._known[token_key(token.encode())] = known
            while len(self._known) > KNOWN_KEPT:
                del self._known[next(iter(self._known))]

    def forget(self, token: str) -> None:
        with self._lock:
            self._known.pop(token_key(token.encode()), None)

    def forget_nodes(self, node_ids: Iterable[int]) -> None:
        """Forget the known beats of these nodes (marked unreachable here: the next beat in full)."""
        gone = set(node_ids)
        if not gone:
            return
        with self._lock:
            for token_id in [t for t, known in self._known.items() if known.node_id in gone]:
                del self._known[token_id]

    def take_served(self) -> dict[int, tuple[bytes, KnownBeat]]:
        with self._lock:
            served, self._served = self._served, {}
        return served

    def put_back(self, served: dict[int, tuple[bytes, KnownBeat]]) -> None:
        with self._lock:
            self._served = {**served, **self._served}

    def sweep(self, session: Session, served: dict[int, tuple[bytes, KnownBeat]], now: datetime,
              key_use_precision: timedelta, started: float) -> Verdict:
        """Check every key and node served from memory since the last sweep (``started``: the
        monotonic time read before ``take_served``); forget what changed."""
        states = dict(current_states(session, sorted({known.key_id for _, known in served.values()})))
        dropped, used, stale = set(), set(), []
        for node_id, (token_id, known) in served.items():
            state = states.get(known.key_id)
            if state is None or not state.usable(now) or state.node_id != node_id:
                dropped.add(node_id)
                stale.append(token_id)
                continue
            if not state.steady(known.report):
                stale.append(token_id)
            if state.last_used_at is None or now - state.last_used_at > key_use_precision:
                used.add(known.key_id)
        with self._lock:
            for token_id in stale:
                self._known.pop(token_id, None)
            self.swept_at = max(self.swept_at, started)
        return Verdict(dropped, used)


@dataclass(frozen=True)
class KeyState:
    node_id: int
    status: str
    cordon_reason: str | None
    health_digest: str | None
    revoked_at: datetime | None
    expires_at: datetime | None
    last_used_at: datetime | None
    scopes: list[str]
    disabled: bool

    def usable(self, now: datetime) -> bool:
        return (self.revoked_at is None and (self.expires_at is None or self.expires_at > now)
                and not self.disabled and "agent" in self.scopes)

    def steady(self, report: str) -> bool:
        return self.status == "ready" and self.cordon_reason is None and self.health_digest == report


def current_states(session: Session, key_ids: list[str]) -> Iterable[tuple[str, KeyState]]:
    """Each key's grant and its bound node's state, ``SWEEP_CHUNK`` keys per statement."""
    for start in range(0, len(key_ids), SWEEP_CHUNK):
        rows = session.execute(
            select(ApiKey.key_id, Node.id, Node.status, Node.cordon_reason, Node.health_digest, ApiKey.revoked_at,
                   ApiKey.expires_at, ApiKey.last_used_at, ApiKey.scopes, User.disabled)
            .select_from(ApiKey).join(User, User.id == ApiKey.user_id)
            .join(Node, (Node.site_id == ApiKey.site_id) & (Node.name == ApiKey.node_name))
            .where(ApiKey.key_id.in_(key_ids[start:start + SWEEP_CHUNK])))
        for key_id, *state in rows:
            yield key_id, KeyState(*state)
