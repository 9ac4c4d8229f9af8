"""Answers of the utilisation history endpoint."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel, Field


class UtilisationPoint(BaseModel):
    start: datetime
    devices: Decimal  # mean devices seen in the window
    allocated: Decimal  # mean devices allocated (held by the ledger)
    utilisation: Decimal | None  # allocated device-time / device-time, 0–1


class UtilisationSeries(BaseModel):
    name: str  # an accelerator model, or a site
    points: list[UtilisationPoint]


class UtilisationHistory(BaseModel):
    resolution: str
    group: str
    since: datetime
    until: datetime
    series: list[UtilisationSeries]


class PaybackIn(BaseModel):
    purchase_price: Decimal = Field(ge=0, le=Decimal("1e12"), description="CNY, the server bought")
    monthly_lease: Decimal = Field(ge=0, le=Decimal("1e10"), description="CNY a month for the whole server, fully used")
    utilisation: Decimal = Field(ge=0, le=1, description="share of the month it is leased, 0–1")
    provider_share: Decimal = Field(default=Decimal(1), ge=0, le=1, description="the provider's share of revenue")
    monthly_cost: Decimal = Field(default=Decimal(0), ge=0, le=Decimal("1e10"), description="power, colocation, ops")
    model_config = {"extra": "forbid"}


class PaybackOut(BaseModel):
    monthly_revenue: Decimal
    monthly_net: Decimal
    months: Decimal | None  # None: never pays back
    yearly_return: Decimal | None


class ProviderYield(BaseModel):
    provider: str
    device_hours: Decimal
    allocated_hours: Decimal
    idle_rate: Decimal | None
    revenue: Decimal | None  # the month's settlement revenue (None until settled)
    revenue_per_device_hour: Decimal | None


class SiteYieldOut(ProviderYield):
    """A site's figures; ``revenue`` is its part of the provider's settlement revenue (the sites of a
    provider sum to it exactly), of which ``site_bound_revenue`` came from lines rated for its devices."""

    site: str
    site_bound_revenue: Decimal | None


class YieldReport(BaseModel):
    period: str
    resolution: str  # the buckets the hours come from: "hour" (last 90 days) or "day" (older months)
    sites: list[SiteYieldOut]
    providers: list[ProviderYield]


class WhatIfIn(BaseModel):
    period: str = Field(description="YYYY-MM (UTC month) to replay")
    book: str | None = Field(default=None, description="price book (name or id); default: the period's invoices' "
                                                       "book, else the default book")
    version: int | None = Field(default=None, ge=1, description="price all the period at this version of the book")
    price_change_percent: Decimal = Field(default=Decimal(0), gt=-100, le=1000,
                                          description="uniform change to every book rate, % (10 = +10 %)")
    usage_factor: Decimal = Field(default=Decimal(1), ge=0, le=1000, description="metered usage × this factor")
    model_config = {"extra": "forbid"}


class WhatIfTenant(BaseModel):
    tenant: str
    actual: Decimal  # total of its issued invoices of the period (every line kind)
    what_if: Decimal  # total of the replayed usage lines
    lines: int


class WhatIfProvider(BaseModel):
    provider: str
    actual_revenue: Decimal
    actual_payout: Decimal
    revenue: Decimal
    payout: Decimal


class WhatIfTotals(BaseModel):
    revenue: Decimal
    payouts: Decimal
    margin: Decimal


class WhatIfOut(BaseModel):
    period: str
    currency: str
    book: str
    version: int | None
    price_change_percent: Decimal
    usage_factor: Decimal
    usage_records: int  # of the period, invoiced or not
    unpriced_records: int  # CPU records no rate of the scenario's book prices
    actual: WhatIfTotals  # from the issued invoices (penalties and ETTR credits included)
    what_if: WhatIfTotals  # usage replayed (penalties and ETTR credits are not replayed)
    tenants: list[WhatIfTenant]
    providers: list[WhatIfProvider]
