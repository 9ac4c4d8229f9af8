"""The platform's one fleet structure (``core.placement.live.LiveFleet``), kept per process and
validated against the database on every use — instead of rebuilt from the ORM per decision.

Validation. Two generation tokens live in the database as rows of ``loop_leases`` (a named-row table
that exists already, so no migration): ``placement-inventory-generation`` and
``placement-ledger-generation``. Every transaction that changes what placement sees — a ledger row
inserted, ended or deleted; a node's or device's placement attributes (status, drain, cordon, labels,
CPU, memory, model, availability), a site or tenant name — gets a fresh token written by the session
hooks below *in the same transaction*, just before it commits. So whichever API process (``zhisuan up
--workers N``) or loop made the change, every other process sees a different token on its next read.

One use = one query (both tokens, plus the largest ids of nodes, devices and allocations: index-only,
a backstop for rows written by SQL outside the ORM). Then:
- same tokens, same ids, ``now`` inside the holds' validity window → the cached fleet as it is;
- the ledger changed (or ``now`` left the window: a hold started or ended by time) → *delta read*:
  triggers on ``allocations`` (migration 0023) stamp every node whose holds a write touched in
  ``placement_node_changes``; the cache reads the nodes stamped by writes its last read could not
  see (PostgreSQL: stamps are transaction ids, and those are the ids at or above that snapshot's xmax
  or in progress at it; SQLite: stamps above the write counter then, writers being serialised) plus
  the nodes whose holds start or end between the last ``now`` and this one, reloads only those
  nodes' holds and ``LiveFleet.update``s their rows: O(changed nodes), not O(live holds). Without the
  triggers (a database migrated before 0023, or a SQLite table rebuild that dropped them) it reloads
  every hold as before;
- anything else (inventory changed, first use, another catalog) → rebuild from the ORM.
A session with placement-relevant writes of its own not yet committed bypasses the cache (it must see
its own writes; the shared cache must not see them before they commit).

Ledger changes made with raw SQL are seen through the triggers. Inventory changes made with raw SQL
that add no rows (an UPDATE outside the ORM session hooks) are not seen until the next token change.
"""

from __future__ import annotations

import secrets
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Connection,
    Engine,
    Integer,
    and_,
    case,
    column,
    event,
    func,
    inspect,
    or_,
    select,
    table,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import ORMExecuteState, Session, selectinload

from zhisuan.catalog.loader import Catalog
from zhisuan.core.placement import DeviceSnapshot, NodeSnapshot
from zhisuan.core.placement.live import Holds, InventoryNode, LiveFleet
from zhisuan.identity.models import Tenant
from zhisuan.inventory.models import Device, Node, Site
from zhisuan.ledger.models import Allocation
from zhisuan.ledger.service import exclusive_node_tenants, held_node_resources, held_shares
from zhisuan.store.leases import LoopLease

INVENTORY_ROW = "placement-inventory-generation"
LEDGER_ROW = "placement-ledger-generation"
FAR_FUTURE = datetime(9999, 1, 1, tzinfo=UTC)
FAR_PAST = datetime(1970, 1, 1, tzinfo=UTC)
CHANGES = table("placement_node_changes", column("node_id", Integer), column("stamp", BigInteger))
COUNTER = table("placement_change_counter", column("id", Integer), column("value", BigInteger))
# More changed nodes than this: one full reload (no long IN lists; most holds changed anyway).
MAX_DELTA_NODES = 2000

# Attributes whose change alters a node as placement sees it (heartbeat timestamps do not).
WATCHED: dict[type, frozenset[str]] = {
    Node: frozenset({"site_id", "name", "status", "drained", "cpu_cores", "memory_mib", "labels", "cordon_reason"}),
    Device: frozenset({"node_id", "index", "model", "memory_mib", "available"}),
    Site: frozenset({"name"}),
    Tenant: frozenset({"name"}),
}
PENDING = "placement_fleet_pending"  # session.info key: {"inventory", "ledger"} changed, not yet committed


# ----------------------------------------------------------------------------- session hooks


def _changed(obj: object, watched: frozenset[str]) -> bool:
    state = inspect(obj)
    for name in watched:
        history = state.attrs[name].history
        if history.has_changes() and list(history.added) != list(history.deleted):
            return True
    return False


def _note(session: Session, kind: str) -> None:
    session.info.setdefault(PENDING, set()).add(kind)


@event.listens_for(Session, "after_flush")
def _note_flushed_changes(session: Session, _context: Any) -> None:
    for obj in (*session.new, *session.deleted):
        if isinstance(obj, Allocation):
            _note(session, "ledger")
        elif type(obj) in WATCHED:
            _note(session, "inventory")
    for obj in session.dirty:
        if isinstance(obj, Allocation):
            _note(session, "ledger")
        elif type(obj) in WATCHED and _changed(obj, WATCHED[type(obj)]):
            _note(session, "inventory")


@event.listens_for(Session, "do_orm_execute")
def _note_bulk_changes(state: ORMExecuteState) -> None:
    if not (state.is_update or state.is_delete or state.is_insert):
        return
    mapper = state.bind_mapper
    entity = mapper.class_ if mapper is not None else None
    if entity is Allocation:
        _note(state.session, "ledger")
    elif entity in WATCHED:
        values = getattr(state.statement, "_values", None) or {}
        columns = {getattr(c, "key", str(c)) for c in values}
        if state.is_delete or state.is_insert or not columns or columns & WATCHED[entity]:
            _note(state.session, "inventory")


@event.listens_for(Session, "before_commit")
def _bump_generations(session: Session) -> None:
    if session.in_nested_transaction():  # a savepoint's release: the notes wait for the real commit
        return
    session.flush()  # commit flushes after this hook: flush first so its changes are noted now
    for kind in sorted(session.info.pop(PENDING, set())):
        _bump(session, INVENTORY_ROW if kind == "inventory" else LEDGER_ROW)


@event.listens_for(Session, "after_transaction_end")
def _forget_pending(session: Session, transaction: Any) -> None:
    if transaction.parent is None:  # the whole transaction is over (a savepoint's end keeps the notes)
        session.info.pop(PENDING, None)


def _bump(session: Session, row: str) -> None:
    token = secrets.token_hex(8)
    done = session.execute(update(LoopLease).where(LoopLease.name == row).values(token=token)
                           .execution_options(synchronize_session=False))
    if done.rowcount == 0:  # type: ignore[attr-defined]
        try:
            with session.begin_nested():  # two first writers may race to create the row
                session.add(LoopLease(name=row, holder="placement", token=token, expires_at=FAR_FUTURE))
        except IntegrityError:
            session.execute(update(LoopLease).where(LoopLease.name == row).values(token=token)
                            .execution_options(synchronize_session=False))


# ----------------------------------------------------------------------------- loading


@dataclass(frozen=True)
class Marks:
    """What one cheap query says about the database: the two tokens, the largest row ids and (with
    delta reads) the change marks: every change this read could not see has a stamp ≥ low or in pending."""

    inventory: str | None
    ledger: str | None
    ids: tuple[int | None, ...]  # max node id, max device id, max allocation id
    low: tuple[int, tuple[int, ...]] | None = field(default=None, compare=False)  # (low, pending) stamps


def has_change_stamps(session: Session) -> bool:
    """Whether migration 0023's triggers are in place (a SQLite table rebuild drops triggers)."""
    if session.get_bind().dialect.name == "postgresql":
        query = "SELECT count(*) FROM pg_trigger WHERE tgname = 'placement_allocation_changed'"
        return bool(session.execute(text(query)).scalar())
    query = "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'placement_allocation_%'"
    return session.execute(text(query)).scalar() == 4


def _low_marks(session: Session) -> list[Any]:
    """(low, pending): every change this statement cannot see has a stamp ≥ low or in pending.
    PostgreSQL: the snapshot's xmax and in-progress ids (not its xmin: one long transaction anywhere in
    the cluster would keep it low and make every read return every node stamped since); SQLite: the
    write counter + 1 (writers are serialised)."""
    if session.get_bind().dialect.name == "postgresql":
        return [text("pg_snapshot_xmax(pg_current_snapshot())::text::bigint"),
                text("ARRAY(SELECT x::text::bigint FROM pg_snapshot_xip(pg_current_snapshot()) AS x)")]
    return [select(COUNTER.c.value + 1).where(COUNTER.c.id == 1).scalar_subquery()]


def read_marks(session: Session, delta: bool = False) -> Marks:
    def token(row: str) -> Any:
        return select(LoopLease.token).where(LoopLease.name == row).scalar_subquery()

    columns = [token(INVENTORY_ROW), token(LEDGER_ROW), select(func.max(Node.id)).scalar_subquery(),
               select(func.max(Device.id)).scalar_subquery(), select(func.max(Allocation.id)).scalar_subquery()]
    row = session.execute(select(*columns, *(_low_marks(session) if delta else []))).one()
    low = (int(row[5]), tuple(int(x) for x in (row[6] if len(row) > 6 else ()) or ())) if delta else None
    return Marks(row[0], row[1], (row[2], row[3], row[4]), low)


def stamped_nodes(session: Session, low: tuple[int, tuple[int, ...]]) -> set[tuple[int, int]]:
    """(node id, stamp) of nodes whose holds a write touched that the read which gave ``low`` could not see."""
    since, pending = low
    where = CHANGES.c.stamp >= since
    if pending:
        where = or_(where, CHANGES.c.stamp.in_(pending))
    rows = session.execute(select(CHANGES.c.node_id, CHANGES.c.stamp).where(where))
    return {(int(node), int(stamp)) for node, stamp in rows}


def crossing_nodes(session: Session, fleet: LiveFleet, a: datetime, b: datetime) -> set[int]:
    """Nodes with a hold that starts or ends between ``a`` and ``b`` (live at one, not the other)."""
    lo, hi = min(a, b), max(a, b)
    rows = session.execute(select(Allocation.node_id, Allocation.device_id).where(or_(
        and_(Allocation.start > lo, Allocation.start <= hi), and_(Allocation.end > lo, Allocation.end <= hi))))
    nodes = set()
    for node, device in rows:
        if node is None and device in fleet.row_of_device:
            node = fleet.inventory[fleet.row_of_device[device]].node_id
        if node is not None:
            nodes.add(int(node))
    return nodes


def load_inventory(session: Session, catalog: Catalog) -> list[InventoryNode]:
    """Every node with nothing held; node names are ``site/name`` (unique across the federation)."""
    nodes = session.execute(
        select(Node).options(selectinload(Node.devices), selectinload(Node.site)).order_by(Node.id)).scalars()
    inventory = []
    for node in nodes:
        devices = []
        for device in node.devices:
            model = catalog.get(device.model)
            tflops = model.per_device_tflops("bf16")
            devices.append(DeviceSnapshot(
                index=device.index, model=device.model, memory_mib=device.memory_mib, free_milli=1000,
                healthy=device.available, tflops_bf16=float(tflops) if tflops is not None else 0.0,
                stack=model.stack or ""))
        snapshot = NodeSnapshot(
            name=f"{node.site.name}/{node.name}", site=node.site.name, cpu_milli_free=node.cpu_cores * 1000,
            memory_mib_free=node.memory_mib, devices=tuple(devices), labels=dict(node.labels),
            healthy=node.status == "ready" and not node.drained and node.cordon_reason is None)
        inventory.append(InventoryNode(node.id, snapshot, tuple(d.id for d in node.devices)))
    return inventory


def load_holds(session: Session, now: datetime) -> tuple[Holds, datetime, datetime]:
    """The ledger's holds at ``now`` and the window ``[since, until)`` in which they stay the same
    (no hold starts or ends inside it)."""
    names = dict(session.execute(select(Tenant.id, Tenant.name)).all())
    exclusive = {node: names[tenant] for node, tenant in exclusive_node_tenants(session, now).items()}
    holds = Holds(held_shares(session, now), held_node_resources(session, now), exclusive)
    return holds, *hold_window(session, now)


def hold_window(session: Session, now: datetime, where: Any = None) -> tuple[datetime, datetime]:
    """``[since, until)`` around ``now`` in which no hold (of the rows ``where`` selects) starts or ends."""
    query = select(  # one scan: the last start/end up to now, the first after it
        func.max(case((Allocation.start <= now, Allocation.start))),
        func.max(case((Allocation.end <= now, Allocation.end))),
        func.min(case((Allocation.start > now, Allocation.start))),
        func.min(case((Allocation.end > now, Allocation.end))))
    bounds = session.execute(query if where is None else query.where(where)).one()
    since = max((b for b in bounds[:2] if b is not None), default=FAR_PAST)
    until = min((b for b in bounds[2:] if b is not None), default=FAR_FUTURE)
    return _utc(since), _utc(until)


def load_node_holds(session: Session, fleet: LiveFleet, now: datetime, nodes: set[int]) -> Holds:
    """``fleet.holds`` with the holds of ``nodes`` (node ids) re-read from the ledger at ``now``."""
    known = sorted(n for n in nodes if n in fleet.row_of_node)
    devices = fleet.device_ids_of(known)
    shares = held_shares(session, now, devices=devices)
    resources = held_node_resources(session, now, nodes=known)
    leases = exclusive_node_tenants(session, now, nodes=known)
    names = dict(session.execute(select(Tenant.id, Tenant.name).where(Tenant.id.in_(set(leases.values())))).all()) \
        if leases else {}
    old = fleet.holds
    device_milli = dict(old.device_milli)
    for device in devices:
        device_milli.pop(device, None)
    node_resources, exclusive = dict(old.node_resources), dict(old.exclusive)
    for node in known:
        node_resources.pop(node, None)
        exclusive.pop(node, None)
    device_milli.update(shares)
    node_resources.update(resources)
    exclusive.update({node: names[tenant] for node, tenant in leases.items()})
    return Holds(device_milli, node_resources, exclusive)


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


# ----------------------------------------------------------------------------- the cache


@dataclass
class _Entry:
    catalog: Catalog
    marks: Marks
    since: datetime
    until: datetime
    fleet: LiveFleet
    now: datetime  # when the holds were last read
    delta: bool  # the change-stamp triggers are in place: read only changed nodes' holds
    seen: set[tuple[int, int]] = field(default_factory=set)  # stamps read last time (a write committed
    # between the marks and the stamps query is read again next time: those already applied are skipped)


@dataclass
class CacheStats:
    hits: int = 0
    updates: int = 0  # every hold reloaded and applied incrementally
    deltas: int = 0  # only the changed nodes' holds reloaded
    delta_nodes: int = 0  # nodes reloaded by deltas
    rebuilds: int = 0
    bypasses: int = 0


class FleetCache:
    """One ``LiveFleet`` per database engine in this process (engines are weak keys: a test's
    throw-away database takes its cache with it)."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._entries: weakref.WeakKeyDictionary[Engine, _Entry] = weakref.WeakKeyDictionary()
        self.stats = CacheStats()

    @contextmanager
    def fleet(self, session: Session, catalog: Catalog, now: datetime) -> Iterator[LiveFleet]:
        """The fleet now, valid for the duration of the ``with`` block (decisions run under a lock)."""
        session.flush()
        if session.info.get(PENDING):  # own uncommitted changes: a private, fresh build
            self.stats.bypasses += 1
            holds, _, _ = load_holds(session, now)
            yield LiveFleet(load_inventory(session, catalog), holds)
            return
        bind = session.get_bind()
        engine: Engine = bind.engine if isinstance(bind, Connection) else bind
        with self._lock:
            yield self._current(session, catalog, now, engine)

    def _current(self, session: Session, catalog: Catalog, now: datetime, engine: Engine) -> LiveFleet:
        entry = self._entries.get(engine)
        delta = entry.delta if entry is not None else has_change_stamps(session)
        marks = read_marks(session, delta)
        if entry is None or entry.catalog is not catalog or entry.marks.inventory != marks.inventory \
                or entry.marks.ids[:2] != marks.ids[:2]:
            self.stats.rebuilds += 1
            holds, since, until = load_holds(session, now)
            entry = _Entry(catalog, marks, since, until, LiveFleet(load_inventory(session, catalog), holds), now,
                           has_change_stamps(session))
            self._entries[engine] = entry
        elif delta:
            self._apply_changes(session, entry, marks, now)
        elif entry.marks != marks or not entry.since <= now < entry.until:
            self._reload_all(session, entry, now)
        else:
            self.stats.hits += 1
        entry.marks = marks
        return entry.fleet

    def _reload_all(self, session: Session, entry: _Entry, now: datetime) -> None:
        self.stats.updates += 1
        holds, entry.since, entry.until = load_holds(session, now)
        entry.fleet.update(holds)
        entry.now = now

    def _apply_changes(self, session: Session, entry: _Entry, marks: Marks, now: datetime) -> None:
        """Re-read the holds of the nodes stamped since the last read and of those whose holds start or end
        between the last ``now`` and this one; narrow the window by their holds' bounds."""
        stamps = stamped_nodes(session, entry.marks.low) if entry.marks.low is not None else set()
        nodes = {node for node, stamp in stamps - entry.seen}
        moved = not entry.since <= now < entry.until
        if moved:
            nodes |= crossing_nodes(session, entry.fleet, entry.now, now)
        entry.seen = stamps
        if not nodes and not moved:
            self.stats.hits += 1
            return
        if len(nodes) > MAX_DELTA_NODES:
            self._reload_all(session, entry, now)
            return
        self.stats.deltas += 1
        self.stats.delta_nodes += len(nodes)
        fleet = entry.fleet
        holds = load_node_holds(session, fleet, now, nodes)
        if moved:
            entry.since, entry.until = hold_window(session, now)
        elif nodes:  # holds elsewhere did not change: the old window stays valid for them
            devices = fleet.device_ids_of(nodes)
            since, until = hold_window(session, now, or_(Allocation.node_id.in_(sorted(nodes)),
                                                          Allocation.device_id.in_(devices)))
            entry.since, entry.until = max(entry.since, since), min(entry.until, until)
        fleet.update(holds, changed_nodes=nodes)
        entry.now = now

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


# The process's cache: every API worker and background loop of this process shares it.
FLEET_CACHE = FleetCache()

