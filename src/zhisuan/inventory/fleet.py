"""Aggregate views of the fleet: what the console, /metrics and tenants' capacity page show.

Read from the counts the database keeps current (``inventory.fleet_counts``): every request sees the
fleet as of its own snapshot, at the cost of summing a few hundred rows.
"""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from zhisuan.catalog.loader import Catalog
from zhisuan.core.capacity import h100_equivalents, pflops
from zhisuan.identity.access import Principal
from zhisuan.inventory import fleet_counts
from zhisuan.inventory.models import Site
from zhisuan.inventory.schemas import FleetSummary, ModelCapacity


def summarise(session: Session, catalog: Catalog, principal: Principal) -> FleetSummary:
    """The capacity the caller may count: a provider its own sites', operators and tenants the fleet's."""
    rows = fleet_counts.device_counts(session, principal)
    total: Counter[str] = Counter()
    available: Counter[str] = Counter()
    unhealthy: Counter[str] = Counter()
    for model, is_available, health, count in rows:
        total[model] += count
        available[model] += count if is_available else 0
        unhealthy[model] += count if health != "healthy" else 0
    statuses = fleet_counts.node_statuses(session, principal)
    sites_query = select(func.count(Site.id))
    if principal.role == "provider":
        sites_query = sites_query.where(Site.provider_id == principal.provider_id)
    sites = session.execute(sites_query).scalar_one()
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
