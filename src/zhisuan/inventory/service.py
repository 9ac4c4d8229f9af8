"""Providers, sites, nodes and devices: the rules of the inventory, independent of HTTP."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, selectinload

from zhisuan.catalog.loader import Catalog
from zhisuan.catalog.router import device_memory_mib
from zhisuan.core.refs import row_id
from zhisuan.errors import Conflict, Forbidden, InvalidInput, NotFound
from zhisuan.identity import audit
from zhisuan.identity.access import Principal, may_see_provider, require_role
from zhisuan.identity.keys import IssuedKey, issue_key
from zhisuan.identity.models import ApiKey, User
from zhisuan.identity.service import by_ref, flush_or_conflict
from zhisuan.inventory.cordon import (
    apply_health,
    cordon_by_operator,
    has_device_cordon,
    uncordon_by_operator,
    uncordon_device_by_operator,
)
from zhisuan.inventory.models import Device, Node, Provider, Site
from zhisuan.inventory.schemas import (
    DeviceReport,
    NodeDeclare,
    NodePatch,
    NodeRegister,
    ProviderCreate,
    SiteCreate,
)
from zhisuan.ledger import service as ledger


def require_inventory_reader(principal: Principal) -> None:
    if principal.role == "tenant":
        raise Forbidden("tenants do not see providers' inventory; use /api/v1/capacity for what is on offer")


def create_provider(session: Session, principal: Principal, body: ProviderCreate) -> Provider:
    require_role(principal, "operator")
    if session.execute(select(Provider.id).where(Provider.name == body.name)).first():
        raise Conflict(f"a provider named '{body.name}' already exists", field="name")
    provider = Provider(name=body.name, display_name=body.display_name, revenue_share=body.revenue_share)
    session.add(provider)
    session.flush()
    audit.record(session, principal, "provider.create", "provider", provider.name, provider_id=provider.id)
    return provider


def list_providers(session: Session, principal: Principal) -> list[Provider]:
    require_inventory_reader(principal)
    query = select(Provider).order_by(Provider.id)
    if not principal.is_operator:
        query = query.where(Provider.id == principal.provider_id)
    return list(session.execute(query).scalars())


def get_provider(session: Session, principal: Principal, ref: str) -> Provider:
    require_inventory_reader(principal)
    provider: Provider = by_ref(session, Provider, ref, "provider")
    if not may_see_provider(principal, provider.id):
        raise NotFound(f"provider '{ref}' not found", field="provider")
    return provider


def create_site(session: Session, principal: Principal, body: SiteCreate) -> Site:
    require_role(principal, "operator", "provider")
    provider = get_provider(session, principal, body.provider)
    if session.execute(select(Site.id).where(Site.name == body.name)).first():
        raise Conflict(f"a site named '{body.name}' already exists", field="name")
    config = body.engine_config.model_dump(exclude_none=True) if body.engine_config else {}
    site = Site(name=body.name, engine=body.engine, region=body.region, provider=provider, engine_config=config)
    session.add(site)
    session.flush()
    audit.record(session, principal, "site.create", "site", site.name, provider_id=provider.id)
    return site


def list_sites(session: Session, principal: Principal) -> list[Site]:
    require_inventory_reader(principal)
    query = select(Site).options(selectinload(Site.provider)).order_by(Site.id)
    if not principal.is_operator:
        query = query.where(Site.provider_id == principal.provider_id)
    return list(session.execute(query).scalars())


def get_site(session: Session, principal: Principal, ref: str) -> Site:
    require_inventory_reader(principal)
    site: Site = by_ref(session, Site, ref, "site")
    if not may_see_provider(principal, site.provider_id):
        raise NotFound(f"site '{ref}' not found", field="site")
    return site


def issue_agent_key(
    session: Session, principal: Principal, site_ref: str, now: datetime, expires_at: datetime | None
) -> IssuedKey:
    """A key that lets ``zhisuan agent`` register nodes into this one site (and nothing else)."""
    require_role(principal, "operator", "provider")
    site = get_site(session, principal, site_ref)
    owner = session.get(User, principal.user_id)
    assert owner is not None
    issued = issue_key(
        session, owner, name=f"agent for site {site.name}", scopes=["agent"], expires_at=expires_at,
        site_id=site.id,
    )
    audit.record(session, principal, "site.agent_key", "site", site.name, provider_id=site.provider_id,
                 detail={"key_id": issued.row.key_id})
    return issued


def resolve_model(catalog: Catalog, name: str, field: str) -> str:
    model = catalog.resolve(name)
    if model is None:
        raise InvalidInput(
            f"unknown accelerator model '{name}'; see 'zhisuan catalog list' for the known ones", field=field
        )
    return model.key


def device_rows(catalog: Catalog, reports: list[DeviceReport]) -> list[Device]:
    seen: set[int] = set()
    rows = []
    for position, report in enumerate(reports):
        if report.index in seen:
            raise InvalidInput(f"device index {report.index} is reported twice", field=f"devices.{position}.index")
        seen.add(report.index)
        key = resolve_model(catalog, report.model, f"devices.{position}.model")
        memory = report.memory_mib if report.memory_mib is not None else device_memory_mib(catalog.get(key))
        rows.append(Device(
            index=report.index, uuid=report.uuid, model=key, reported_name=report.reported_name or report.model,
            memory_mib=memory, health="healthy" if report.healthy else "unhealthy",
            health_detail=report.health_detail,
        ))
    return rows


def replace_devices(node: Node, reported: list[Device]) -> None:
    """Make the node's devices the reported ones, updating rows in place by index.

    In place, because deleting and re-inserting the same (node, index) in one flush would trip the
    unique constraint (SQLAlchemy inserts before it deletes), and because device ids should be stable.
    """
    current = {device.index: device for device in node.devices}
    wanted = {device.index for device in reported}
    for device in list(node.devices):
        if device.index not in wanted:
            node.devices.remove(device)
    for new in reported:
        old = current.get(new.index)
        if old is None:
            node.devices.append(new)
            continue
        for column in ("uuid", "model", "reported_name", "memory_mib", "health", "health_detail"):
            setattr(old, column, getattr(new, column))


def refresh_availability(node: Node) -> None:
    """A device may be scheduled only if it is healthy and not cordoned, and its node is ready, not
    drained, not cordoned."""
    usable = node.status == "ready" and not node.drained and node.cordon_reason is None
    for device in node.devices:
        device.available = usable and device.health == "healthy" and device.cordon_reason is None


def end_holds_of_missing_devices(session: Session, principal: Principal, site: Site, node: Node,
                                 reported: list[Device], now: datetime) -> None:
    """A device missing from a re-registration is gone: its open holds end now, each audited for its
    tenant, before the device row goes (its capacity is never leasable twice; billing stops)."""
    wanted = {device.index for device in reported}
    missing = [device for device in node.devices if device.index not in wanted]
    if not missing:
        return
    ledger.lock_nodes(session, [node.id])
    label = f"{site.name}/{node.name}"
    by_id = {device.id: device for device in missing}
    reasons = {device.id: f"device {label}#{device.index} disappeared at re-registration" for device in missing}
    for device in missing:
        for row in ledger.release_devices(session, [device.id], now, reasons[device.id]):
            audit.record(session, principal, "allocation.device_gone", "allocation", str(row.id),
                         tenant_id=row.tenant_id, provider_id=site.provider_id,
                         detail={"node": label, "device": by_id[device.id].index, "uuid": by_id[device.id].uuid,
                                 "purpose": row.purpose, "contract_id": row.contract_id, "ended_at": now.isoformat()})


def register_node(session: Session, catalog: Catalog, principal: Principal, body: NodeRegister, now: datetime) -> Node:
    """Create or refresh the node an agent runs on; its device list replaces the previous one."""
    if principal.site_id is None:
        raise Forbidden("only an agent key bound to a site can register nodes")
    devices = device_rows(catalog, body.devices)
    if not bind_key_to_node(session, principal, body.name):
        raise Forbidden("this agent key belongs to another node of the site; "
                        "issue one key per node with 'zhisuan site agent-key'")
    node = find_node(session, principal.site_id, body.name)
    created = node is None
    if node is None:
        node = Node(site_id=principal.site_id, name=body.name, status="ready", drained=False)
        session.add(node)
    node.cpu_cores, node.memory_mib, node.labels = body.cpu_cores, body.memory_mib, dict(body.labels)
    node.agent_version, node.managed_by = body.agent_version, "agent"
    node.last_heartbeat_at = now
    if node.status == "unreachable":
        node.status = "ready"
    site = session.get(Site, principal.site_id)
    assert site is not None
    if not created:
        end_holds_of_missing_devices(session, principal, site, node, devices, now)
    replace_devices(node, devices)
    node.health_digest = None  # the devices may differ: the next beat is applied in full
    apply_health(node, now, timedelta(minutes=5))
    refresh_availability(node)
    session.flush()
    audit.record(session, principal, "node.register" if created else "node.reregister", "node",
                 f"{site.name}/{node.name}", provider_id=site.provider_id, detail={"devices": len(devices)})
    return node


def bind_key_to_node(session: Session, principal: Principal, node_name: str) -> bool:
    """Whether the caller's agent key may speak for ``node_name``; an unbound key binds to it now.

    One conditional UPDATE, so two machines racing with the same fresh key cannot both win.
    The control plane's own agent (no key) speaks for its local node only, by construction.
    """
    if principal.key_id is None:
        return True
    bound = session.execute(select(ApiKey.node_name).where(ApiKey.key_id == principal.key_id)).scalar_one_or_none()
    if bound == node_name:
        return True
    if bound is not None:
        return False
    claimed = session.execute(
        update(ApiKey).where(ApiKey.key_id == principal.key_id,
                             or_(ApiKey.node_name.is_(None), ApiKey.node_name == node_name))
        .values(node_name=node_name).execution_options(synchronize_session=False)
    )
    return bool(claimed.rowcount == 1)  # type: ignore[attr-defined]


def find_node(session: Session, site_id: int, name: str) -> Node | None:
    return session.execute(
        select(Node).where(Node.site_id == site_id, Node.name == name).options(selectinload(Node.devices))
    ).scalar_one_or_none()


def _find_node_locked(session: Session, site_id: int, name: str) -> Node | None:
    """The node, read after locking its row until this transaction ends. Without the lock the
    heartbeat monitor could mark it unreachable between this beat's read (status still ``ready``)
    and its write (which then sets only ``last_heartbeat_at``): the node stayed unreachable after an
    acknowledged beat — seen by the control-plane load generator. The monitor's guarded UPDATE waits
    for the lock and then sees the fresh beat."""
    node_id = session.execute(
        select(Node.id).where(Node.site_id == site_id, Node.name == name)
    ).scalar_one_or_none()
    if node_id is None:
        return None
    ledger.lock_nodes(session, [node_id])
    return session.execute(
        select(Node).where(Node.id == node_id).options(selectinload(Node.devices))
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()


def report_digest(health: list) -> str:  # type: ignore[type-arg]
    """What identifies a heartbeat's health report: a beat whose digest equals the node's
    ``health_digest`` (the last one applied) would change no device (``inventory.beats``)."""
    canonical = json.dumps([[report.index, report.healthy, report.health_detail] for report in health])
    return hashlib.blake2b(canonical.encode(), digest_size=16).hexdigest()


def heartbeat(session: Session, principal: Principal, node_name: str, health: list, now: datetime,  # type: ignore[type-arg]
              clear_after: timedelta = timedelta(minutes=5)) -> Node:
    if principal.site_id is None:
        raise Forbidden("only an agent key bound to a site can send heartbeats")
    node = _find_node_locked(session, principal.site_id, node_name)
    # Another node's name answers exactly like an unknown one: the key learns nothing about it.
    if node is None or not bind_key_to_node(session, principal, node_name):
        raise NotFound(f"node '{node_name}' is not registered in this site; register it first", field="node")
    by_index = {device.index: device for device in node.devices}
    for position, report in enumerate(health):
        device = by_index.get(report.index)
        if device is None:
            raise InvalidInput(f"node '{node_name}' has no device {report.index}", field=f"devices.{position}.index")
        device.health = "healthy" if report.healthy else "unhealthy"
        device.health_detail = report.health_detail
    node.last_heartbeat_at = now
    if node.status == "unreachable":
        node.status = "ready"
    apply_health(node, now, clear_after)
    refresh_availability(node)
    # A cordoned device's clean period advances only on full beats: no digest, so no beat of this
    # node is answered from memory or by the quick path while one of its devices is cordoned.
    node.health_digest = None if has_device_cordon(node) else report_digest(health)
    return node


def declare_node(session: Session, catalog: Catalog, principal: Principal, body: NodeDeclare) -> Node:
    require_role(principal, "operator", "provider")
    site = get_site(session, principal, body.site)
    if find_node(session, site.id, body.name) is not None:
        raise Conflict(f"site '{site.name}' already has a node named '{body.name}'", field="name")
    devices: list[Device] = []
    for position, item in enumerate(body.accelerators):
        key = resolve_model(catalog, item.model, f"accelerators.{position}.model")
        memory = device_memory_mib(catalog.get(key))
        first = len(devices)
        devices += [Device(index=first + i, model=key, reported_name=item.model, memory_mib=memory,
                           health="healthy", health_detail="")
                    for i in range(item.count)]
    node = Node(site=site, name=body.name, status="ready", drained=False, cpu_cores=body.cpu_cores,
                memory_mib=body.memory_mib, labels=dict(body.labels), managed_by="declared", devices=devices)
    session.add(node)
    refresh_availability(node)
    session.flush()
    audit.record(session, principal, "node.declare", "node", f"{site.name}/{node.name}",
                 provider_id=site.provider_id, detail={"devices": len(devices)})
    return node


def visible_nodes_query(principal: Principal):  # type: ignore[no-untyped-def]
    require_inventory_reader(principal)
    query = select(Node).join(Node.site).options(selectinload(Node.devices), selectinload(Node.site))
    if not principal.is_operator:
        query = query.where(Site.provider_id == principal.provider_id)
    return query.order_by(Node.id)


def get_node(session: Session, principal: Principal, ref: str) -> Node:
    """``ref`` is a node id, ``site/name``, or a name that is unique across the visible fleet."""
    return node_by_ref(session, visible_nodes_query(principal), ref, "node")


def node_by_ref(session: Session, query: Any, ref: str, field: str) -> Node:
    """The one node among those ``query`` selects (joined with Site) that ``ref`` names: an id,
    ``site/name``, or a bare name unique among them; otherwise NotFound or InvalidInput on ``field``."""
    number = row_id(ref, field)
    if number is not None:
        query = query.where(Node.id == number)
    elif "/" in ref:
        site_name, _, node_name = ref.partition("/")
        query = query.where(Site.name == site_name, Node.name == node_name)
    else:
        query = query.where(Node.name == ref)
    nodes = list(session.execute(query).scalars())
    if not nodes:
        raise NotFound(f"node '{ref}' not found", field=field)
    if len(nodes) > 1:
        raise InvalidInput(f"node name '{ref}' is in several sites; say site/name", field=field)
    return nodes[0]


def patch_node(session: Session, principal: Principal, ref: str, body: NodePatch) -> Node:
    require_role(principal, "operator", "provider")
    node = get_node(session, principal, ref)
    if body.drained is not None:
        node.drained = body.drained
    if body.labels is not None:
        node.labels = dict(body.labels)
    refresh_availability(node)
    audit.record(session, principal, "node.update", "node", f"{node.site.name}/{node.name}",
                 provider_id=node.site.provider_id, detail=body.model_dump(exclude_none=True))
    return node


def set_cordon(session: Session, principal: Principal, ref: str, reason: str | None, now: datetime) -> Node:
    """Cordon by hand (``reason``) or uncordon (None, after the health check passes)."""
    require_role(principal, "operator", "provider")
    node = get_node(session, principal, ref)
    if reason is None:
        uncordon_by_operator(node)
    else:
        cordon_by_operator(node, reason, now)
    refresh_availability(node)
    audit.record(session, principal, "node.uncordon" if reason is None else "node.cordon", "node",
                 f"{node.site.name}/{node.name}", provider_id=node.site.provider_id, detail={"reason": reason})
    return node


def uncordon_device(session: Session, principal: Principal, ref: str, index: int) -> Node:
    """Return one cordoned device to placement, after its health check passes (409 otherwise)."""
    require_role(principal, "operator", "provider")
    node = get_node(session, principal, ref)
    device = uncordon_device_by_operator(node, index)
    refresh_availability(node)
    audit.record(session, principal, "device.uncordon", "node", f"{node.site.name}/{node.name}",
                 provider_id=node.site.provider_id, detail={"device": device.index})
    return node


def delete_node(session: Session, principal: Principal, ref: str) -> None:
    require_role(principal, "operator", "provider")
    node = get_node(session, principal, ref)
    audit.record(session, principal, "node.delete", "node", f"{node.site.name}/{node.name}",
                 provider_id=node.site.provider_id)
    session.delete(node)
    flush_or_conflict(session, f"node '{node.site.name}/{node.name}' has allocations in the ledger; "
                               "drain it instead of deleting it")
