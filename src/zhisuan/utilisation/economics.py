"""Operator economics over the utilisation history: idle rate and revenue per device-hour per site
and provider for one month, and a server's payback period (core.economics.payback).

Device-hours come from the hour buckets (kept 90 days) or, for a month older than that, from the
day buckets (kept 2 years): each bucket contributes its mean devices (and mean devices allocated)
× the hours of its window (``core.utilisation.device_hours``); the answer names the resolution.

Revenue is the provider's settlement of the month. A site's part is the amounts of the provider's
settled invoice lines rated for devices at that site (the ledger records each hold's site and the
rating keeps it on the line), plus a share of what no site earned alone (token usage, quota
entitlements, penalties, ETTR credits) by allocated device-hours (``core.economics.site_revenue``):
the sites of a provider sum to its settlement revenue exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from zhisuan.billing.models import Invoice, InvoiceLine, Settlement
from zhisuan.billing.service import parse_period
from zhisuan.core.economics.errors import EconomicsError
from zhisuan.core.economics.payback import Payback, ServerInvestment, payback, site_yield
from zhisuan.core.economics.periods import BillingPeriod
from zhisuan.core.economics.site_revenue import site_revenue, weights_of
from zhisuan.core.utilisation import device_hours, period_resolution
from zhisuan.errors import InvalidInput
from zhisuan.identity.access import Principal, require_role
from zhisuan.inventory.models import Provider, Site
from zhisuan.utilisation.models import UtilisationBucket
from zhisuan.utilisation.schemas import PaybackIn, PaybackOut, ProviderYield, SiteYieldOut, YieldReport
from zhisuan.utilisation.service import to_bucket

HOURS = Decimal("0.01")
NO_FEN = Decimal("0.00")


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
    """Device-hours and allocated device-hours of a site or provider summed over a month's buckets."""

    name: str
    provider_id: int
    provider: str
    devices: Decimal = Decimal(0)
    allocated: Decimal = Decimal(0)

    def add(self, bucket: UtilisationBucket) -> None:
        devices, allocated = device_hours(to_bucket(bucket))
        self.devices += devices
        self.allocated += allocated


def month_hours(session: Session, principal: Principal, period: BillingPeriod,
                resolution: str) -> tuple[dict[int, Hours], dict[int, Hours]]:
    """(per site id, per provider id) hours of the month at ``resolution`` (a provider: its own)."""
    query = (select(Site.id, Site.name, Provider.id, Provider.name, UtilisationBucket)
             .join(Provider, Provider.id == Site.provider_id)
             .join(UtilisationBucket, UtilisationBucket.site_id == Site.id)
             .where(UtilisationBucket.resolution == resolution, UtilisationBucket.start >= period.start,
                    UtilisationBucket.start < period.end))
    if principal.role == "provider":
        query = query.where(Provider.id == principal.provider_id)
    sites: dict[int, Hours] = {}
    providers: dict[int, Hours] = {}
    for site_id, site, provider_id, provider, bucket in session.execute(query):
        sites.setdefault(site_id, Hours(site, provider_id, provider)).add(bucket)
        providers.setdefault(provider_id, Hours(provider, provider_id, provider)).add(bucket)
    return sites, providers


def settled_revenue(session: Session, principal: Principal, period: BillingPeriod) -> dict[int, Settlement]:
    query = select(Settlement).where(Settlement.period == period.label)
    if principal.role == "provider":
        query = query.where(Settlement.provider_id == principal.provider_id)
    return {row.provider_id: row for row in session.execute(query).scalars()}


def site_bound_lines(session: Session, period: BillingPeriod,
                     settlements: dict[int, Settlement]) -> dict[int, dict[int, Decimal]]:
    """Per provider id, per site id: the amounts of its settled lines rated for that site's devices
    (lines the settlement lists; a line of a site deleted since counts as not site-bound)."""
    settled = {(str(number), int(str(no))) for row in settlements.values() for number, no in row.lines}
    bound: dict[int, dict[int, Decimal]] = {}
    if not settled:
        return bound
    rows = session.execute(
        select(Invoice.number, InvoiceLine.line_no, InvoiceLine.provider_id, InvoiceLine.site_id, InvoiceLine.amount)
        .join(Invoice, Invoice.id == InvoiceLine.invoice_id).join(Site, Site.id == InvoiceLine.site_id)
        .where(Invoice.period == period.label, InvoiceLine.provider_id.in_(list(settlements))))
    for number, line_no, provider_id, site_id, amount in rows:
        if site_id is not None and (number, line_no) in settled:
            per_site = bound.setdefault(provider_id, {})
            per_site[site_id] = per_site.get(site_id, Decimal(0)) + amount
    return bound


def add_settled_sites(session: Session, sites: dict[int, Hours], settlements: dict[int, Settlement]) -> None:
    """Every site of a settled provider, with or without history in the month (no hours: no idle
    rate, but its part of the revenue), so that the provider's revenue lands on its sites."""
    if settlements:
        for site_id, site, provider_id, provider in session.execute(
                select(Site.id, Site.name, Provider.id, Provider.name).join(Provider, Provider.id == Site.provider_id)
                .where(Provider.id.in_(list(settlements)))):
            sites.setdefault(site_id, Hours(site, provider_id, provider))


def revenue_by_site(sites: dict[int, Hours], settlements: dict[int, Settlement],
                    bound: dict[int, dict[int, Decimal]]) -> dict[int, Decimal]:
    """Each settled provider's revenue split over its sites (core.economics.site_revenue)."""
    found: dict[int, Decimal] = {}
    for provider_id, settlement in settlements.items():
        own = {str(site_id): hours for site_id, hours in sites.items() if hours.provider_id == provider_id}
        weights = weights_of({s: h.allocated for s, h in own.items()}, {s: h.devices for s, h in own.items()})
        lines = {str(site_id): amount for site_id, amount in bound.get(provider_id, {}).items()}
        for site, amount in site_revenue(settlement.revenue, lines, weights).items():
            found[int(site)] = amount
    return found


def provider_yield(hours: Hours, revenue: Decimal | None) -> ProviderYield:
    found = site_yield(hours.devices, hours.allocated, revenue or Decimal(0))
    return ProviderYield(provider=hours.provider, device_hours=hours.devices.quantize(HOURS),
                         allocated_hours=hours.allocated.quantize(HOURS), idle_rate=found.idle_rate, revenue=revenue,
                         revenue_per_device_hour=found.revenue_per_device_hour if revenue is not None else None)


def yield_report(session: Session, principal: Principal, period_label: str, now: datetime) -> YieldReport:
    """Per site and per provider for one UTC month (operators: all; a provider: its own)."""
    require_role(principal, "operator", "provider")
    period = parse_period(period_label)
    resolution = period_resolution(period.start, now)
    sites, providers = month_hours(session, principal, period, resolution)
    settlements = settled_revenue(session, principal, period)
    bound = site_bound_lines(session, period, settlements)
    add_settled_sites(session, sites, settlements)
    for provider_id, provider in session.execute(select(Provider.id, Provider.name).where(
            Provider.id.in_(set(settlements) - set(providers)))):
        providers[provider_id] = Hours(provider, provider_id, provider)  # settled, without history
    per_site = revenue_by_site(sites, settlements, bound)
    site_rows = [SiteYieldOut(
        site=h.name, **provider_yield(h, per_site.get(site_id)).model_dump(),
        site_bound_revenue=bound.get(h.provider_id, {}).get(site_id, NO_FEN) if h.provider_id in settlements
        else None) for site_id, h in sites.items()]
    provider_rows = [provider_yield(h, settlements[pid].revenue if pid in settlements else None)
                     for pid, h in providers.items()]
    return YieldReport(period=period.label, resolution=resolution, sites=sorted(site_rows, key=lambda r: r.site),
                       providers=sorted(provider_rows, key=lambda r: r.provider))
