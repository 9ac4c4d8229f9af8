"""First beats in batches: after a (re)start, a steady fleet's first beats resolved many per statement.

A new process knows no beat (``inventory.known_beats``): each node's first beat would go the whole
way — HTTP routing, middleware, validation, a thread hand-off and a read (``beats.quick_beat``) —
about 3–5 ms of CPU each, while 10,000 agents send 1,000 of them per second: more than one process
can do, so the first minute after a restart is overload. Most of those beats change nothing: the
node is ``ready``, uncordoned, its last applied report (``nodes.health_digest``) is this one, and its
key is stored as a SHA-256 digest.

``FirstBeats`` resolves such beats before the framework (``api.beat_shortcut``): the body is parsed
with ``json.loads`` (no validation model), the pending beats' keys are read **in one statement per
batch** (``BATCH`` keys, the key, its user and its bound node joined), each secret checked against
its digest, and a beat that qualifies is learnt as a known beat and buffered like any cheap beat —
or, when its node has not been heard for a heartbeat timeout (after a long restart, or a beat of a
node that looks quiet: ``core.liveness.may_wait_in_buffer``), written before it is answered, the
batch's such beats in one ``UPDATE``.
Anything else — a shape it does not expect, an unhealthy device, a changed report, a key stored as
scrypt, a wrong secret, a locked-out client, a full queue — answers None and the beat goes the whole
way, which decides as before (401, 404, 422, 429, or applying the report). One batch runs at a
time, on one connection of the request pool, so a restart under a large fleet costs one connection
and a statement per ``BATCH`` beats, not a connection per beat.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from zhisuan.errors import TooManyRequests, Unauthenticated
from zhisuan.identity.keys import split_key
from zhisuan.identity.models import ApiKey, User
from zhisuan.inventory.beats import KEY_USE_PRECISION, BeatBuffer, digest_matches, write_now
from zhisuan.inventory.known_beats import KnownBeat, body_digest
from zhisuan.inventory.models import Node
from zhisuan.inventory.schemas import HeartbeatAck
from zhisuan.inventory.service import report_digest
from zhisuan.store.base import transaction

BATCH = 500
MAX_PENDING = 4 * BATCH  # beyond it, first beats go the whole way (where admission control sheds them)


@dataclass(frozen=True)
class Report:
    """What a heartbeat body says, as ``service.report_digest`` reads it."""

    node: str
    digest: str


@dataclass(frozen=True)
class DeviceReport:  # the attributes service.report_digest reads
    index: int
    healthy: bool
    health_detail: str


def steady_report(body: bytes) -> Report | None:
    """The node and report digest of a heartbeat body whose devices are all healthy; None for any
    other body (the full path validates it and answers as it would)."""
    try:
        payload: Any = json.loads(body)
    except ValueError:
        return None
    if not isinstance(payload, dict) or set(payload) != {"node", "devices"} or not isinstance(payload["node"], str):
        return None
    devices = payload["devices"]
    if not isinstance(devices, list) or not devices:
        return None
    reports = []
    for device in devices:
        if not isinstance(device, dict) or not set(device) <= {"index", "healthy", "health_detail"}:
            return None
        index, healthy, detail = device.get("index"), device.get("healthy"), device.get("health_detail", "")
        if type(index) is not int or healthy is not True or not isinstance(detail, str) or len(detail) > 200:
            return None
        reports.append(DeviceReport(index, healthy, detail))
    if len({report.index for report in reports}) != len(reports):
        return None
    return Report(payload["node"], report_digest(reports))


@dataclass
class Pending:
    token: str
    key_id: str
    secret: str
    report: Report
    body: bytes
    answer: asyncio.Future[KnownBeat | None]


class FirstBeats:
    """See the module docstring. Lives on the event loop: ``resolve`` is awaited by the shortcut."""

    def __init__(self, sessions: sessionmaker[Session], beats: BeatBuffer, clock: Callable[[], datetime],
                 ack_interval_s: float, throttled: Callable[[str, datetime], bool]) -> None:
        self.sessions, self.beats, self.clock = sessions, beats, clock
        self.ack_interval_s, self.throttled = ack_interval_s, throttled
        self.pending: list[Pending] = []
        self.running: asyncio.Task[None] | None = None

    async def resolve(self, token: bytes, body: bytes, client: str | None) -> KnownBeat | None:
        if len(self.pending) >= MAX_PENDING:
            return None
        report = steady_report(body)
        if report is None:
            return None
        try:
            key_id, secret = split_key(token.decode("latin-1"))
        except Unauthenticated:
            return None
        if client and self.throttled(client, self.clock()):
            return None
        answer: asyncio.Future[KnownBeat | None] = asyncio.get_running_loop().create_future()
        self.pending.append(Pending(token.decode("latin-1"), key_id, secret, report, body, answer))
        if self.running is None or self.running.done():
            self.running = asyncio.create_task(self.drain())
        return await answer

    async def drain(self) -> None:
        while self.pending:
            batch, self.pending = self.pending[:BATCH], self.pending[BATCH:]
            try:
                known = await asyncio.to_thread(self.check, batch)
            except Exception:  # the database is away: the whole way, where the error is answered
                known = [None] * len(batch)
            for item, result in zip(batch, known, strict=True):
                if not item.answer.done():
                    item.answer.set_result(result)

    def check(self, batch: list[Pending]) -> list[KnownBeat | None]:
        """One statement for the batch; a known beat learnt and buffered for each that qualifies. A
        node that may look quiet by now (no beat for a timeout) has its beat written before the
        answer, all such beats of the batch in one more statement (``beats.write_now``)."""
        now = self.clock()
        with self.sessions() as session:
            rows = {row[0]: row[1:] for row in session.execute(
                select(ApiKey.key_id, Node.id, Node.name, Node.status, Node.cordon_reason, Node.health_digest,
                       Node.last_heartbeat_at, ApiKey.revoked_at, ApiKey.expires_at, ApiKey.last_used_at,
                       ApiKey.scopes, User.disabled, ApiKey.secret_hash)
                .select_from(ApiKey).join(User, User.id == ApiKey.user_id)
                .join(Node, (Node.site_id == ApiKey.site_id) & (Node.name == ApiKey.node_name))
                .where(ApiKey.key_id.in_(sorted({item.key_id for item in batch}))))}
        admitted = [self.admit(item, rows.get(item.key_id), now) for item in batch]
        late = {node_id: at for node_id, at in (a.write_at for a in admitted if a is not None and a.write_at)}
        written: set[int] = set()
        if late:
            with transaction(self.sessions) as session:
                written = write_now(session, late)
        results: list[KnownBeat | None] = []
        for item, admission in zip(batch, admitted, strict=True):
            if admission is not None and admission.write_at is not None:
                node_id, at = admission.write_at
                if node_id not in written:  # marked unreachable first: the full path brings it back
                    admission = None
                else:
                    self.beats.written(node_id, at, admission.key_used)
            if admission is not None:
                self.beats.remember_grant(item.token, item.key_id)
                self.beats.known.learn(item.token, admission.known)
            results.append(admission.known if admission is not None else None)
        return results

    def admit(self, item: Pending, row: Any, now: datetime) -> Admission | None:
        if row is None:
            return None
        node_id, node_name, status, cordon, digest, heard, revoked, expires, used, scopes, disabled, stored = row
        steady = (status == "ready" and cordon is None and digest == item.report.digest
                  and node_name == item.report.node)
        usable = revoked is None and (expires is None or expires > now) and not disabled and "agent" in scopes
        if not (steady and usable and digest_matches(item.secret, stored)):
            return None
        ack = HeartbeatAck(node_id=node_id, status="ready", heartbeat_interval_s=self.ack_interval_s)
        known = KnownBeat(key_id=item.key_id, node_id=node_id, body=body_digest(item.body),
                          report=item.report.digest, ack=ack.model_dump_json().encode())
        key_used = item.key_id if used is None or now - used > KEY_USE_PRECISION else None
        if self.beats.record(node_id, self.clock, key_used, vouched_at=heard) is not None:
            return Admission(known, key_used, None)
        return Admission(known, key_used, (node_id, self.clock()))


@dataclass(frozen=True)
class Admission:
    """A first beat that qualifies: its known beat, its key if its last use is due, and — when it
    may not wait in the buffer — its node and the time to write before answering."""

    known: KnownBeat
    key_used: str | None
    write_at: tuple[int, datetime] | None


def client_throttled(throttle: Any) -> Callable[[str, datetime], bool]:
    """Whether a client is locked out for failed key checks (``FailureThrottle.check``)."""
    def throttled(client: str, now: datetime) -> bool:
        try:
            throttle.check([f"client:{client}"], now, "API key checks")
        except TooManyRequests:
            return True
        return False
    return throttled
