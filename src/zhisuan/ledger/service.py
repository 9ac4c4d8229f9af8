"""The ledger's public API: every holder of devices, quota or node CPU/memory takes and releases
them here, and here only is "never more than the device" enforced.

Holders: contracts (``hold_lease`` for leased nodes, ``hold_quota`` for quota/PFLOPS
entitlements), manual allocations and jobs (``hold``), serving replicas (``hold`` for devices,
``hold_node_resources`` for CPU and memory). Readers: ``held_shares``, ``exclusive_node_tenants``,
``lease_holder``, ``lease_conflict``.

Concurrency. A hold checks what is held, then writes; two transactions doing that at once would
both see the device free. So every writer first takes the nodes it holds on (``lock_nodes``) and
only then reads: on PostgreSQL ``SELECT … FOR NO KEY UPDATE`` on the node rows, in ascending id order
(two holders of the same nodes queue; a fixed order cannot deadlock within one call); on SQLite
``BEGIN IMMEDIATE`` (the database's single write lock, taken before the first read of the check).
The loser of a race waits, then sees the winner's rows and gets a 409 naming the device.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from zhisuan.core.ledger import (
    DEVICE_MILLI,
    Hold,
    cpu_resource,
    device_resource,
    memory_resource,
    shortfalls,
)
from zhisuan.errors import Conflict, InvalidInput
from zhisuan.identity.models import Tenant
from zhisuan.inventory.models import Device, Node
from zhisuan.ledger.models import CPU_MODEL, Allocation


@dataclass(frozen=True)
class Holder:
    """Who holds, why, and on what billing terms (copied onto every row of the hold)."""

    tenant_id: int
    purpose: str
    ref: str = ""
    contract_id: int | None = None
    billable: bool = True
    pricing_model: str = "device_hour"
    tier: str = "on_demand"
    term_months: int = 0
    # A preemptible job borrowing another tenant's idle leased capacity (the queue's decision): the
    # lease's owner reclaims it by preemption, so the lease does not refuse it.
    borrowing: bool = False


@dataclass(frozen=True)
class Window:
    """``[start, end)``; ``end`` None holds until released."""

    start: datetime
    end: datetime | None = None

    def __post_init__(self) -> None:
        if self.end is not None and self.end <= self.start:
            raise InvalidInput(f"end {self.end.isoformat()} is not after start {self.start.isoformat()}",
                               field="end")


def node_label(node: Node) -> str:
    return f"{node.site.name}/{node.name}"


# ----------------------------------------------------------------------------- locking


def _sqlite_write_lock(session: Session) -> bool:
    """On SQLite, take the database's single write lock now; False on other databases."""
    connection = session.connection()
    if connection.dialect.name != "sqlite":
        return False
    raw = connection.connection.dbapi_connection
    # The driver opens a transaction only before its first write, and a connection that has
    # written already holds SQLite's write lock; otherwise take that lock before reading.
    if raw is not None and not raw.in_transaction:  # type: ignore[attr-defined]
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    return True


def lock_nodes(session: Session, node_ids: Iterable[int]) -> None:
    """Serialize every ledger writer of these nodes until this transaction ends (see module doc)."""
    if _sqlite_write_lock(session):
        return
    ids = sorted(set(node_ids))
    if ids:
        # FOR NO KEY UPDATE, not FOR UPDATE: rows referencing the node (a replica, an allocation)
        # take KEY SHARE locks on it; FOR UPDATE would conflict with those and deadlock two
        # transactions that each inserted such a row before holding.
        session.execute(select(Node.id).where(Node.id.in_(ids)).order_by(Node.id).with_for_update(key_share=True))


def lock_tenant(session: Session, tenant_id: int) -> None:
    """Serialize one tenant's quota checks (count, then hold) until this transaction ends."""
    if not _sqlite_write_lock(session):
        session.execute(select(Tenant.id).where(Tenant.id == tenant_id).with_for_update(key_share=True))


# ----------------------------------------------------------------------------- reading


def live_at(at: datetime):  # type: ignore[no-untyped-def]
    return and_(Allocation.start <= at, or_(Allocation.end.is_(None), Allocation.end > at))


def overlapping(start: datetime, end: datetime | None):  # type: ignore[no-untyped-def]
    clauses = [or_(Allocation.end.is_(None), Allocation.end > start)]
    if end is not None:
        clauses.append(Allocation.start < end)
    return and_(*clauses)


def held_shares(session: Session, at: datetime, include_entitlements: bool = False,
                devices: Collection[int] | None = None) -> dict[int, int]:
    """Milli-device shares held per device id at ``at`` by workloads (only ``devices`` if given).

    A contract's own entitlement rows (a lease of whole nodes) are left out unless
    ``include_entitlements``: who may use leased nodes is ``exclusive_node_tenants``' answer.
    """
    query = (select(Allocation.device_id, func.sum(Allocation.milli))
             .where(Allocation.device_id.is_not(None), live_at(at)).group_by(Allocation.device_id))
    if devices is not None:
        query = query.where(Allocation.device_id.in_(list(devices)))
    if not include_entitlements:
        query = query.where(Allocation.purpose != "contract")
    return {device: int(milli) for device, milli in session.execute(query).all() if device is not None}


def held_node_resources(session: Session, at: datetime,
                        nodes: Collection[int] | None = None) -> dict[int, tuple[int, int]]:
    """Node id → (milli-cores, MiB) held at ``at`` by CPU/memory holds (``hold_cpu``; only ``nodes`` if given)."""
    query = (select(Allocation.node_id, func.sum(Allocation.cpu_milli), func.sum(Allocation.memory_mib))
             .where(Allocation.node_id.is_not(None), Allocation.device_id.is_(None),
                    or_(Allocation.cpu_milli > 0, Allocation.memory_mib > 0), live_at(at))
             .group_by(Allocation.node_id))
    if nodes is not None:
        query = query.where(Allocation.node_id.in_(list(nodes)))
    rows = session.execute(query)
    return {node: (int(cpu), int(memory)) for node, cpu, memory in rows if node is not None}


def exclusive_node_tenants(session: Session, at: datetime, nodes: Collection[int] | None = None) -> dict[int, int]:
    """Node id → tenant id for every node a contract leases at ``at`` (its lease rows are live:
    an active contract, or a terminated one still in its notice period); only ``nodes`` if given."""
    query = select(Allocation.node_id, Allocation.tenant_id).where(
        Allocation.purpose == "contract", Allocation.node_id.is_not(None), live_at(at)).distinct()
    if nodes is not None:
        query = query.where(Allocation.node_id.in_(list(nodes)))
    rows = session.execute(query)
    return {node: tenant for node, tenant in rows if node is not None}


def lease_holder(session: Session, node_id: int, at: datetime) -> tuple[int, int] | None:
    """(tenant id, contract id) of the lease on a node at ``at``, if any."""
    row = session.execute(select(Allocation.tenant_id, Allocation.contract_id).where(
        Allocation.purpose == "contract", Allocation.node_id == node_id, live_at(at)).limit(1)).first()
    return None if row is None or row[1] is None else (row[0], row[1])


def contract_holds_at(session: Session, contract_id: int, at: datetime) -> bool:
    """Whether a contract's entitlement is live at ``at`` (until its end, notice period included)."""
    return session.execute(select(Allocation.id).where(
        Allocation.contract_id == contract_id, Allocation.purpose == "contract", live_at(at)).limit(1)).first() \
        is not None


def lease_conflict(session: Session, node_ids: Sequence[int], window: Window, *,
                   except_contract: int | None = None,
                   except_tenant: int | None = None) -> tuple[int, int, datetime, datetime | None] | None:
    """(node id, contract id, start, end) of a lease of another contract on one of these nodes
    overlapping ``window``, or None."""
    query = select(Allocation.node_id, Allocation.contract_id, func.min(Allocation.start),
                   func.max(Allocation.end)).where(
        Allocation.purpose == "contract", Allocation.node_id.in_(list(node_ids)),
        overlapping(window.start, window.end), or_(Allocation.end.is_(None), Allocation.end > Allocation.start))
    if except_contract is not None:
        query = query.where(Allocation.contract_id != except_contract)
    if except_tenant is not None:
        query = query.where(Allocation.tenant_id != except_tenant)
    row = session.execute(query.group_by(Allocation.node_id, Allocation.contract_id)
                          .order_by(Allocation.node_id).limit(1)).first()
    if row is None or row[0] is None or row[1] is None:
        return None
    return row[0], row[1], row[2], row[3]


# ----------------------------------------------------------------------------- holding


def _row(holder: Holder, node: Node, window: Window, **what: object) -> Allocation:
    return Allocation(tenant_id=holder.tenant_id, provider_id=node.site.provider_id, site_id=node.site_id,
                      region=node.site.region, node_id=node.id, purpose=holder.purpose, ref=holder.ref,
                      contract_id=holder.contract_id, billable=holder.billable, pricing_model=holder.pricing_model,
                      tier=holder.tier, term_months=holder.term_months, start=window.start, end=window.end, **what)


def _refuse_other_tenants_lease(session: Session, holder: Holder, node: Node, window: Window) -> None:
    clash = lease_conflict(session, [node.id], window, except_tenant=holder.tenant_id)
    if clash is not None:
        raise Conflict(f"node {node_label(node)} is leased exclusively by another tenant "
                       f"(contract C-{clash[1]}) in that window", field="node")


def hold(session: Session, holder: Holder, node: Node, devices: Sequence[Device], milli: int,
         window: Window) -> list[Allocation]:
    """Hold ``milli`` of each device (all of one node) for a workload: all or nothing.

    409 (field ``devices.<n>``, naming ``site/node#index``) if any device has less free in the
    window; 409 (field ``node``) if another tenant leases the node then.
    """
    if not 0 < milli <= DEVICE_MILLI:
        raise InvalidInput(f"milli must be 1…{DEVICE_MILLI}", field="milli")
    lock_nodes(session, [node.id])
    if not holder.borrowing:
        _refuse_other_tenants_lease(session, holder, node, window)
    existing = session.execute(select(Allocation).where(
        Allocation.device_id.in_([d.id for d in devices]), Allocation.purpose != "contract",
        overlapping(window.start, window.end))).scalars()
    holds = [Hold(device_resource(r.device_id), r.milli, r.start, r.end) for r in existing if r.device_id]
    wanted = [Hold(device_resource(d.id), milli, window.start, window.end) for d in devices]
    missing = shortfalls(holds, wanted, {device_resource(d.id): DEVICE_MILLI for d in devices})
    if missing:
        first = missing[0]
        device = devices[first.position]
        raise Conflict(f"device {node_label(node)}#{device.index} has only {first.free} of {DEVICE_MILLI} milli "
                       f"free in that window", field=f"devices.{first.position}")
    rows = [_row(holder, node, window, device_id=d.id, model=d.model, milli=milli) for d in devices]
    session.add_all(rows)
    session.flush()
    return rows


def workload_holder(session: Session, tenant_id: int, node_id: int, at: datetime, purpose: str, ref: str = "",
                    billable: bool | None = None, contract_id: int | None = None, **terms: object) -> Holder:
    """The holder of a workload on a node: inside the tenant's own lease of that node (or the named
    contract), the contract pays and the hold is not billable unless ``billable`` says so."""
    if contract_id is None:
        lease = lease_holder(session, node_id, at)
        contract_id = lease[1] if lease is not None and lease[0] == tenant_id else None
    return Holder(tenant_id, purpose, ref, contract_id, contract_id is None if billable is None else billable,
                  **terms)  # type: ignore[arg-type]


def hold_devices(session: Session, tenant_id: int, node: Node, indexes: Sequence[int], milli: int, window: Window,
                 purpose: str, ref: str = "", billable: bool | None = None,
                 borrowing: bool = False) -> list[Allocation]:
    """``hold`` for a workload given by device indexes (serving replicas, jobs)."""
    by_index = {d.index: d for d in node.devices}
    for n, index in enumerate(indexes):
        if index not in by_index:
            raise InvalidInput(f"node {node_label(node)} has no device {index}", field=f"devices.{n}")
    holder = workload_holder(session, tenant_id, node.id, window.start, purpose, ref, billable, borrowing=borrowing)
    return hold(session, holder, node, [by_index[i] for i in indexes], milli, window)


def hold_cpu(session: Session, tenant_id: int, node: Node, cpu_milli: int, memory_mib: int, window: Window,
             purpose: str, ref: str = "", billable: bool | None = None, borrowing: bool = False) -> Allocation:
    """``hold_node_resources`` for a workload holding no device (a CPU-only serving replica):
    metered in core-hours at the price book's ``cpu``/``core_hour`` rate (see docs)."""
    holder = workload_holder(session, tenant_id, node.id, window.start, purpose, ref, billable,
                             pricing_model="core_hour", borrowing=borrowing)
    return hold_node_resources(session, holder, node, cpu_milli, memory_mib, window)


def hold_node_resources(session: Session, holder: Holder, node: Node, cpu_milli: int, memory_mib: int,
                        window: Window) -> Allocation:
    """Hold CPU (milli-cores) and memory (MiB) of a node, e.g. for a CPU-only serving replica.

    Never more than the node declares: 409 (field ``cpu_cores`` or ``memory_gib``) otherwise. The
    row has no device (``model`` = ``cpu``, ``milli`` = 0) and is metered in core-seconds.
    """
    if cpu_milli < 0 or memory_mib < 0 or cpu_milli + memory_mib == 0:
        raise InvalidInput("a CPU/memory hold needs some CPU or memory", field="cpu_cores")
    lock_nodes(session, [node.id])
    if not holder.borrowing:
        _refuse_other_tenants_lease(session, holder, node, window)
    existing = session.execute(select(Allocation).where(
        Allocation.node_id == node.id, Allocation.device_id.is_(None),
        or_(Allocation.cpu_milli > 0, Allocation.memory_mib > 0), overlapping(window.start, window.end))).scalars()
    holds = [h for r in existing for h in (Hold(cpu_resource(node.id), r.cpu_milli, r.start, r.end),
                                           Hold(memory_resource(node.id), r.memory_mib, r.start, r.end))]
    wanted = [Hold(cpu_resource(node.id), cpu_milli, window.start, window.end),
              Hold(memory_resource(node.id), memory_mib, window.start, window.end)]
    capacity = {cpu_resource(node.id): node.cpu_cores * 1000, memory_resource(node.id): node.memory_mib}
    missing = shortfalls(holds, wanted, capacity)
    if missing:
        first = missing[0]
        what, field = (("CPU milli-cores", "cpu_cores") if first.position == 0 else ("MiB of memory", "memory_gib"))
        raise Conflict(f"node {node_label(node)} has only {first.free} {what} free in that window", field=field)
    row = _row(holder, node, window, device_id=None, model=CPU_MODEL, milli=0, cpu_milli=cpu_milli,
               memory_mib=memory_mib)
    session.add(row)
    session.flush()
    return row


def hold_lease(session: Session, holder: Holder, nodes: Sequence[Node], window: Window,
               field: str = "capacity.nodes") -> list[Allocation]:
    """A contract's exclusive lease of whole nodes: every device at 1000 milli over ``window``.

    409 (``field``) if another contract leases one of the nodes then, or another tenant's workload
    holds a device of one of them (the lessee's own workloads may stay: they run inside the lease).
    """
    assert holder.contract_id is not None and holder.purpose == "contract"
    lock_nodes(session, [node.id for node in nodes])
    clash = lease_conflict(session, [node.id for node in nodes], window, except_contract=holder.contract_id)
    by_id = {node.id: node for node in nodes}
    if clash is not None:
        end = clash[3].isoformat() if clash[3] else "open end"
        raise Conflict(f"node {node_label(by_id[clash[0]])} is already leased exclusively by contract C-{clash[1]} "
                       f"from {clash[2].isoformat()} to {end}", field=field)
    busy = session.execute(select(Allocation.node_id).where(
        Allocation.node_id.in_(list(by_id)), Allocation.purpose != "contract",
        Allocation.tenant_id != holder.tenant_id, overlapping(window.start, window.end),
        or_(Allocation.end.is_(None), Allocation.end > Allocation.start)).limit(1)).scalar_one_or_none()
    if busy is not None:
        raise Conflict(f"node {node_label(by_id[busy])} holds other tenants' workloads in that window", field=field)
    rows = [_row(holder, node, window, device_id=device.id, model=device.model, milli=DEVICE_MILLI)
            for node in nodes for device in node.devices]
    session.add_all(rows)
    session.flush()
    return rows


def hold_quota(session: Session, holder: Holder, provider_id: int, model: str, milli: int,
               window: Window) -> Allocation:
    """A quota/PFLOPS entitlement: ``milli`` thousandths of devices of ``model`` (no particular device)."""
    row = Allocation(tenant_id=holder.tenant_id, provider_id=provider_id, model=model, milli=milli,
                     purpose=holder.purpose, ref=holder.ref, contract_id=holder.contract_id, billable=holder.billable,
                     pricing_model=holder.pricing_model, tier=holder.tier, term_months=holder.term_months,
                     start=window.start, end=window.end)
    session.add(row)
    session.flush()
    return row


# ----------------------------------------------------------------------------- releasing


def release(session: Session, rows: Iterable[Allocation], at: datetime, reason: str | None = None) -> list[Allocation]:
    """End each row at ``at`` (a row starting at or after ``at`` ends where it starts: it never held).

    409 (field ``at``) if usage is already metered past ``at``: billed time cannot be undone.
    Rows already ended by ``at`` are left as they are. Returns the rows it ended.
    """
    ended = []
    for row in rows:
        if row.end is not None and row.end <= at:
            continue
        if row.metered_until is not None and row.metered_until > at:
            raise Conflict(f"allocation {row.id} is metered up to {row.metered_until.isoformat()}; "
                           f"it cannot end before that", field="at")
        row.end = max(row.start, at)
        if reason is not None:
            row.end_reason = reason
        ended.append(row)
    session.flush()
    return ended


def release_contract(session: Session, contract_id: int, at: datetime) -> list[Allocation]:
    """End a contract's entitlement rows at ``at`` (its lease frees its nodes from then on)."""
    rows = session.execute(select(Allocation).where(
        Allocation.contract_id == contract_id, Allocation.purpose == "contract",
        or_(Allocation.end.is_(None), Allocation.end > at)).order_by(Allocation.id)).scalars().all()
    for row in rows:
        if row.metered_until is not None and row.metered_until > at:
            raise Conflict(f"usage of contract C-{contract_id} is already metered up to "
                           f"{row.metered_until.isoformat()}; it cannot end before that", field="at")
    for row in rows:
        if row.start >= at:
            session.delete(row)  # never held: a rewrite replaces it
        else:
            row.end = at
    session.flush()
    return list(rows)


def release_devices(session: Session, device_ids: Sequence[int], at: datetime, reason: str) -> list[Allocation]:
    """End every hold of these devices still open at ``at`` (their devices are gone), with ``reason``."""
    if not device_ids:
        return []
    rows = session.execute(select(Allocation).where(
        Allocation.device_id.in_(list(device_ids)), or_(Allocation.end.is_(None), Allocation.end > at))
        .order_by(Allocation.id)).scalars().all()
    for row in rows:
        row.end = max(row.start, at, row.metered_until or row.start)  # metered time stays billed
        row.end_reason = reason
    session.flush()
    return list(rows)
