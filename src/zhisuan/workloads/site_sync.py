"""Importing a site's inventory from its engine (Slurm's sinfo, Kubernetes' node list) into the fleet.

Engine-managed sites have no agents: the engine knows the nodes. A sync asks the driver (outside any
transaction), then in one transaction creates or refreshes each node (``managed_by = engine``): CPU,
memory, labels, devices by index (names resolved through the catalog), drained and down states. A
node the engine no longer lists becomes ``unreachable``; a device that disappeared ends its holds
(``inventory.service.end_holds_of_missing_devices``), as for an agent's re-registration.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload, sessionmaker

from zhisuan.bootstrap import system_principal
from zhisuan.catalog.loader import Catalog
from zhisuan.catalog.router import device_memory_mib
from zhisuan.drivers.base import EngineUnavailable, ImportedNode
from zhisuan.errors import Conflict
from zhisuan.inventory.cordon import apply_health
from zhisuan.inventory.models import Device, Node, Site
from zhisuan.inventory.service import end_holds_of_missing_devices, refresh_availability
from zhisuan.store.base import transaction
from zhisuan.workloads.engines import DriverBook, SiteEngine, site_engine_of


@dataclass
class SyncResult:
    site: str
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # devices the catalog cannot name


def device_rows(catalog: Catalog, node: ImportedNode, result: SyncResult) -> list[Device]:
    rows = []
    for device in node.devices:
        model = catalog.resolve(device.model)
        if model is None:
            result.skipped.append(f"{node.name}#{device.index}: '{device.model}' is not in the catalog")
            continue
        rows.append(Device(index=device.index, model=model.key, reported_name=device.model,
                           memory_mib=device.memory_mib or device_memory_mib(model), health="healthy"))
    return rows


# A node the engine reported down stays cordoned until the engine has reported it up for this long.
ENGINE_CORDON_CLEAR = timedelta(minutes=5)


def apply_node(session: Session, catalog: Catalog, site: Site, imported: ImportedNode, existing: Node | None,
               result: SyncResult, now: datetime) -> None:
    devices = device_rows(catalog, imported, result)
    status = "unreachable" if imported.state == "down" else "ready"
    if existing is None:
        node = Node(site=site, name=imported.name, status=status, drained=imported.state == "drained",
                    cpu_cores=imported.cpu_cores, memory_mib=imported.memory_mib, labels=dict(imported.labels),
                    managed_by="engine", devices=devices, last_heartbeat_at=now)
        session.add(node)
        refresh_availability(node)
        result.added.append(imported.name)
        return
    end_holds_of_missing_devices(session, system_principal(site.id), site, existing, devices, now)
    by_index = {d.index: d for d in existing.devices}
    existing.devices = [by_index[d.index] if d.index in by_index and by_index[d.index].model == d.model else d
                        for d in devices]
    existing.cpu_cores, existing.memory_mib = imported.cpu_cores, imported.memory_mib
    existing.labels = {**existing.labels, **imported.labels}
    existing.status, existing.drained, existing.last_heartbeat_at = status, imported.state == "drained", now
    down = ("the engine reports the node down (Slurm: DOWN, NODE_FAIL or not responding)",)
    apply_health(existing, now, ENGINE_CORDON_CLEAR, extra_faults=down if imported.state == "down" else ())
    refresh_availability(existing)
    result.updated.append(imported.name)


def push_drain(book: DriverBook, site: SiteEngine, node: str, drained: bool, reason: str) -> None:
    """Tell the engine (drivers with ``drain``/``resume``: Slurm) what zhisuan decided; 409 if it cannot be reached."""
    driver = book.driver(site)
    action = getattr(driver, "drain" if drained else "resume", None)
    if action is None:
        return
    try:
        action(node, reason) if drained else action(node)
    except EngineUnavailable as error:
        raise Conflict(f"node {site.name}/{node} is drained in zhisuan but its engine could not be told ({error}); "
                       "try again", field="drained") from error


def sync_site(sessions: sessionmaker[Session], catalog: Catalog, book: DriverBook, site_id: int,
              now: datetime) -> SyncResult:
    """Import the engine's inventory; raises ``EngineUnavailable`` when the engine cannot be reached."""
    with sessions() as session:
        site = session.get(Site, site_id)
        assert site is not None
        engine = site_engine_of(site)
    imported = book.driver(engine).import_inventory()
    result = SyncResult(engine.name)
    with transaction(sessions) as session:
        site = session.get(Site, site_id)
        assert site is not None
        nodes = {n.name: n for n in session.execute(select(Node).where(Node.site_id == site_id)
                                                    .options(selectinload(Node.devices))).scalars()}
        for item in imported:
            apply_node(session, catalog, site, item, nodes.get(item.name), result, now)
        listed = {n.name for n in imported}
        for name, row in nodes.items():
            if name not in listed and row.managed_by == "engine" and row.status != "unreachable":
                row.status = "unreachable"
                refresh_availability(row)
                result.gone.append(name)
    return result
