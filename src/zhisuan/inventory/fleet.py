"""Aggregate views of the fleet: what the console, /metrics and tenants' capacity page show."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from zhisuan.catalog.loader import Catalog
from zhisuan.core.capacity import h100_equivalents, pflops
from zhisuan.identity.access import Principal
from zhisuan.inventory.models import Device, Node, Site
from zhisuan.inventory.schemas import FleetSummary, ModelCapacity


def _scoped(query, principal: Principal):  # type: ignore[no-untyped-def]
    # Providers see their own capacity; operators and tenants (who shop for capacity) see all of it.
    if principal.role == "provider":
        return query.where(Site.provider_id == principal.provider_id)
    return query


def device_counts(session: Session, principal: Principal) -> list[tuple[str, bool, str, int]]:
    """(model, available, health, count) over the devices the caller may count."""
    query = (
        select(Device.model, Device.available, Device.health, func.count(Device.id))
        .join(Device.node).join(Node.site)
        .group_by(Device.model, Device.available, Device.health)
    )
    return [tuple(row) for row in session.execute(_scoped(query, principal)).all()]  # type: ignore[misc]


def summarise(session: Session, catalog: Catalog, principal: Principal) -> FleetSummary:
    rows = device_counts(session, principal)
    total: Counter[str] = Counter()
    available: Counter[str] = Counter()
    unhealthy: Counter[str] = Counter()
    for model, is_available, health, count in rows:
        total[model] += count
        available[model] += count if is_available else 0
        unhealthy[model] += count if health != "healthy" else 0
    statuses = dict(session.execute(
        _scoped(select(Node.status, func.count(Node.id)).join(Node.site).group_by(Node.status), principal)
    ).all())
    sites = session.execute(_scoped(select(func.count(Site.id)), principal)).scalar_one()
    # Models without a published dense BF16 figure (T4, anonymised trace models) add nothing here.
    devices = {catalog.get(model): count for model, count in total.items()}
    return FleetSummary(
        sites=sites,
        nodes=sum(statuses.values()),
        nodes_by_status=statuses,
        accelerators=sum(total.values()),
        accelerators_available=sum(available.values()),
        pflops_bf16=pflops(devices, "bf16", unknown="skip").quantize(Decimal("0.0001")),
        h100_equivalents=h100_equivalents(devices, "bf16", unknown="skip").quantize(Decimal("0.01")),
        by_model=[
            ModelCapacity(model=m, vendor=catalog.get(m).vendor, total=total[m], available=available[m],
                          unhealthy=unhealthy[m])
            for m in sorted(total)
        ],
    )
