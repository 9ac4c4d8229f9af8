"""HTTP route of the utilisation history: a thin wrapper over utilisation.service."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request

from zhisuan.api.deps import ContextDep, Reader, SessionDep
from zhisuan.billing.router import catalog_of
from zhisuan.core.utilisation import DEFAULT_SPAN
from zhisuan.errors import InvalidInput
from zhisuan.utilisation import economics, service, whatif
from zhisuan.utilisation.schemas import (
    PaybackIn,
    PaybackOut,
    UtilisationHistory,
    UtilisationPoint,
    UtilisationSeries,
    WhatIfIn,
    WhatIfOut,
    YieldReport,
)

router = APIRouter()


@router.get("/utilisation", response_model=UtilisationHistory, tags=["fleet"])
def utilisation_history(
        session: SessionDep, principal: Reader, ctx: ContextDep,
        resolution: Annotated[Literal["minute", "hour", "day"], Query(description="bucket width")] = "minute",
        group: Annotated[Literal["model", "site"], Query(description="one series per model or per site")] = "model",
        since: Annotated[datetime | None, Query(description="default: until − 6 h / 7 d / 90 d by resolution")] = None,
        until: Annotated[datetime | None, Query(description="default: now")] = None) -> UtilisationHistory:
    """Allocated devices over time, sampled every minute from the allocation ledger and rolled up by
    hour and day (operators: every site; providers: their sites; tenants: 403)."""
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            raise InvalidInput(f"{name} needs a time zone (e.g. 2026-12-01T00:00:00Z)", field=name)
    end = until or ctx.clock()
    start = since or end - DEFAULT_SPAN[resolution]
    found = service.history(session, principal, resolution, start, end, group)
    return UtilisationHistory(resolution=resolution, group=group, since=start, until=end, series=[
        UtilisationSeries(name=name, points=[UtilisationPoint(start=p.start, devices=p.devices, allocated=p.allocated,
                                                              utilisation=p.utilisation) for p in found_points])
        for name, found_points in found.items()])


@router.post("/economics/payback", response_model=PaybackOut, tags=["economics"])
def server_payback(body: PaybackIn, principal: Reader) -> PaybackOut:
    """A server's payback period (回本周期) at a purchase price, a monthly lease and a utilisation."""
    return economics.server_payback(principal, body)


@router.get("/economics/yield", response_model=YieldReport, tags=["economics"])
def yield_report(session: SessionDep, principal: Reader, ctx: ContextDep,
                 period: Annotated[str, Query(description="YYYY-MM (UTC month)")]) -> YieldReport:
    """Idle rate and revenue per device-hour per site and provider for one month (from hour buckets,
    or day buckets for a month older than the hours' 90 days: ``resolution`` says which)."""
    return economics.yield_report(session, principal, period, ctx.clock())


@router.post("/economics/what-if", response_model=WhatIfOut, tags=["economics"])
def what_if(body: WhatIfIn, request: Request, session: SessionDep, principal: Reader) -> WhatIfOut:
    """Replay a month's usage with another price book (a version, a % change) and/or utilisation
    (usage × factor) through the invoices' rating code, beside the actual invoices; writes nothing."""
    return whatif.replay(session, catalog_of(request), principal, body)
