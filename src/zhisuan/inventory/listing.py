"""Pages of the node listing, read as plain rows (no ORM objects).

A page of 100 nodes with 8 devices each was 900 ORM objects (identity map, instance state, change
tracking) built only to be serialised: ~100 ms of a loaded core per page, most of the request.
Here a page is two statements — the page's nodes (keyset: ``id > cursor ORDER BY id LIMIT n``,
the primary key's index) and their devices (the ``(node_id, index)`` unique index) — selecting only
the columns the answer shows, turned straight into dicts shaped like ``NodeOut``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from zhisuan.identity.access import Principal
from zhisuan.inventory.models import Device, Node, Site

NODE_COLUMNS = (Node.id, Site.name, Node.name, Node.status, Node.drained, Node.cpu_cores, Node.memory_mib,
                Node.labels, Node.managed_by, Node.agent_version, Node.registered_at, Node.last_heartbeat_at,
                Node.cordon_reason, Node.cordoned_at)
NODE_FIELDS = ("id", "site", "name", "status", "drained", "cpu_cores", "memory_mib", "labels", "managed_by",
               "agent_version", "registered_at", "last_heartbeat_at", "cordon_reason", "cordoned_at")
DEVICE_COLUMNS = (Device.index, Device.uuid, Device.model, Device.reported_name, Device.memory_mib, Device.health,
                  Device.health_detail, Device.available)
DEVICE_FIELDS = ("index", "uuid", "model", "reported_name", "memory_mib", "health", "health_detail", "available")


def node_page(session: Session, principal: Principal, *, site_id: int | None, status: str | None,
              drained: bool | None, after_id: int | None, limit: int) -> list[dict[str, Any]]:
    """The visible nodes matching the filters, by id, at most ``limit`` after node ``after_id``:
    each as the fields of ``NodeOut`` (devices by index). The caller checked the reader's role."""
    query = select(*NODE_COLUMNS).join(Site, Site.id == Node.site_id)
    if not principal.is_operator:
        query = query.where(Site.provider_id == principal.provider_id)
    if site_id is not None:
        query = query.where(Node.site_id == site_id)
    if status is not None:
        query = query.where(Node.status == status)
    if drained is not None:
        query = query.where(Node.drained.is_(drained))
    if after_id is not None:
        query = query.where(Node.id > after_id)
    nodes = [dict(zip(NODE_FIELDS, row, strict=True)) for row in session.execute(query.order_by(Node.id).limit(limit))]
    by_id: dict[int, list[dict[str, Any]]] = {node["id"]: [] for node in nodes}
    for node in nodes:
        node["labels"] = dict(node["labels"] or {})
        node["devices"] = by_id[node["id"]]
    if by_id:
        rows = session.execute(select(Device.node_id, *DEVICE_COLUMNS).where(Device.node_id.in_(list(by_id)))
                               .order_by(Device.node_id, Device.index))
        for node_id, *values in rows:
            by_id[node_id].append(dict(zip(DEVICE_FIELDS, values, strict=True)))
    return nodes
