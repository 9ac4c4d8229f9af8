"""HTTP routes of the billing domain: thin wrappers over billing.service."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.responses import JSONResponse

from zhisuan.api.deps import ContextDep, Reader, RowIdPath, RowIdQuery, SessionDep, Writer
from zhisuan.billing import schemas as s
from zhisuan.billing import service
from zhisuan.billing.token_ingest import ingest_tokens as ingest_token_events
from zhisuan.billing.usage_summary import usage_summary as usage_summary_service
from zhisuan.catalog.loader import Catalog

router = APIRouter(tags=["billing"])


def catalog_of(request: Request) -> Catalog:
    catalog: Catalog = request.app.state.catalog
    return catalog


@router.post("/allocations", response_model=list[s.AllocationOut], status_code=status.HTTP_201_CREATED)
def create_allocations(body: s.AllocationCreate, session: SessionDep, principal: Writer,
                       ctx: ContextDep) -> list[s.AllocationOut]:
    return service.allocation_outs(session, service.create_allocations(session, principal, body, ctx.clock()),
                                   principal)


@router.get("/allocations", response_model=list[s.AllocationOut])
def list_allocations(session: SessionDep, principal: Reader, tenant: str | None = None, contract: RowIdQuery = None,
                     active_at: datetime | None = None) -> list[s.AllocationOut]:
    rows = service.list_allocations(session, principal, tenant, contract, active_at)
    return service.allocation_outs(session, rows, principal)


@router.get("/allocations/{allocation_id}", response_model=s.AllocationOut)
def get_allocation(allocation_id: RowIdPath, session: SessionDep, principal: Reader) -> s.AllocationOut:
    return service.allocation_outs(session, [service.get_allocation(session, principal, allocation_id)], principal)[0]


@router.post("/allocations/{allocation_id}/end", response_model=s.AllocationOut)
def end_allocation(allocation_id: RowIdPath, body: s.AllocationEnd, session: SessionDep, principal: Writer,
                   ctx: ContextDep) -> s.AllocationOut:
    row = service.end_allocation(session, principal, allocation_id, body.at, ctx.clock())
    return service.allocation_outs(session, [row], principal)[0]


@router.post("/usage/token-events", response_model=s.IngestResult)
def ingest_tokens(body: s.TokenBatch, session: SessionDep, principal: Writer, ctx: ContextDep) -> s.IngestResult:
    return ingest_token_events(session, principal, body, ctx.clock())


@router.get("/usage", response_model=list[s.UsageOut])
def list_usage(session: SessionDep, principal: Reader, period: str | None = None,
               tenant: str | None = None) -> list[s.UsageOut]:
    return service.list_usage(session, principal, period, tenant)


@router.get("/usage/summary", response_model=s.UsageSummaryOut)
def usage_summary(session: SessionDep, principal: Reader, ctx: ContextDep,
                  group_by: Annotated[str, Query(description="comma-separated: key, model, day, tenant")] =
                  "key,model,day",
                  period: Annotated[str | None, Query(description="YYYY-MM (UTC month)")] = None,
                  from_: Annotated[str | None, Query(alias="from", description="first UTC day, YYYY-MM-DD")] = None,
                  to: Annotated[str | None, Query(description="last UTC day (included), YYYY-MM-DD")] = None,
                  tenant: str | None = None, key: str | None = None, model: str | None = None) -> s.UsageSummaryOut:
    params = {"group_by": group_by, "period": period, "from": from_, "to": to, "tenant": tenant, "key": key,
              "model": model}
    return usage_summary_service(session, principal, params, ctx.clock())


@router.post("/metering/run", response_model=s.MeterResult)
def run_metering(body: s.MeterRun, request: Request, session: SessionDep, principal: Writer,
                 ctx: ContextDep) -> s.MeterResult:
    return service.run_metering(session, catalog_of(request), principal, body.until, ctx.clock())


@router.post("/invoices/run", response_model=list[s.InvoiceOut], status_code=status.HTTP_201_CREATED)
def run_invoices(body: s.InvoiceRun, request: Request, session: SessionDep, principal: Writer,
                 ctx: ContextDep) -> list[s.InvoiceOut]:
    rows = service.run_invoices(session, catalog_of(request), principal, body, ctx.clock())
    names = service.Names.of(session, rows)
    return [service.invoice_out(row, names) for row in rows]


@router.get("/invoices", response_model=list[s.InvoiceOut])
def list_invoices(session: SessionDep, principal: Reader, period: str | None = None,
                  tenant: str | None = None) -> list[s.InvoiceOut]:
    rows = service.list_invoices(session, principal, period, tenant)
    names = service.Names.of(session, rows)
    return [service.invoice_out(row, names) for row in rows]


@router.get("/invoices/{ref}", response_model=s.InvoiceOut)
def get_invoice(ref: str, session: SessionDep, principal: Reader) -> s.InvoiceOut:
    row = service.get_invoice(session, principal, ref)
    return service.invoice_out(row, service.Names.of(session, [row]))


@router.get("/invoices/{ref}/export", response_model=None,
            responses={200: {"content": {"text/csv": {}, "application/json": {}}}})
def export_invoice(ref: str, session: SessionDep, principal: Reader, format: str = "json") -> Response:
    media, content = service.export_invoice(session, principal, ref, format)
    if media == "text/csv":
        assert isinstance(content, str)
        return Response(content, media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{ref}.csv"'})
    body: Any = content
    return JSONResponse(body)


@router.post("/settlements/run", response_model=s.MarginOut)
def run_settlements(body: s.SettlementRun, session: SessionDep, principal: Writer, ctx: ContextDep) -> s.MarginOut:
    return service.run_settlements(session, principal, body, ctx.clock())


@router.get("/settlements", response_model=list[s.SettlementOut])
def list_settlements(session: SessionDep, principal: Reader, period: str | None = None) -> list[s.SettlementOut]:
    return service.list_settlements(session, principal, period)


@router.get("/margin/{period}", response_model=s.MarginOut)
def margin(period: str, session: SessionDep, principal: Reader) -> s.MarginOut:
    return service.margin(session, principal, period)
