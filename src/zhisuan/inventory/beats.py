"""Cheap heartbeats: a beat that changes nothing costs one read and an entry in memory.

Most beats of a healthy fleet repeat the previous one: same node, still ``ready`` and uncordoned,
same device health. Such a beat needs no transaction of its own. It is answered after one statement
(the key's grant or its stored SHA-256 digest, and the node's state, joined), and its time goes
into this process's ``BeatBuffer``; a flusher writes every buffered time in one ``UPDATE`` each second
(``BeatBuffer.flush``). Anything else — a key stored as scrypt and not yet checked, a state change, a fault, a cordon, a
report that differs from the last applied one (``nodes.health_digest``) — takes the full path
(``inventory.service.heartbeat``: key check, node row locked, devices loaded, health applied).

Liveness stays as documented (unreachable ``heartbeat_timeout_s`` after the last beat, ready again
on the next one):

- the heartbeat monitor flushes its own process's buffer before it decides;
- every flush records how far it got (``beat_flushes.flushed_through``, one row per process), and the
  monitor decides only up to the oldest mark of the *other* live processes (``--workers N``): a beat
  still in another process's buffer never makes its node look quiet. A process silent for longer
  than the timeout counts as gone (its buffered beats, if any, were lost with it);
- a beat waits in a buffer only while a recent time vouches for its node (the ``last_heartbeat_at``
  read with it, or this process's own last beat of the node, at most ``timeout − 1 s`` old:
  ``core.liveness.may_wait_in_buffer``). A beat after a longer silence — its node already looks
  quiet to a monitor judging as of another process's older flush mark — is written before it is
  acknowledged (``write_now``): a node is never marked unreachable for a silence that an
  acknowledged beat had ended (with ``--workers 2``, 7 nodes were, in session 5);
- a flush that finds one of its nodes ``unreachable`` anyway (marked by a monitor that counted this
  process as gone: no flush for the timeout) brings it back as the full path would (``revive``).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import Table, and_, bindparam, case, delete, func, or_, select, text, update
from sqlalchemy.orm import Session, selectinload, sessionmaker

from zhisuan.core.liveness import may_wait_in_buffer
from zhisuan.errors import Unauthenticated
from zhisuan.identity.access import require_scope
from zhisuan.identity.hashing import KEY_DIGEST_SCHEME, verify_secret
from zhisuan.identity.keys import split_key
from zhisuan.identity.models import ApiKey, User
from zhisuan.inventory import service
from zhisuan.inventory.cordon import apply_health, has_device_cordon
from zhisuan.inventory.known_beats import KnownBeat, KnownBeats, body_digest
from zhisuan.inventory.models import BeatFlush, Node
from zhisuan.inventory.schemas import DeviceHealth, Heartbeat, HeartbeatAck
from zhisuan.ledger import service as ledger
from zhisuan.store.base import UTCDateTime, transaction

if TYPE_CHECKING:
    from zhisuan.api.deps import AppContext

# A key's ``last_used_at`` is refreshed at most this often (as ``KeyVerifier`` does), in the flush.
KEY_USE_PRECISION = timedelta(minutes=1)
GRANTS_KEPT = 100_000
VOUCHED_KEPT = 200_000
DEFAULT_TIMEOUT = timedelta(seconds=30)  # Settings.heartbeat_timeout_s


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class BeatBuffer:
    """This process's heartbeat times not yet written, and the key grants it has verified.

    A grant is the SHA-256 of a bearer token whose secret this process checked on a full
    beat, mapped to its key id; the fast path still reads the key's revocation, expiry and user on
    every beat (in its one statement), so revoking a key or disabling a user takes effect at once.
    """

    def __init__(self, holder: str, clear_after: timedelta, max_unswept_s: float = 5.0,
                 timeout: timedelta = DEFAULT_TIMEOUT) -> None:
        self.holder, self.clear_after, self.timeout = holder, clear_after, timeout
        self.known = KnownBeats(max_unswept_s)  # beats answered before the framework (known_beats)
        self._lock = threading.Lock()
        self._seen: dict[int, datetime] = {}
        # Per node, the latest time its last_heartbeat_at is sure to reach (core.liveness.may_wait_in_buffer).
        self._vouched: dict[int, datetime] = {}
        self._keys_used: set[str] = set()
        self._grants: OrderedDict[str, str] = OrderedDict()

    def grant_of(self, token: str) -> str | None:
        return self._grants.get(token_digest(token))

    def remember_grant(self, token: str, key_id: str) -> None:
        with self._lock:
            self._grants[token_digest(token)] = key_id
            while len(self._grants) > GRANTS_KEPT:
                self._grants.popitem(last=False)

    def record(self, node_id: int, clock: Callable[[], datetime], key_used: str | None = None,
               vouched_at: datetime | None = None) -> datetime | None:
        """Buffer a beat of ``node_id`` now, if it may wait for the flush: a time that vouches for the
        node (``vouched_at``, read from the database, or this process's own last beat of it) is
        recent enough (``core.liveness.may_wait_in_buffer``). Otherwise nothing is recorded and None
        is returned: the caller writes the beat before acknowledging it (``write_now``) or sends it
        the full way. The time is read under the lock that ``take`` holds, so a beat is either in a
        flush or later than that flush's mark — never behind it."""
        with self._lock:
            now = clock()
            vouched = self._vouched.get(node_id)
            if vouched_at is not None and (vouched is None or vouched < vouched_at):
                vouched = vouched_at
            if not may_wait_in_buffer(vouched, now, self.timeout):
                return None
            previous = self._seen.get(node_id)
            self._seen[node_id] = now if previous is None or previous < now else previous
            self._vouch(node_id, now)
            if key_used is not None:
                self._keys_used.add(key_used)
        return now

    def written(self, node_id: int, at: datetime, key_used: str | None = None) -> None:
        """A beat of ``node_id`` at ``at`` is in the database (written at once, or by the full path)."""
        with self._lock:
            self._vouch(node_id, at)
            if key_used is not None:
                self._keys_used.add(key_used)

    def _vouch(self, node_id: int, at: datetime) -> None:  # the caller holds the lock
        current = self._vouched.get(node_id)
        if current is None or current < at:
            self._vouched[node_id] = at
            while len(self._vouched) > VOUCHED_KEPT:
                del self._vouched[next(iter(self._vouched))]  # a forgotten node is checked in the database

    def pending(self, node_id: int) -> datetime | None:
        return self._seen.get(node_id)

    def take(self) -> tuple[dict[int, datetime], set[str]]:
        with self._lock:
            seen, keys = self._seen, self._keys_used
            self._seen, self._keys_used = {}, set()
        return seen, keys

    def put_back(self, seen: dict[int, datetime], keys: set[str]) -> None:
        """A failed flush returns its beats (the newer time wins), to be written by the next one."""
        with self._lock:
            for node_id, at in seen.items():
                current = self._seen.get(node_id)
                self._seen[node_id] = at if current is None or current < at else current
            self._keys_used |= keys

    def flush(self, sessions: sessionmaker[Session], through: datetime) -> list[int]:
        """Write every buffered beat in one statement and mark this process flushed ``through``
        (a time read before this call). Returns the nodes brought back from ``unreachable``.
        The beats answered from memory are checked first (``KnownBeats.sweep``): those of a key that
        is no longer valid are dropped, not written."""
        started = self.known.monotonic()
        seen, keys = self.take()
        served = self.known.take_served()  # after ``take``: a beat in ``seen`` was served before it
        try:
            with transaction(sessions) as session:
                verdict = self.known.sweep(session, served, through, KEY_USE_PRECISION, started)
                for node_id in verdict.dropped_nodes:
                    seen.pop(node_id, None)
                keys |= verdict.keys_used
                unreachable = write_last_seen(session, seen)
                if keys:
                    session.execute(update(ApiKey).where(ApiKey.key_id.in_(sorted(keys)))
                                    .values(last_used_at=through).execution_options(synchronize_session=False))
                mark_flushed(session, self.holder, through)
        except BaseException:
            self.put_back(seen, keys)
            self.known.put_back(served)
            raise
        return [node_id for node_id in sorted(unreachable) if revive(sessions, node_id, seen[node_id],
                                                                     self.clear_after)]

    def close(self, sessions: sessionmaker[Session], through: datetime) -> None:
        """At shutdown: write what is buffered, then stop counting as a live process."""
        self.flush(sessions, through)
        with transaction(sessions) as session:
            session.execute(delete(BeatFlush).where(BeatFlush.holder == self.holder))


def write_last_seen(session: Session, seen: dict[int, datetime]) -> set[int]:
    """Set each node's ``last_heartbeat_at`` (never backwards); the ids of those now unreachable."""
    if not seen:
        return set()
    ids = sorted(seen)
    times = [seen[node_id] for node_id in ids]
    if session.get_bind().dialect.name == "postgresql":
        rows = session.execute(text(
            "UPDATE nodes SET last_heartbeat_at = v.t "
            "FROM unnest(CAST(:ids AS INTEGER[]), CAST(:times AS TIMESTAMPTZ[])) AS v(id, t) "
            "WHERE nodes.id = v.id AND (nodes.last_heartbeat_at IS NULL OR nodes.last_heartbeat_at < v.t) "
            "RETURNING nodes.id, nodes.status"), {"ids": ids, "times": times})
        return {node_id for node_id, status in rows if status == "unreachable"}
    # SQLite (one box, one writer): one prepared statement run for every node (Core: executemany).
    table = Node.__table__
    assert isinstance(table, Table)
    nodes, at = table.c, bindparam("at", type_=UTCDateTime())
    session.connection().execute(
        update(table).where(nodes.id == bindparam("node_id"),
                                     nodes.last_heartbeat_at.is_(None) | (nodes.last_heartbeat_at < at))
        .values(last_heartbeat_at=at),
        [{"node_id": node_id, "at": when} for node_id, when in seen.items()])
    unreachable: set[int] = set()
    for start in range(0, len(ids), 500):
        unreachable |= set(session.execute(select(Node.id).where(
            Node.id.in_(ids[start:start + 500]), Node.status == "unreachable")).scalars())
    return unreachable


def write_now(session: Session, beats: dict[int, datetime]) -> set[int]:
    """Write these beats before they are acknowledged (they may not wait in a buffer: their nodes
    already look quiet, ``core.liveness.may_wait_in_buffer``), each only while its node is still
    ``ready``; the ids written. A node the monitor marked first is left out: its beat goes the full
    way, which brings it back. The row lock this takes is what the monitor's guarded mark waits
    for; after the commit, that mark sees the node heard."""
    if not beats:
        return set()
    ids = sorted(beats)
    if session.get_bind().dialect.name == "postgresql":
        return set(session.execute(text(
            "UPDATE nodes SET last_heartbeat_at = GREATEST(COALESCE(nodes.last_heartbeat_at, v.t), v.t) "
            "FROM unnest(CAST(:ids AS INTEGER[]), CAST(:times AS TIMESTAMPTZ[])) AS v(id, t) "
            "WHERE nodes.id = v.id AND nodes.status = 'ready' RETURNING nodes.id"),
            {"ids": ids, "times": [beats[node_id] for node_id in ids]}).scalars())
    written = set()
    for node_id in ids:  # SQLite (one box): one short statement each
        at = beats[node_id]
        done = session.execute(update(Node).where(Node.id == node_id, Node.status == "ready").values(
            last_heartbeat_at=case((or_(Node.last_heartbeat_at.is_(None), Node.last_heartbeat_at < at), at),
                                   else_=Node.last_heartbeat_at)).execution_options(synchronize_session=False))
        if done.rowcount:  # type: ignore[attr-defined]
            written.add(node_id)
    return written


def mark_flushed(session: Session, holder: str, through: datetime) -> None:
    done = session.execute(update(BeatFlush).where(BeatFlush.holder == holder)
                           .values(flushed_through=through).execution_options(synchronize_session=False))
    if done.rowcount == 0:  # type: ignore[attr-defined]
        session.add(BeatFlush(holder=holder, flushed_through=through))


def others_flushed_through(session: Session, holder: str, now: datetime, timeout: timedelta) -> datetime:
    """Up to when every other live process's beats are in the database (``now`` if there are none)."""
    oldest = session.execute(select(func.min(BeatFlush.flushed_through)).where(
        BeatFlush.holder != holder, BeatFlush.flushed_through > now - timeout)).scalar_one_or_none()
    return now if oldest is None or oldest > now else oldest


def forget_gone_processes(session: Session, now: datetime, older_than: timedelta) -> None:
    session.execute(delete(BeatFlush).where(BeatFlush.flushed_through < now - older_than))


def revive(sessions: sessionmaker[Session], node_id: int, seen_at: datetime, clear_after: timedelta) -> bool:
    """A buffered beat of a node marked unreachable before the flush: ready again, as on a full beat."""
    with transaction(sessions) as session:
        ledger.lock_nodes(session, [node_id])
        node = session.execute(select(Node).where(Node.id == node_id).options(selectinload(Node.devices))
                               .execution_options(populate_existing=True)).scalar_one_or_none()
        if node is None or node.status != "unreachable":
            return False
        node.status, node.health_digest = "ready", None
        apply_health(node, seen_at, clear_after)
        service.refresh_availability(node)
        return True


def all_healthy(devices: Iterable[DeviceHealth]) -> bool:
    return all(report.healthy for report in devices)


def granted_key(beats: BeatBuffer, token: str) -> tuple[str, str | None] | None:
    """The key id ``token`` names and, unless this process already checked it (a grant), its secret
    to check against the stored digest in the quick beat's one statement; None if malformed."""
    key_id = beats.grant_of(token)
    if key_id is not None:
        return key_id, None
    try:
        key_id, secret = split_key(token)
    except Unauthenticated:
        return None
    return key_id, secret


def digest_matches(secret: str | None, stored: str) -> bool:
    """A grant needs no check; a secret is checked only against a SHA-256 digest (one hash). A key
    stored as scrypt (issued before digests) is left to the full path, which checks and caches it."""
    if secret is None:
        return True
    return stored.startswith(f"{KEY_DIGEST_SCHEME}$") and verify_secret(secret, stored)


def quick_beat(ctx: AppContext, beats: BeatBuffer, token: str, body: Heartbeat,
               client: str | None = None) -> tuple[HeartbeatAck, str] | None:
    """The ack of a beat that changes nothing and its key, or None when it needs the full path.

    Its key need not have been checked before in this process: a key stored as a SHA-256 digest is
    checked here, in the same statement — so after a restart a steady fleet's first beats cost one
    read each, not a full beat each. A key that fails the check takes the full path, which refuses
    it (and throttles its client) as before."""
    granted = granted_key(beats, token)
    if granted is None or not all_healthy(body.devices):
        return None
    key_id, secret = granted
    now = ctx.clock()
    if secret is not None and client:  # a client locked out for failed checks gets no check here either
        ctx.verifier.throttle.check([f"client:{client}"], now, "API key checks")
    with ctx.sessions() as session:
        row = session.execute(
            select(Node.id, Node.status, Node.cordon_reason, Node.health_digest, Node.last_heartbeat_at,
                   ApiKey.node_name, ApiKey.revoked_at, ApiKey.expires_at, ApiKey.last_used_at, ApiKey.scopes,
                   User.disabled, ApiKey.secret_hash)
            .select_from(ApiKey).join(User, User.id == ApiKey.user_id)
            .join(Node, and_(Node.site_id == ApiKey.site_id, Node.name == body.node))
            .where(ApiKey.key_id == key_id)
        ).first()
    if row is None:
        return None
    node_id, status, cordon, digest, heard, bound, revoked, expires, used, scopes, disabled, stored = row
    unchanged = status == "ready" and cordon is None and digest == service.report_digest(body.devices)
    usable = revoked is None and (expires is None or expires > now) and not disabled and "agent" in scopes
    if not (unchanged and usable and bound == body.node and digest_matches(secret, stored)):
        return None
    if secret is not None:
        beats.remember_grant(token, key_id)
    due = used is None or now - used > KEY_USE_PRECISION
    if beats.record(node_id, ctx.clock, key_id if due else None, vouched_at=heard) is None:
        at = ctx.clock()  # after a long silence: written before the answer, or the full way
        with transaction(ctx.sessions) as session:
            if not write_now(session, {node_id: at}):
                return None
        beats.written(node_id, at, key_id if due else None)
    return HeartbeatAck(node_id=node_id, status="ready", heartbeat_interval_s=ctx.settings.heartbeat_interval_s), key_id


def full_beat(ctx: AppContext, token: str, body: Heartbeat, client: str) -> tuple[HeartbeatAck, str | None]:
    """Key checked (once per process), node row locked, devices loaded, health applied. With
    the ack, the key's id if the node is now steady (its next identical beat can be a known one)."""
    now = ctx.clock()
    with transaction(ctx.sessions) as session:
        principal = ctx.verifier.authenticate(session, token, now, client)
        require_scope(principal, "agent")
        node = service.heartbeat(session, principal, body.node, body.devices, now,
                                 timedelta(seconds=ctx.settings.cordon_clear_after_s))
        ack = HeartbeatAck(node_id=node.id, status=node.status, heartbeat_interval_s=ctx.settings.heartbeat_interval_s)
        steady = (node.status == "ready" and node.cordon_reason is None and all_healthy(body.devices)
                  and not has_device_cordon(node))
    if ctx.beats is not None:
        ctx.beats.written(ack.node_id, now)  # in the database: the node's next beats may wait in the buffer
        if principal.key_id is not None:
            ctx.beats.remember_grant(token, principal.key_id)
    return ack, principal.key_id if steady else None


def receive(ctx: AppContext, token: str, body: Heartbeat, client: str) -> tuple[HeartbeatAck, str | None]:
    """One heartbeat, all of its database work in the caller's one thread: its ack, and the key's
    id when the beat left the node steady (see ``learn``)."""
    if ctx.beats is not None:
        quick = quick_beat(ctx, ctx.beats, token, body, client)
        if quick is not None:
            return quick
    return full_beat(ctx, token, body, client)


def learn(beats: BeatBuffer, token: str, raw_body: bytes, body: Heartbeat, key_id: str, ack: HeartbeatAck) -> None:
    """Remember a beat that left its node steady: the same bytes again are answered from memory."""
    beats.known.learn(token, KnownBeat(key_id=key_id, node_id=ack.node_id, body=body_digest(raw_body),
                                       report=service.report_digest(body.devices),
                                       ack=ack.model_dump_json().encode()))
