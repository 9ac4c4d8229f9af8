"""Reading the exchange, withdrawing, the order book, accepting matches, and lazy upkeep.

Visibility: a provider sees its own offers and the matches on them; a tenant its own requests and the
matches on them; operators everything. Anything else answers 404, exactly like a missing id. The order
book is anonymous (depth and best prices per model and region; no ids, no counterparties).

Lazy upkeep (``refresh``, run on every read, accept and clearing): open offers whose window ended
expire; open requests whose latest start passed expire; a proposed match whose acceptance deadline
passed lapses — its draft contract goes DRAFT → CANCELLED (recorded and audited as the exchange; it
never held capacity) and its offer and request reopen for the amount it held.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_CEILING, Decimal
from typing import TypeVar

from sqlalchemy import select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from zhisuan.catalog.loader import Catalog
from zhisuan.core.economics import market_index as mi
from zhisuan.core.economics.pricebook import PricingModel
from zhisuan.core.refs import row_id
from zhisuan.errors import Conflict, InvalidInput, NotFound
from zhisuan.exchange import models as m
from zhisuan.exchange import schemas as s
from zhisuan.exchange.orders import matched_devices
from zhisuan.identity import audit
from zhisuan.identity.access import Principal, require_role
from zhisuan.identity.models import Tenant
from zhisuan.inventory.models import Node, Provider, Site
from zhisuan.ledger.service import node_label
from zhisuan.market import schemas as market_schemas
from zhisuan.market import service as market
from zhisuan.market.models import Contract

T = TypeVar("T")

# Who accepts on behalf of the exchange when both sides agreed (the contract lifecycle is operator-only).
EXCHANGE_ACTOR = "exchange"


# Who records a lapse: nobody acted, the deadline passed (refresh runs on any caller's read).
LAPSE_ACTOR = Principal(user_id=0, username=EXCHANGE_ACTOR, role="operator", scopes=frozenset())


def system_principal(on_behalf_of: Principal) -> Principal:
    return Principal(user_id=on_behalf_of.user_id, username=f"{EXCHANGE_ACTOR}:{on_behalf_of.username}"[:64],
                     role="operator", key_id=on_behalf_of.key_id)


# ----------------------------------------------------------------------------- visibility


def may_see_offer(principal: Principal, row: m.ExchangeOffer) -> bool:
    return principal.is_operator or (principal.role == "provider" and principal.provider_id == row.provider_id)


def may_see_request(principal: Principal, row: m.ExchangeRequest) -> bool:
    return principal.is_operator or (principal.role == "tenant" and principal.tenant_id == row.tenant_id)


def may_see_match(principal: Principal, row: m.ExchangeMatch) -> bool:
    return (principal.is_operator or (principal.role == "provider" and principal.provider_id == row.provider_id)
            or (principal.role == "tenant" and principal.tenant_id == row.tenant_id))


def number(ref: str, prefix: str, field: str) -> int | None:
    """The id of ``O-12`` / ``12``; None for anything that is not an id (answers 404)."""
    return row_id(ref.removeprefix(prefix), field)


def visible_row(session: Session, principal: Principal, model: type[T], ref: str, prefix: str, field: str,
                may_see: Callable[[Principal, T], bool]) -> T:
    """The row ``ref`` names if the caller may see it; otherwise 404, alike for absent and hidden."""
    key = number(ref, prefix, field)
    row = session.get(model, key) if key is not None else None
    if row is None or not may_see(principal, row):
        raise NotFound(f"{field} '{ref}' not found", field=field)
    return row


def get_offer(session: Session, principal: Principal, ref: str) -> m.ExchangeOffer:
    return visible_row(session, principal, m.ExchangeOffer, ref, "O-", "offer", may_see_offer)


def get_request(session: Session, principal: Principal, ref: str) -> m.ExchangeRequest:
    return visible_row(session, principal, m.ExchangeRequest, ref, "R-", "request", may_see_request)


def get_match(session: Session, principal: Principal, ref: str) -> m.ExchangeMatch:
    return visible_row(session, principal, m.ExchangeMatch, ref, "M-", "match", may_see_match)


def list_offers(session: Session, principal: Principal, state: str | None = None) -> list[m.ExchangeOffer]:
    query = select(m.ExchangeOffer).order_by(m.ExchangeOffer.id)
    if not principal.is_operator:
        query = query.where(m.ExchangeOffer.provider_id == (principal.provider_id if principal.role == "provider"
                                                             else -1))
    if state:
        query = query.where(m.ExchangeOffer.state == state)
    return list(session.execute(query).scalars())


def list_requests(session: Session, principal: Principal, state: str | None = None) -> list[m.ExchangeRequest]:
    query = select(m.ExchangeRequest).order_by(m.ExchangeRequest.id)
    if not principal.is_operator:
        query = query.where(m.ExchangeRequest.tenant_id == (principal.tenant_id if principal.role == "tenant"
                                                             else -1))
    if state:
        query = query.where(m.ExchangeRequest.state == state)
    return list(session.execute(query).scalars())


def list_matches(session: Session, principal: Principal, state: str | None = None) -> list[m.ExchangeMatch]:
    query = select(m.ExchangeMatch).order_by(m.ExchangeMatch.id)
    if principal.role == "provider":
        query = query.where(m.ExchangeMatch.provider_id == principal.provider_id)
    elif principal.role == "tenant":
        query = query.where(m.ExchangeMatch.tenant_id == principal.tenant_id)
    elif not principal.is_operator:
        query = query.where(m.ExchangeMatch.id == -1)
    if state:
        query = query.where(m.ExchangeMatch.state == state)
    return list(session.execute(query).scalars())


# ----------------------------------------------------------------------------- remaining amounts


def offer_remaining(session: Session, row: m.ExchangeOffer) -> int:
    return row.devices - matched_devices(session, row.id)


def request_filled(session: Session, row: m.ExchangeRequest) -> Decimal:
    """What live matches give the request, in its own unit (devices, or H100-equivalents)."""
    matches = session.execute(select(m.ExchangeMatch.model, m.ExchangeMatch.devices).where(
        m.ExchangeMatch.request_id == row.id, m.ExchangeMatch.state.in_(m.LIVE_MATCH_STATES))).all()
    if row.normalised:
        return sum((Decimal(row.models.get(model, "0")) * devices for model, devices in matches), Decimal(0))
    return Decimal(sum(devices for _, devices in matches))


def request_remaining(session: Session, row: m.ExchangeRequest) -> int:
    left = Decimal(row.devices) - request_filled(session, row)
    return max(0, int(left.to_integral_value(ROUND_CEILING)))


# ----------------------------------------------------------------------------- upkeep


def bump(row: m.ExchangeOffer | m.ExchangeRequest, state: str) -> None:
    row.state = state
    row.revision += 1


def refresh(session: Session, now: datetime) -> None:
    """Expire ended offers and requests, lapse matches past their deadline (see module doc)."""
    for offer in session.execute(select(m.ExchangeOffer).where(
            m.ExchangeOffer.state.in_(("open", "matched")), m.ExchangeOffer.end <= now)).scalars():
        bump(offer, "expired")
    for request in session.execute(select(m.ExchangeRequest).where(
            m.ExchangeRequest.state == "open", m.ExchangeRequest.latest_start < now)).scalars():
        bump(request, "expired")
    lapsing = session.execute(select(m.ExchangeMatch).where(
        m.ExchangeMatch.state == "proposed", m.ExchangeMatch.deadline <= now)).scalars().all()
    for match in lapsing:
        if not claim_lapse(session, match):
            continue  # another upkeep lapsed it meanwhile (and cancelled its draft): nothing left to do
        contract = session.get(Contract, match.contract_id) if match.contract_id else None
        if contract is not None and contract.state == "draft":
            reason = f"lapsed: exchange match M-{match.id} was not accepted by {match.deadline.isoformat()}"
            contract.note = reason
            market.cancel_draft(session, LAPSE_ACTOR, contract, match.deadline, reason, now)
        supply = session.get(m.ExchangeOffer, match.offer_id)
        demand = session.get(m.ExchangeRequest, match.request_id)
        if supply is not None and supply.state == "matched":
            bump(supply, "open" if supply.end > now else "expired")
        if demand is not None and demand.state == "matched":
            bump(demand, "open" if demand.latest_start >= now else "expired")
    session.flush()


def claim_lapse(session: Session, match: m.ExchangeMatch) -> bool:
    """PROPOSED → LAPSED only if it is still proposed in the database (a conditional UPDATE): of two
    upkeeps that both read it as proposed, the second waits on the first's row lock (PostgreSQL) and then
    updates nothing, so the draft is cancelled and the orders reopened once. Not resting on what the
    session read (or on autoflush order): a session may hold the match or its contract from earlier."""
    result = session.execute(update(m.ExchangeMatch).where(m.ExchangeMatch.id == match.id,
                                                           m.ExchangeMatch.state == "proposed")
                             .values(state="lapsed").execution_options(synchronize_session=False))
    if result.rowcount != 1:  # type: ignore[attr-defined]
        session.expire(match)
        return False
    set_committed_value(match, "state", "lapsed")
    return True


def withdraw_offer(session: Session, principal: Principal, ref: str, now: datetime) -> m.ExchangeOffer:
    require_role(principal, "provider", "operator")
    refresh(session, now)
    row = get_offer(session, principal, ref)
    if row.state != "open":
        raise Conflict(f"offer {row.id} is {row.state}; only an open offer can be withdrawn", field="state")
    if matched_devices(session, row.id, ("proposed",)):
        raise Conflict(f"offer {row.id} has matches waiting for acceptance; let them lapse or accept them first",
                       field="state")
    bump(row, "withdrawn")
    audit.record(session, principal, "exchange.offer.withdraw", "offer", f"O-{row.id}", provider_id=row.provider_id)
    return row


def withdraw_request(session: Session, principal: Principal, ref: str, now: datetime) -> m.ExchangeRequest:
    require_role(principal, "tenant", "operator")
    refresh(session, now)
    row = get_request(session, principal, ref)
    if row.state != "open":
        raise Conflict(f"request {row.id} is {row.state}; only an open request can be withdrawn", field="state")
    bump(row, "withdrawn")
    audit.record(session, principal, "exchange.request.withdraw", "request", f"R-{row.id}", tenant_id=row.tenant_id)
    return row


# ----------------------------------------------------------------------------- accepting


def accept_match(session: Session, catalog: Catalog, principal: Principal, ref: str, side: str | None,
                 now: datetime) -> m.ExchangeMatch:
    """Record one side's acceptance; with both, activate the contract (entitlement in the ledger)."""
    require_role(principal, "tenant", "provider", "operator")
    refresh(session, now)
    match = get_match(session, principal, ref)
    side = principal.role if principal.role != "operator" else side
    if side not in ("tenant", "provider"):
        raise InvalidInput("an operator accepts for one side: tenant or provider", field="side")
    if match.state == "lapsed":
        raise Conflict(f"match {match.id} lapsed at {match.deadline.isoformat()}", field="match")
    if side == "tenant":
        match.tenant_accepted_at = match.tenant_accepted_at or now
    else:
        match.provider_accepted_at = match.provider_accepted_at or now
    audit.record(session, principal, "exchange.match.accept", "match", f"M-{match.id}", tenant_id=match.tenant_id,
                 provider_id=match.provider_id, detail={"side": side})
    if match.state == "proposed" and match.tenant_accepted_at and match.provider_accepted_at:
        assert match.contract_id is not None
        market.activate_contract(session, catalog, system_principal(principal), str(match.contract_id),
                                 market_schemas.ActivateBody(at=now, reason=f"exchange match M-{match.id} accepted"),
                                 now)
        match.state = "accepted"
    session.flush()
    return match


# ----------------------------------------------------------------------------- book and outputs


@dataclass
class Depth:
    offered: int = 0
    floor: Decimal | None = None
    requested: int = 0
    cap: Decimal | None = None

    def offer(self, devices: int, floor: Decimal) -> None:
        self.offered += devices
        self.floor = floor if self.floor is None else min(self.floor, floor)

    def request(self, devices: int, cap: Decimal) -> None:
        self.requested += devices
        self.cap = cap if self.cap is None else max(self.cap, cap)


def order_book(session: Session) -> list[s.BookLevel]:
    """Depth per (model, region): devices offered and the lowest floor (CNY/device-hour); devices
    requested and the highest cap. A request counts under each model and region it accepts ("*" for
    any region); a normalised one as the devices of that model its H100-equivalents need, its cap
    per device-hour being cap × factor."""
    levels: dict[tuple[str, str], Depth] = {}
    for offer in session.execute(select(m.ExchangeOffer).where(m.ExchangeOffer.state == "open")).scalars():
        left = offer_remaining(session, offer)
        if left > 0:
            levels.setdefault((offer.model, offer.region), Depth()).offer(left, offer.floor_device_hour)
    for request in session.execute(select(m.ExchangeRequest).where(m.ExchangeRequest.state == "open")).scalars():
        left = request_remaining(session, request)
        for model, text in request.models.items():
            factor = Decimal(text)
            if request.normalised and factor <= 0:
                continue
            devices = int((left / factor).to_integral_value(ROUND_CEILING)) if request.normalised else left
            cap = (request.max_price * factor).quantize(Decimal("0.000001")) if request.normalised \
                else request.max_price
            for region in request.regions or ["*"]:
                levels.setdefault((model, region), Depth()).request(devices, cap)
    return [s.BookLevel(model=model, region=region, devices_offered=d.offered, best_floor=d.floor,
                        devices_requested=d.requested, best_cap=d.cap)
            for (model, region), d in sorted(levels.items())]


def offer_out(session: Session, row: m.ExchangeOffer) -> s.OfferOut:
    provider, site = session.get(Provider, row.provider_id), session.get(Site, row.site_id)
    nodes = [node_label(node) for node_id in row.node_ids if (node := session.get(Node, node_id)) is not None]
    return s.OfferOut(
        id=row.id, provider=provider.name if provider else str(row.provider_id),
        site=site.name if site else str(row.site_id), region=row.region, model=row.model,
        capacity_kind=row.capacity_kind, nodes=nodes, devices=row.devices, remaining=offer_remaining(session, row),
        start=row.start, end=row.end, min_term_h=row.min_term_h, pricing_model=row.pricing_model,
        floor_price=row.floor_price, floor_device_hour=row.floor_device_hour, closed_months=row.closed_months,
        open_months=row.open_months, penalty_rate=row.penalty_rate, state=row.state, created_at=row.created_at)


def request_out(session: Session, row: m.ExchangeRequest) -> s.RequestOut:
    tenant = session.get(Tenant, row.tenant_id)
    return s.RequestOut(
        id=row.id, tenant=tenant.name if tenant else str(row.tenant_id), amount=row.amount, unit=row.unit,
        devices=row.devices, normalised=row.normalised, models={k: Decimal(v) for k, v in row.models.items()},
        constraints={k: str(v) for k, v in row.constraints.items()}, earliest_start=row.earliest_start,
        latest_start=row.latest_start, duration_h=row.duration_h, max_price=row.max_price, regions=row.regions,
        gang=row.gang, allow_partial=row.allow_partial, min_fill=row.min_fill,
        remaining=request_remaining(session, row), state=row.state, unmatched_reason=row.unmatched_reason,
        created_at=row.created_at)


def match_out(principal: Principal, row: m.ExchangeMatch) -> s.MatchOut:
    """A side sees its own order's id, not the counterparty's."""
    return s.MatchOut(
        id=row.id, clearing_id=row.clearing_id,
        offer_id=row.offer_id if principal.role in ("operator", "provider") else None,
        request_id=row.request_id if principal.role in ("operator", "tenant") else None,
        model=row.model, region=row.region, devices=row.devices, start=row.start, end=row.end, price=row.price,
        state=row.state, deadline=row.deadline, tenant_accepted=row.tenant_accepted_at is not None,
        provider_accepted=row.provider_accepted_at is not None, contract_id=row.contract_id)


def matches_out(principal: Principal, rows: Sequence[m.ExchangeMatch]) -> list[s.MatchOut]:
    return [match_out(principal, row) for row in rows]


# ----------------------------------------------------------------------------- the price index


def cleared_price_points(session: Session, at: datetime) -> list[mi.PricePoint]:
    """Market-cleared prices the index may weigh at ``at``: matches cleared by then and still
    awaiting acceptance (CNY per device-hour, weighted by devices). Accepted matches are left out —
    their active contracts are already price points of ``market.service.price_points`` — and so are
    lapsed ones (a price nobody signed). The lead wires this into ``price_points``."""
    rows = session.execute(select(m.ExchangeMatch).where(
        m.ExchangeMatch.state == "proposed", m.ExchangeMatch.created_at <= at, m.ExchangeMatch.deadline > at,
    ).order_by(m.ExchangeMatch.id)).scalars()
    return [mi.PricePoint(row.model, PricingModel.DEVICE_HOUR, row.price, Decimal(row.devices),
                          f"cleared:M-{row.id}")
            for row in rows]
