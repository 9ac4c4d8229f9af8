"""Node registrations applied in batches: many agents' registrations in one transaction.

One registration alone is ~13 statements and a commit, and every commit that adds a node also
rewrites the placement fleet's generation row (``placement.fleet_cache``), which serialises all
registering transactions behind one row lock and one disk flush each. So the registrations waiting
in a process are applied together (``Registrar``): the first request that finds no batch running
applies everything queued, in one transaction:

- one query reads the batch's keys with their users (locked on PostgreSQL, so two processes cannot
  bind one fresh key to two nodes) and one the nodes that already exist;
- each key is checked as ``KeyVerifier.authenticate`` would (once per key and process), each
  body validated (catalog models, device indexes) — a failure answers that request only;
- the new nodes whose devices are all healthy are inserted in one statement, their devices in one,
  the audit rows with them; anything else (a node that exists: re-registration with device changes
  and open holds; a device reporting a fault: cordon) takes ``service.register_node`` in a savepoint;
- one commit (one generation bump) answers the whole batch.

If the batch fails as a whole (a node name raced in by another process), each registration is
applied alone, as before. The answers, the audit rows and the rules are those of the one-at-a-time
path (``register_one``).
"""

from __future__ import annotations

import json
import threading
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Table, bindparam, insert, select, text, update
from sqlalchemy.orm import Session, joinedload

from zhisuan.catalog.loader import Catalog
from zhisuan.catalog.router import device_memory_mib
from zhisuan.errors import Forbidden, InvalidInput
from zhisuan.identity.access import Principal, require_scope
from zhisuan.identity.keys import split_key
from zhisuan.identity.models import ApiKey, AuditEvent
from zhisuan.inventory import service
from zhisuan.inventory.models import Device, Node, Site
from zhisuan.inventory.schemas import DeviceReport, HeartbeatAck, NodeRegister
from zhisuan.store.base import transaction, utcnow

if TYPE_CHECKING:
    from zhisuan.api.deps import AppContext

MAX_BATCH = 500
ANOTHER_NODE = ("this agent key belongs to another node of the site; "
                "issue one key per node with 'zhisuan site agent-key'")


@dataclass
class Pending:
    token: str
    body: NodeRegister
    client: str
    answer: Future[HeartbeatAck] = field(default_factory=Future)


@dataclass
class Checked:
    """A registration whose key and body passed, ready to be written."""

    pending: Pending
    principal: Principal
    devices: list[DeviceValues]


def register_one(ctx: AppContext, catalog: Catalog, token: str, body: NodeRegister, client: str) -> HeartbeatAck:
    """One registration in its own transaction (the path without batching)."""
    now = ctx.clock()
    with transaction(ctx.sessions) as session:
        principal = ctx.verifier.authenticate(session, token, now, client)
        require_scope(principal, "agent")
        node = service.register_node(session, catalog, principal, body, now)
        return ack(ctx, node.id, node.status)


def ack(ctx: AppContext, node_id: int, status: str) -> HeartbeatAck:
    return HeartbeatAck(node_id=node_id, status=status, heartbeat_interval_s=ctx.settings.heartbeat_interval_s)


class Registrar:
    """The registrations waiting in this process; whoever finds no batch running applies them."""

    def __init__(self, ctx: AppContext, catalog: Catalog, max_batch: int = MAX_BATCH) -> None:
        self.ctx, self.catalog, self.max_batch = ctx, catalog, max_batch
        self._lock = threading.Lock()
        self._queue: list[Pending] = []
        self._applying = False
        self.sizes: deque[int] = deque(maxlen=1000)  # of the batches applied last: how well requests group

    @property
    def applying(self) -> bool:
        """A batch is being applied (the requests queued now go into the next one)."""
        return self._applying

    def enqueue(self, pending: Pending) -> bool:
        """Queue a registration; True when the caller must now run ``drain`` (no batch is running)."""
        with self._lock:
            self._queue.append(pending)
            if self._applying:
                return False
            self._applying = True
            return True

    def waiting(self) -> int:
        """Registrations queued and not yet taken into a batch."""
        return len(self._queue)

    def drain(self) -> None:
        """Apply batches until the queue is empty (run in a worker thread)."""
        while True:
            with self._lock:
                batch, self._queue = self._queue[:self.max_batch], self._queue[self.max_batch:]
                if not batch:
                    self._applying = False
                    return
            try:
                self.apply(batch)
            except Exception as error:  # noqa: BLE001 — never leave a request waiting, nor the queue undrained
                for pending in batch:
                    if not pending.answer.done():
                        pending.answer.set_exception(error)

    def apply(self, batch: list[Pending]) -> None:
        self.sizes.append(len(batch))
        try:
            with transaction(self.ctx.sessions) as session:
                results = apply_batch(session, self.ctx, self.catalog, batch, self.ctx.clock())
        except Exception:  # the batch as a whole failed: each registration alone, as before
            results = {}
            for pending in batch:
                try:
                    results[id(pending)] = register_one(self.ctx, self.catalog, pending.token, pending.body,
                                                        pending.client)
                except Exception as error:  # noqa: BLE001 — answered to that request only
                    results[id(pending)] = error
        for pending in batch:
            outcome = results[id(pending)]
            if isinstance(outcome, BaseException):
                pending.answer.set_exception(outcome)
            else:
                pending.answer.set_result(outcome)


def apply_batch(session: Session, ctx: AppContext, catalog: Catalog, batch: list[Pending],
                now: datetime) -> dict[int, HeartbeatAck | Exception]:
    """Every registration of ``batch`` in ``session``: its ack or the error that request answers."""
    results: dict[int, HeartbeatAck | Exception] = {}
    key_ids = sorted({key_id for pending in batch if (key_id := key_id_of(pending.token))})
    query = select(ApiKey).options(joinedload(ApiKey.user)).where(ApiKey.key_id.in_(key_ids)).order_by(ApiKey.key_id)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(of=ApiKey)
    rows = {row.key_id: row for row in session.execute(query).unique().scalars()}
    loaded = {key_id: (row.node_name, row.last_used_at) for key_id, row in rows.items()}
    checked: list[Checked] = []
    claims: dict[str, str] = {}
    resolved: dict[str, tuple[str, int]] = {}
    with session.no_autoflush:  # the key rows are written by write_keys, not flushed one by one
        for pending in batch:
            try:
                checked.append(check(ctx, catalog, rows, claims, resolved, pending, now))
            except Exception as error:  # noqa: BLE001 — a domain error answers that request only
                results[id(pending)] = error
        fresh, same, slow = sort_out(checked, existing_nodes(session, checked))
        for item in [*fresh, *(item for item, _ in same)]:  # the others bind in service.register_node
            assert item.principal.key_id is not None
            rows[item.principal.key_id].node_name = item.pending.body.name
        write_keys(session, rows, loaded)
    results |= insert_fresh(session, ctx, fresh, now)
    results |= refresh_same(session, ctx, same, now)
    for item in slow:
        try:
            with session.begin_nested():
                node = service.register_node(session, catalog, item.principal, item.pending.body, now)
                results[id(item.pending)] = ack(ctx, node.id, node.status)
        except Exception as error:  # noqa: BLE001 — rolled back to the savepoint; that request only
            results[id(item.pending)] = error
    return results


def sort_out(checked: list[Checked], existing: dict[tuple[int | None, str], Known],
             ) -> tuple[list[Checked], list[tuple[Checked, Known]], list[Checked]]:
    """(new nodes with healthy devices, re-registrations that change nothing, the rest): the first two
    are written in bulk, the rest one by one through ``service.register_node`` (a second registration
    of a node in the batch, a faulty device to cordon, changed devices and their holds)."""
    fresh: list[Checked] = []
    same: list[tuple[Checked, Known]] = []
    slow: list[Checked] = []
    names: set[tuple[int | None, str]] = set()
    for item in checked:
        place = (item.principal.site_id, item.pending.body.name)
        healthy = all(device[HEALTH] == "healthy" for device in item.devices)
        known = existing.get(place)
        if place in names or not healthy:
            slow.append(item)
        elif known is None:
            fresh.append(item)
        elif known.unchanged_by(item.devices):
            same.append((item, known))
        else:
            slow.append(item)
        names.add(place)
    return fresh, same, slow


def write_keys(session: Session, rows: dict[str, ApiKey], loaded: dict[str, tuple[str | None, datetime | None]],
               ) -> None:
    """The key rows' new binding and last use, in one statement instead of the ORM's one UPDATE per
    row at flush; the rows leave the session, so the ORM does not write them again."""
    changed = [{"id": row.id, "node_name": row.node_name, "last_used_at": row.last_used_at}
               for key_id, row in rows.items() if (row.node_name, row.last_used_at) != loaded[key_id]]
    for row in rows.values():
        session.expunge(row)
    update_rows(session, ApiKey.__table__, changed)  # type: ignore[arg-type]


def key_id_of(token: str) -> str | None:
    try:
        return split_key(token)[0]
    except Exception:  # noqa: BLE001 — malformed: the check answers it
        return None


def check(ctx: AppContext, catalog: Catalog, rows: dict[str, ApiKey], claims: dict[str, str],
          resolved: dict[str, tuple[str, int]], pending: Pending, now: datetime) -> Checked:
    """The key, its scope and site, the body's devices and the key's node binding (``claims``: the
    node each key of the batch speaks for, so far; written with the batch, under the key rows' lock)."""
    principal = ctx.verifier.authenticate_loaded(rows, pending.token, now, pending.client)
    require_scope(principal, "agent")
    if principal.site_id is None:
        raise Forbidden("only an agent key bound to a site can register nodes")
    devices = device_values(catalog, pending.body.devices, resolved)
    assert principal.key_id is not None  # an agent key authenticated from a row
    bound = claims.setdefault(principal.key_id, rows[principal.key_id].node_name or pending.body.name)
    if bound != pending.body.name:
        raise Forbidden(ANOTHER_NODE)
    return Checked(pending, principal, devices)


DEVICE_FIELDS = ("index", "uuid", "model", "reported_name", "memory_mib", "health", "health_detail")
HEALTH = DEVICE_FIELDS.index("health")
DeviceValues = tuple[int, str, str, str, int, str, str]  # a device row's DEVICE_FIELDS


def device_values(catalog: Catalog, reports: list[DeviceReport],
                  resolved: dict[str, tuple[str, int]]) -> list[DeviceValues]:
    """``service.device_rows`` as plain tuples (same checks, same values): a batch's thousands of
    devices need no ORM objects. ``resolved``: model name → (catalog key, memory), shared by the batch."""
    seen: set[int] = set()
    rows: list[DeviceValues] = []
    for position, report in enumerate(reports):
        if report.index in seen:
            raise InvalidInput(f"device index {report.index} is reported twice", field=f"devices.{position}.index")
        seen.add(report.index)
        known = resolved.get(report.model)
        if known is None:
            key = service.resolve_model(catalog, report.model, f"devices.{position}.model")
            known = resolved[report.model] = (key, device_memory_mib(catalog.get(key)))
        rows.append((report.index, report.uuid, known[0], report.reported_name or report.model,
                     report.memory_mib if report.memory_mib is not None else known[1],
                     "healthy" if report.healthy else "unhealthy", report.health_detail))
    return rows


@dataclass
class Known:
    """A node of the batch already registered: what decides whether its re-registration is a refresh."""

    id: int
    site: str
    provider_id: int
    drained: bool
    cordoned: bool  # the node or one of its devices
    devices: list[tuple[object, ...]] = field(default_factory=list)

    def unchanged_by(self, reported: list[DeviceValues]) -> bool:
        """Same devices (by index, every field), none faulty, no cordon to re-judge: a refresh of
        the node's own columns, with nothing for ``service.register_node`` to end or cordon."""
        ours = sorted(reported)
        return not self.cordoned and ours == self.devices


def existing_nodes(session: Session, checked: list[Checked]) -> dict[tuple[int | None, str], Known]:
    """The batch's nodes that exist, with their devices (two queries). By site ids and names (both
    indexed through the ``(site_id, name)`` key), then the exact pairs here: a row-value ``IN`` list
    of pairs is planned as a scan of every node."""
    places = {(item.principal.site_id, item.pending.body.name) for item in checked}
    if not places:
        return {}
    site_ids = sorted({site_id for site_id, _ in places if site_id is not None})
    found = {row[0]: ((row[1], row[2]), Known(row[0], row[3], row[4], row[5], row[6] is not None))
             for row in session.execute(
                 select(Node.id, Node.site_id, Node.name, Site.name, Site.provider_id, Node.drained,
                        Node.cordon_reason).join(Site, Site.id == Node.site_id)
                 .where(Node.site_id.in_(site_ids), Node.name.in_(sorted({name for _, name in places}))))
             if (row[1], row[2]) in places}
    if found:
        rows = session.execute(select(Device.node_id, Device.cordon_reason,
                                      *(getattr(Device, name) for name in DEVICE_FIELDS))
                               .where(Device.node_id.in_(list(found))).order_by(Device.node_id, Device.index))
        for node_id, device_cordon, *values in rows:
            known = found[node_id][1]
            known.devices.append(tuple(values))
            known.cordoned = known.cordoned or device_cordon is not None  # its return is judged one by one
    return dict(found.values())


def refresh_same(session: Session, ctx: AppContext, same: list[tuple[Checked, Known]],
                 now: datetime) -> dict[int, HeartbeatAck]:
    """Re-registrations that change no device: the node's columns and last beat in one statement
    (ready again if it was unreachable), its devices' availability in one, the audit rows."""
    if not same:
        return {}
    update_rows(session, Node.__table__, [  # type: ignore[arg-type]
        {"id": known.id, "cpu_cores": item.pending.body.cpu_cores, "memory_mib": item.pending.body.memory_mib,
         "labels": dict(item.pending.body.labels), "agent_version": item.pending.body.agent_version,
         "managed_by": "agent", "last_heartbeat_at": now, "status": "ready", "health_digest": None}
        for item, known in same])
    for available in (True, False):  # ready and uncordoned: a device is available unless its node is drained
        ids = [known.id for _, known in same if known.drained is not available]
        if ids:
            session.execute(update(Device).where(Device.node_id.in_(ids), Device.available.is_not(available))
                            .values(available=available).execution_options(synchronize_session=False))
    write_audit(session, [(item.principal, "node.reregister", f"{known.site}/{item.pending.body.name}",
                           known.provider_id, len(item.devices)) for item, known in same])
    return {id(item.pending): ack(ctx, known.id, "ready") for item, known in same}


def insert_fresh(session: Session, ctx: AppContext, fresh: list[Checked], now: datetime) -> dict[int, HeartbeatAck]:
    """New nodes, all devices healthy: ready, uncordoned, every device available — one INSERT for
    the nodes, one for their devices, one for the audit rows."""
    if not fresh:
        return {}
    inserted = insert_rows(session, Node.__table__, [  # type: ignore[arg-type]
        {"site_id": item.principal.site_id, "name": item.pending.body.name, "status": "ready", "drained": False,
         "cpu_cores": item.pending.body.cpu_cores, "memory_mib": item.pending.body.memory_mib,
         "labels": dict(item.pending.body.labels), "agent_version": item.pending.body.agent_version,
         "managed_by": "agent", "registered_at": now, "last_heartbeat_at": now, "cordon_manual": False}
        for item in fresh], returning=("id", "site_id", "name"))
    ids = {(row[1], row[2]): row[0] for row in inserted}
    node_ids = [ids[item.principal.site_id, item.pending.body.name] for item in fresh]
    insert_rows(session, Device.__table__, [  # type: ignore[arg-type]
        {"node_id": node_id, "index": d[0], "uuid": d[1], "model": d[2], "reported_name": d[3], "memory_mib": d[4],
         "health": "healthy", "health_detail": d[6], "available": True, "extra": {}}
        for node_id, item in zip(node_ids, fresh, strict=True) for d in item.devices])
    in_batch = {item.principal.site_id for item in fresh}
    sites: dict[int | None, tuple[str, int]] = {site_id: (name, provider_id) for site_id, name, provider_id in
                                                session.execute(select(Site.id, Site.name, Site.provider_id)
                                                                .where(Site.id.in_(in_batch)))}
    write_audit(session, [(item.principal, "node.register", f"{site}/{item.pending.body.name}", provider_id,
                           len(item.devices)) for item in fresh
                          for site, provider_id in [sites[item.principal.site_id]]])
    return {id(item.pending): ack(ctx, node_id, "ready") for node_id, item in zip(node_ids, fresh, strict=True)}


def write_audit(session: Session, events: list[tuple[Principal, str, str, int, int]]) -> None:
    """The batch's node events (principal, action, node, provider, devices), as ``audit.record`` writes each."""
    now = utcnow()
    insert_rows(session, AuditEvent.__table__, [  # type: ignore[arg-type]
        {"at": now, "actor": principal.username, "actor_key_id": principal.key_id, "action": action,
         "object_type": "node", "object_ref": ref, "tenant_id": None, "provider_id": provider_id,
         "detail": {"devices": devices}}
        for principal, action, ref, provider_id, devices in events])


def insert_rows(session: Session, table: Table, rows: list[dict[str, Any]],
                returning: tuple[str, ...] = ()) -> list[tuple[Any, ...]]:
    """Many rows (each with the same keys) in one statement; the ``returning`` columns of each, in
    no particular order. PostgreSQL: ``INSERT … SELECT … FROM json_to_recordset(<the rows as one JSON
    text>)``, one parameter whatever the batch (psycopg's executemany sends one message per row, and
    its array parameters quote each string in Python: either was most of a batch's time, 8,000
    devices a batch); elsewhere the driver's executemany."""
    if not rows:
        return []
    columns = list(rows[0])
    if session.get_bind().dialect.name != "postgresql":
        statement = insert(table)
        if returning:
            return [tuple(row) for row in
                    session.execute(statement.returning(*(table.c[name] for name in returning)), rows)]
        session.execute(statement, rows)
        return []
    quote = session.get_bind().dialect.identifier_preparer.quote
    sql = (f"INSERT INTO {quote(table.name)} ({', '.join(quote(name) for name in columns)}) "
           f"SELECT {', '.join(f'u.{quote(name)}' for name in columns)} FROM {recordset(session, table, columns)}"
           + (f" RETURNING {', '.join(quote(name) for name in returning)}" if returning else ""))
    result = session.execute(text(sql), {"rows": json.dumps(rows, default=datetime.isoformat)})
    return [tuple(row) for row in result] if returning else []


def update_rows(session: Session, table: Table, rows: list[dict[str, Any]]) -> None:
    """Set each row's columns by its ``id`` (every row the same keys): on PostgreSQL one ``UPDATE …
    FROM json_to_recordset(…)``, elsewhere the driver's executemany."""
    if not rows:
        return
    columns = [name for name in rows[0] if name != "id"]
    if session.get_bind().dialect.name != "postgresql":
        session.execute(update(table).where(table.c.id == bindparam("row_id"))
                        .values({name: bindparam(name) for name in columns}),
                        [{"row_id": row["id"], **{name: row[name] for name in columns}} for row in rows])
        return
    quote = session.get_bind().dialect.identifier_preparer.quote
    assignments = ", ".join(f"{quote(name)} = u.{quote(name)}" for name in columns)
    source, name = recordset(session, table, ["id", *columns]), quote(table.name)
    session.execute(text(f"UPDATE {name} SET {assignments} FROM {source} WHERE {name}.id = u.id"),
                    {"rows": json.dumps(rows, default=datetime.isoformat)})


def recordset(session: Session, table: Table, columns: list[str]) -> str:
    """``json_to_recordset(:rows) AS u(<column> <its type>, …)``: the rows of the JSON parameter
    ``rows`` (a list of objects) typed as ``table``'s columns."""
    dialect = session.get_bind().dialect
    quote = dialect.identifier_preparer.quote
    typed = ", ".join(f"{quote(name)} {table.c[name].type.compile(dialect=dialect)}" for name in columns)
    return f"json_to_recordset(CAST(:rows AS JSON)) AS u({typed})"
