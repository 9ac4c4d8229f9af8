"""HTTP routes of the exchange: thin wrappers over exchange.orders, .service and .clearing."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request, status
from pydantic import Field

from zhisuan.api.deps import ContextDep, Reader, SessionDep, Writer
from zhisuan.catalog.loader import Catalog
from zhisuan.exchange import clearing, orders, service
from zhisuan.exchange import schemas as s
from zhisuan.identity.schemas import Strict

router = APIRouter(tags=["exchange"])


class AcceptBody(Strict):
    side: Literal["tenant", "provider"] | None = Field(
        default=None, description="operators only: the side they accept for")


def catalog_of(request: Request) -> Catalog:
    catalog: Catalog = request.app.state.catalog
    return catalog


@router.post("/exchange/offers", response_model=s.OfferOut, status_code=status.HTTP_201_CREATED)
def create_offer(body: s.OfferCreate, request: Request, session: SessionDep, principal: Writer,
                 ctx: ContextDep) -> s.OfferOut:
    row = orders.create_offer(session, catalog_of(request), principal, body, ctx.clock())
    return service.offer_out(session, row)


@router.get("/exchange/offers", response_model=list[s.OfferOut])
def list_offers(session: SessionDep, principal: Reader, ctx: ContextDep, state: str | None = None) -> list[s.OfferOut]:
    service.refresh(session, ctx.clock())
    return [service.offer_out(session, row) for row in service.list_offers(session, principal, state)]


@router.get("/exchange/offers/{ref}", response_model=s.OfferOut)
def get_offer(ref: str, session: SessionDep, principal: Reader, ctx: ContextDep) -> s.OfferOut:
    service.refresh(session, ctx.clock())
    return service.offer_out(session, service.get_offer(session, principal, ref))


@router.post("/exchange/offers/{ref}/withdraw", response_model=s.OfferOut)
def withdraw_offer(ref: str, session: SessionDep, principal: Writer, ctx: ContextDep) -> s.OfferOut:
    return service.offer_out(session, service.withdraw_offer(session, principal, ref, ctx.clock()))


@router.post("/exchange/requests", response_model=s.RequestOut, status_code=status.HTTP_201_CREATED)
def create_request(body: s.RequestCreate, request: Request, session: SessionDep, principal: Writer,
                   ctx: ContextDep) -> s.RequestOut:
    row = orders.create_request(session, catalog_of(request), principal, body, ctx.clock())
    return service.request_out(session, row)


@router.get("/exchange/requests", response_model=list[s.RequestOut])
def list_requests(session: SessionDep, principal: Reader, ctx: ContextDep,
                  state: str | None = None) -> list[s.RequestOut]:
    service.refresh(session, ctx.clock())
    return [service.request_out(session, row) for row in service.list_requests(session, principal, state)]


@router.get("/exchange/requests/{ref}", response_model=s.RequestOut)
def get_request(ref: str, session: SessionDep, principal: Reader, ctx: ContextDep) -> s.RequestOut:
    service.refresh(session, ctx.clock())
    return service.request_out(session, service.get_request(session, principal, ref))


@router.post("/exchange/requests/{ref}/withdraw", response_model=s.RequestOut)
def withdraw_request(ref: str, session: SessionDep, principal: Writer, ctx: ContextDep) -> s.RequestOut:
    return service.request_out(session, service.withdraw_request(session, principal, ref, ctx.clock()))


@router.get("/exchange/book", response_model=list[s.BookLevel])
def order_book(session: SessionDep, principal: Reader, ctx: ContextDep) -> list[s.BookLevel]:
    service.refresh(session, ctx.clock())
    return service.order_book(session)


@router.post("/exchange/clear", response_model=s.ClearingOut)
def clear(body: s.ClearBody, request: Request, session: SessionDep, principal: Writer,
          ctx: ContextDep) -> s.ClearingOut:
    return clearing.run_clearing(session, catalog_of(request), principal, body, ctx.clock())


@router.get("/exchange/matches", response_model=list[s.MatchOut])
def list_matches(session: SessionDep, principal: Reader, ctx: ContextDep,
                 state: str | None = None) -> list[s.MatchOut]:
    service.refresh(session, ctx.clock())
    return service.matches_out(principal, service.list_matches(session, principal, state))


@router.get("/exchange/matches/{ref}", response_model=s.MatchOut)
def get_match(ref: str, session: SessionDep, principal: Reader, ctx: ContextDep) -> s.MatchOut:
    service.refresh(session, ctx.clock())
    return service.match_out(principal, service.get_match(session, principal, ref))


@router.post("/exchange/matches/{ref}/accept", response_model=s.MatchOut)
def accept(ref: str, body: AcceptBody, request: Request, session: SessionDep, principal: Writer,
           ctx: ContextDep) -> s.MatchOut:
    row = service.accept_match(session, catalog_of(request), principal, ref, body.side, ctx.clock())
    return service.match_out(principal, row)
