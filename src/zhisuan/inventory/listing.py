"""Pages of the node listing, read as plain rows (no ORM objects) or, on PostgreSQL, as the answer's JSON.

A page of 100 nodes with 8 devices each was 900 ORM objects (identity map, instance state, change
tracking) built only to be serialised: ~100 ms of a loaded core per page, most of the request.
Here a page is two statements — the page's nodes (keyset: ``id > cursor ORDER BY id LIMIT n``,
the primary key's index) and their devices (the ``(node_id, index)`` unique index) — selecting only
the columns the answer shows, turned straight into dicts shaped like ``NodeOut``.

On PostgreSQL the page is one statement that returns the answer's body itself (``node_page_json``):
the 900 rows of a page were still ~10 ms of Python (row processing, JSON label decoding, dicts) plus
~4 ms validating and serialising them, for a body PostgreSQL builds in C from the same two index
scans. The body is the one ``NodeOut`` gives (same fields, same values, timestamps written as
Pydantic writes them), up to whitespace.
"""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, Text, case, cast, func, literal, literal_column, select
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.orm import Session

from zhisuan.identity.access import Principal
from zhisuan.inventory.models import Device, Node, Site

NODE_COLUMNS = (Node.id, Site.name, Node.name, Node.status, Node.drained, Node.cpu_cores, Node.memory_mib,
                Node.labels, Node.managed_by, Node.agent_version, Node.registered_at, Node.last_heartbeat_at,
                Node.cordon_reason, Node.cordoned_at)
NODE_FIELDS = ("id", "site", "name", "status", "drained", "cpu_cores", "memory_mib", "labels", "managed_by",
               "agent_version", "registered_at", "last_heartbeat_at", "cordon_reason", "cordoned_at")
DEVICE_COLUMNS = (Device.index, Device.uuid, Device.model, Device.reported_name, Device.memory_mib, Device.health,
                  Device.health_detail, Device.available, Device.cordon_reason, Device.cordoned_at)
DEVICE_FIELDS = ("index", "uuid", "model", "reported_name", "memory_mib", "health", "health_detail", "available",
                 "cordon_reason", "cordoned_at")
SelectT = TypeVar("SelectT", bound=Select)  # type: ignore[type-arg]
TIMES = {"registered_at", "last_heartbeat_at", "cordoned_at"}
EMPTY_LIST: ColumnElement[Any] = literal_column("'[]'::json")


def visible(query: SelectT, principal: Principal, *, site_id: int | None, status: str | None,
            drained: bool | None, after_id: int | None, model: str | None = None) -> SelectT:
    """``query`` (over nodes joined to their sites) narrowed to the nodes the reader may see that match
    (``model``: nodes with at least one device of that model)."""
    if not principal.is_operator:
        query = query.where(Site.provider_id == principal.provider_id)
    if site_id is not None:
        query = query.where(Node.site_id == site_id)
    if status is not None:
        query = query.where(Node.status == status)
    if drained is not None:
        query = query.where(Node.drained.is_(drained))
    if model is not None:
        query = query.where(select(Device.id).where(Device.node_id == Node.id, Device.model == model).exists())
    if after_id is not None:
        query = query.where(Node.id > after_id)
    return query


def node_page(session: Session, principal: Principal, *, site_id: int | None, status: str | None,
              drained: bool | None, after_id: int | None, limit: int, model: str | None = None
              ) -> list[dict[str, Any]]:
    """The visible nodes matching the filters, by id, at most ``limit`` after node ``after_id``:
    each as the fields of ``NodeOut`` (devices by index). The caller checked the reader's role."""
    query = visible(select(*NODE_COLUMNS).join(Site, Site.id == Node.site_id), principal, site_id=site_id,
                    status=status, drained=drained, after_id=after_id, model=model)
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


def pydantic_time(column: Any) -> ColumnElement[Any]:
    """A ``timestamptz`` as Pydantic writes a UTC datetime: ``2026-12-02T01:02:03Z``, with
    ``.ffffff`` only when there are microseconds; NULL stays NULL."""
    utc = func.timezone("UTC", column)
    seconds = func.to_char(utc, 'YYYY-MM-DD"T"HH24:MI:SS')
    fraction = case((func.date_trunc("second", utc) == utc, literal("")), else_="." + func.to_char(utc, "US"))
    return case((column.is_(None), None), else_=seconds + fraction + "Z")


def json_object(fields: tuple[str, ...], values: list[Any]) -> ColumnElement[Any]:
    parts: list[Any] = []
    for name, value in zip(fields, values, strict=True):
        parts += [literal_column(f"'{name}'"), value]
    return func.json_build_object(*parts)


def node_page_json(session: Session, principal: Principal, *, site_id: int | None, status: str | None,
                   drained: bool | None, after_id: int | None, limit: int, model: str | None = None
                   ) -> tuple[str, int | None]:
    """PostgreSQL only: ``node_page``'s answer as the JSON text of ``list[NodeOut]``, built by
    PostgreSQL in one statement, and the id to continue after (None on the last page)."""
    page = visible(select(Node.id).join(Site, Site.id == Node.site_id), principal, site_id=site_id, status=status,
                   drained=drained, after_id=after_id, model=model).order_by(Node.id).limit(limit + 1).cte("page")
    shown = select(page.c.id).order_by(page.c.id).limit(limit).subquery("shown")
    device = json_object(DEVICE_FIELDS, [pydantic_time(column) if name in TIMES else column
                                         for name, column in zip(DEVICE_FIELDS, DEVICE_COLUMNS, strict=True)])
    devices = (select(func.coalesce(func.json_agg(aggregate_order_by(device, Device.index)), EMPTY_LIST))
               .where(Device.node_id == Node.id).scalar_subquery())
    values: list[Any] = [pydantic_time(column) if name in TIMES else column
                         for name, column in zip(NODE_FIELDS, NODE_COLUMNS, strict=True)]
    values[NODE_FIELDS.index("labels")] = func.coalesce(Node.labels, literal_column("'{}'::json"))
    node = json_object((*NODE_FIELDS, "devices"), [*values, devices])
    found = select(func.count()).select_from(page).scalar_subquery()
    body, last_id, more = session.execute(
        select(cast(func.coalesce(func.json_agg(aggregate_order_by(node, Node.id)), EMPTY_LIST), Text),
               func.max(Node.id), found > limit)
        .select_from(shown.join(Node, Node.id == shown.c.id).join(Site, Site.id == Node.site_id))).one()
    return body, (last_id if more else None)
