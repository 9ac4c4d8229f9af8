"""Operator economics over the utilisation history: idle rate per site, revenue per device-hour per
provider (from its settlement of the month), and a server's payback period (core.economics.payback).

Device-hours come from the hour buckets (kept 90 days): each hour contributes its mean devices (and
mean devices allocated) × 1 h. Revenue is only known per provider and month (settlements), so
revenue per device-hour is a provider figure; a site gets its idle rate.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from zhisuan.billing.models import Settlement
from zhisuan.billing.service import parse_period
from zhisuan.core.economics.errors import EconomicsError
from zhisuan.core.economics.payback import Payback, ServerInvestment, payback, site_yield
from zhisuan.core.utilisation import FULL_DEVICE
from zhisuan.errors import InvalidInput
from zhisuan.identity.access import Principal, require_role
from zhisuan.inventory.models import Provider, Site
from zhisuan.utilisation.models import UtilisationBucket
from zhisuan.utilisation.schemas import PaybackIn, PaybackOut, ProviderYield, SiteYieldOut, YieldReport

HOURS = Decimal("0.01")


def server_payback(principal: Principal, body: PaybackIn) -> PaybackOut:
    require_role(principal, "operator", "provider")
    try:
        found: Payback = payback(ServerInvestment(body.purchase_price, body.monthly_lease, body.utilisation,
                                                  body.provider_share, body.monthly_cost))
    except EconomicsError as error:
        raise InvalidInput(error.message, field=error.field) from error
    return PaybackOut(monthly_revenue=found.monthly_revenue, monthly_net=found.monthly_net, months=found.months,
                      yearly_return=found.yearly_return)


@dataclass
class Hours:
    """Device-hours and allocated device-hours summed over a month's hour buckets."""

    name: str
    provider_id: int
    provider: str
    devices: Decimal = Decimal(0)
    allocated: Decimal = Decimal(0)

    def add(self, bucket: UtilisationBucket) -> None:
        if bucket.samples:  # each hour: its mean devices (and mean allocated) × 1 h
            self.devices += Decimal(bucket.devices) / bucket.samples
            self.allocated += Decimal(bucket.allocated) / FULL_DEVICE / bucket.samples


def yield_report(session: Session, principal: Principal, period_label: str) -> YieldReport:
    """Per site and per provider for one UTC month (operators: all; a provider: its own)."""
    require_role(principal, "operator", "provider")
    period = parse_period(period_label)
    query = (select(Site.id, Site.name, Provider.id, Provider.name, UtilisationBucket)
             .join(Provider, Provider.id == Site.provider_id)
             .join(UtilisationBucket, UtilisationBucket.site_id == Site.id)
             .where(UtilisationBucket.resolution == "hour", UtilisationBucket.start >= period.start,
                    UtilisationBucket.start < period.end))
    if principal.role == "provider":
        query = query.where(Provider.id == principal.provider_id)
    sites: dict[int, Hours] = {}
    providers: dict[int, Hours] = {}
    for site_id, site, provider_id, provider, bucket in session.execute(query):
        sites.setdefault(site_id, Hours(site, provider_id, provider)).add(bucket)
        providers.setdefault(provider_id, Hours(provider, provider_id, provider)).add(bucket)
    revenue: dict[int, Decimal] = dict(session.execute(  # type: ignore[arg-type]
        select(Settlement.provider_id, Settlement.revenue).where(Settlement.period == period.label)).all())
    site_rows = [SiteYieldOut(site=h.name, provider=h.provider, device_hours=h.devices.quantize(HOURS),
                              allocated_hours=h.allocated.quantize(HOURS),
                              idle_rate=site_yield(h.devices, h.allocated, Decimal(0)).idle_rate)
                 for h in sites.values()]
    provider_rows = []
    for h in providers.values():
        earned = revenue.get(h.provider_id)
        found = site_yield(h.devices, h.allocated, earned or Decimal(0))
        provider_rows.append(ProviderYield(
            provider=h.provider, device_hours=h.devices.quantize(HOURS), allocated_hours=h.allocated.quantize(HOURS),
            idle_rate=found.idle_rate, revenue=earned,
            revenue_per_device_hour=found.revenue_per_device_hour if earned is not None else None))
    return YieldReport(period=period.label, sites=sorted(site_rows, key=lambda r: r.site),
                       providers=sorted(provider_rows, key=lambda r: r.provider))
