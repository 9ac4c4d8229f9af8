"""HTTP routes of the market domain: thin wrappers over market.service."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Request, status
from sqlalchemy.orm import Session

from zhisuan.api.deps import ContextDep, Reader, SessionDep, Writer
from zhisuan.catalog.loader import Catalog
from zhisuan.identity.access import Principal
from zhisuan.identity.models import Tenant
from zhisuan.inventory.models import Site
from zhisuan.market import models as m
from zhisuan.market import schemas as s
from zhisuan.market import service

router = APIRouter(tags=["market"])


def catalog_of(request: Request) -> Catalog:
    catalog: Catalog = request.app.state.catalog
    return catalog


def book_out(session: Session, principal: Principal, book: m.PriceBook) -> s.PriceBookOut:
    rates = [r for v in book.versions for r in v.rates]
    tenants = service.names(session, Tenant, {r.tenant_id for r in rates if r.tenant_id})
    sites = service.names(session, Site, {r.site_id for r in rates if r.site_id})
    return s.PriceBookOut(id=book.id, name=book.name, currency=book.currency, default=book.is_default, versions=[
        s.VersionOut(version=v.version, effective_from=v.effective_from, devices_per_server=v.devices_per_server,
                     pflops_precision=v.pflops_precision, note=v.note, rates=[
                         s.RateOut(model=r.model, pricing_model=r.pricing_model, unit_price=r.unit_price,
                                   tenant=tenants.get(r.tenant_id) if r.tenant_id else None,
                                   site=sites.get(r.site_id) if r.site_id else None, region=r.region,
                                   spot_discount=r.spot_discount,
                                   reserved_discounts=[s.TermDiscountIn.model_validate(d)
                                                       for d in r.reserved_discounts])
                         for r in v.rates if service.rate_visible(principal, r)])
        for v in book.versions])


@router.post("/pricebooks", response_model=s.PriceBookOut, status_code=status.HTTP_201_CREATED)
def create_price_book(body: s.PriceBookCreate, request: Request, session: SessionDep, principal: Writer,
                      ctx: ContextDep) -> s.PriceBookOut:
    book = service.create_price_book(session, catalog_of(request), principal, body, ctx.clock())
    return book_out(session, principal, book)


@router.get("/pricebooks", response_model=list[s.PriceBookOut])
def list_price_books(session: SessionDep, principal: Reader) -> list[s.PriceBookOut]:
    return [book_out(session, principal, b) for b in service.list_price_books(session, principal)]


@router.get("/pricebooks/{ref}", response_model=s.PriceBookOut)
def get_price_book(ref: str, session: SessionDep, principal: Reader) -> s.PriceBookOut:
    return book_out(session, principal, service.get_price_book(session, principal, ref))


@router.post("/pricebooks/{ref}/versions", response_model=s.PriceBookOut, status_code=status.HTTP_201_CREATED)
def add_version(ref: str, body: s.VersionCreate, request: Request, session: SessionDep, principal: Writer,
                ctx: ContextDep) -> s.PriceBookOut:
    book = service.add_version(session, catalog_of(request), principal, ref, body, ctx.clock())
    return book_out(session, principal, book)


@router.post("/contracts", response_model=s.ContractOut, status_code=status.HTTP_201_CREATED)
def create_contract(body: s.ContractCreate, request: Request, session: SessionDep, principal: Writer) -> s.ContractOut:
    return service.contract_out(session, service.create_contract(session, catalog_of(request), principal, body))


@router.get("/contracts", response_model=list[s.ContractOut])
def list_contracts(session: SessionDep, principal: Reader, state: str | None = None,
                   tenant: str | None = None) -> list[s.ContractOut]:
    return [service.contract_out(session, c) for c in service.list_contracts(session, principal, state, tenant)]


@router.get("/contracts/{ref}", response_model=s.ContractOut)
def get_contract(ref: str, session: SessionDep, principal: Reader, ctx: ContextDep,
                 period: str | None = None) -> s.ContractOut:
    """``period`` (YYYY-MM, default: now's): the billing period whose ETTR the view measures."""
    from zhisuan.billing.service import parse_period  # billing builds on the market

    now = ctx.clock()
    row = service.get_contract(session, principal, ref)
    return service.contract_out(session, row, parse_period(period or f"{now.year:04d}-{now.month:02d}"))


@router.post("/contracts/{ref}/activate", response_model=s.ContractOut)
def activate(ref: str, body: s.ActivateBody, request: Request, session: SessionDep, principal: Writer,
             ctx: ContextDep) -> s.ContractOut:
    row = service.activate_contract(session, catalog_of(request), principal, ref, body, ctx.clock())
    return service.contract_out(session, row)


@router.post("/contracts/{ref}/terminate", response_model=s.ContractOut)
def terminate(ref: str, body: s.TerminateBody, session: SessionDep, principal: Writer,
              ctx: ContextDep) -> s.ContractOut:
    return service.contract_out(session, service.end_contract(session, principal, ref, "terminate", body, ctx.clock()))


@router.post("/contracts/{ref}/breach", response_model=s.ContractOut)
def breach(ref: str, body: s.BreachBody, session: SessionDep, principal: Writer, ctx: ContextDep) -> s.ContractOut:
    return service.contract_out(session, service.end_contract(session, principal, ref, "breach", body, ctx.clock()))


@router.post("/contracts/{ref}/expire", response_model=s.ContractOut)
def expire(ref: str, body: s.ExpireBody, session: SessionDep, principal: Writer, ctx: ContextDep) -> s.ContractOut:
    return service.contract_out(session, service.end_contract(session, principal, ref, "expire", body, ctx.clock()))


@router.post("/contracts/{ref}/amendments", response_model=s.ContractOut, status_code=status.HTTP_201_CREATED)
def amend(ref: str, body: s.AmendmentCreate, request: Request, session: SessionDep, principal: Writer,
          ctx: ContextDep) -> s.ContractOut:
    row = service.amend_contract(session, catalog_of(request), principal, ref, body, ctx.clock())
    return service.contract_out(session, row)


@router.get("/contracts/{ref}/penalty", response_model=s.PenaltyQuote)
def penalty(ref: str, session: SessionDep, principal: Reader, ctx: ContextDep,
            at: datetime | None = None) -> s.PenaltyQuote:
    return service.penalty_quote(session, principal, ref, at or ctx.clock())


@router.get("/market/index", response_model=list[s.IndexEntryOut])
def market_index(session: SessionDep, principal: Reader, ctx: ContextDep,
                 at: datetime | None = None) -> list[s.IndexEntryOut]:
    return service.market_index(session, principal, at or ctx.clock())


@router.get("/market/breach-risk", response_model=list[s.BreachRiskOut])
def breach_risk(session: SessionDep, principal: Reader, ctx: ContextDep,
                at: datetime | None = None) -> list[s.BreachRiskOut]:
    return service.breach_risk(session, principal, at or ctx.clock())
