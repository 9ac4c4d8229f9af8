"""A clearing round: read the open book, ask the core matcher, write the matches and their contracts.

Three steps, so that the solver (seconds) never runs inside a transaction: (1) one short read of the
open offers and requests with what remains of them, and their revisions; (2) ``zhisuan.core.matching``
(``clear`` — the optimum or the best found within the time limit — or the ``fcfs`` / ``greedy``
baselines for comparison) outside any transaction; (3) one write transaction that re-reads every
matched offer and request and skips a match whose offer or request changed meanwhile (another
revision: withdrawn, matched, expired) or whose capacity the ledger no longer has, saying why.

Each written match becomes a DRAFT contract through the market's contract lifecycle — capacity
``nodes`` when it takes whole servers of a node offer, ``quota`` (devices of the model at the
provider) otherwise — priced ``device_hour`` at the cleared price, with an acceptance deadline of
``ACCEPT_HOURS``. The match row keeps the market-cleared price (CNY per device-hour) for the index.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from zhisuan.catalog.loader import Catalog
from zhisuan.errors import DomainError, InvalidInput
from zhisuan.exchange import models as m
from zhisuan.exchange import pricing, service
from zhisuan.exchange import schemas as s
from zhisuan.exchange.orders import free_devices
from zhisuan.identity import audit
from zhisuan.identity.access import Principal, require_role
from zhisuan.inventory.models import Node, Provider, Site
from zhisuan.market import schemas as market_schemas
from zhisuan.market import service as market

ACCEPT_HOURS = 48
CONTRACT_PRICE_PLACES = Decimal("0.000001")


def matching() -> Any:
    """The pure matcher (``zhisuan.core.matching``), imported when a round runs: it is built in
    parallel, and this keeps the exchange importable (and type-checked) without it."""
    return importlib.import_module("zhisuan.core.matching")


@dataclass
class Snapshot:
    """What step (1) read: core orders, and the revisions the write step must still find."""

    offers: list[Any] = field(default_factory=list)
    requests: list[Any] = field(default_factory=list)
    offer_revisions: dict[int, int] = field(default_factory=dict)
    request_revisions: dict[int, int] = field(default_factory=dict)


def read_book(session: Session, now: datetime) -> Snapshot:
    """Step (1): every open offer and request with something left, as the matcher's values."""
    core = matching()
    snap = Snapshot()
    sites = {site.id: site for site in session.execute(select(Site)).scalars()}
    providers = {p.id: p.name for p in session.execute(select(Provider)).scalars()}
    offers = session.execute(select(m.ExchangeOffer).where(m.ExchangeOffer.state == "open")
                             .order_by(m.ExchangeOffer.id)).scalars().all()
    next_hour = -(-int(now.timestamp()) // pricing.SECONDS_PER_HOUR)  # nothing starts in the past
    for offer in offers:
        left = service.offer_remaining(session, offer)
        start = max(pricing.to_hours(offer.start, "start"), next_hour)
        if left <= 0 or start >= pricing.to_hours(offer.end, "end"):
            continue
        site = sites[offer.site_id]
        snap.offers.append(core.Offer(
            offer.id, providers[offer.provider_id], site.name, offer.region, offer.model, left, start,
            pricing.to_hours(offer.end, "end"), offer.min_term_h, offer.floor_device_hour, site.name))
        snap.offer_revisions[offer.id] = offer.revision
    requests = session.execute(select(m.ExchangeRequest).where(m.ExchangeRequest.state == "open")
                               .order_by(m.ExchangeRequest.id)).scalars().all()
    for request in requests:
        left = service.request_remaining(session, request)
        if left <= 0:
            continue
        snap.requests.append(core_request(core, request, left, next_hour))
        snap.request_revisions[request.id] = request.revision
    return snap


def core_request(core: Any, request: m.ExchangeRequest, left: int, next_hour: int) -> Any:
    """The matcher's view of what remains of a request. Its factors are 1 unless the request is
    normalised (the matcher's rule); its ``min_fill`` is a fraction of the amount (in (0, 1]): the
    stored least acceptable amount (at least 1) over what remains, 1 when partial fills are refused."""
    models = {model: Decimal(factor) if request.normalised else Decimal(1) for model, factor in request.models.items()}
    if request.normalised:
        models = {model: factor for model, factor in models.items() if factor > 0}
    min_fill = min(Decimal(1), Decimal(max(request.min_fill, 1)) / left) if request.allow_partial else Decimal(1)
    return core.Request(
        request.id, str(request.tenant_id), left, request.normalised, models,
        max(pricing.to_hours(request.earliest_start, "earliest_start"), next_hour),
        pricing.to_hours(request.latest_start, "latest_start"), request.duration_h, request.max_price,
        frozenset(request.regions) or None, request.gang, request.allow_partial, min_fill)


def solve(snap: Snapshot, body: s.ClearBody) -> Any:
    """Step (2), outside any transaction."""
    core = matching()
    try:
        if body.method == "optimal":
            return core.clear(snap.offers, snap.requests, objective=body.objective, time_limit_s=body.time_limit_s)
        baseline = core.clear_fcfs if body.method == "fcfs" else core.clear_greedy
        return baseline(snap.offers, snap.requests, objective=body.objective)
    except ValueError as error:  # the matcher's MatchingInputError names the offending order
        raise InvalidInput(f"the book cannot be cleared: {error}", field=getattr(error, "field", None)) from error


def free_nodes(session: Session, offer: m.ExchangeOffer, count: int) -> list[Node] | None:
    """``count`` of the offer's nodes that no live match of it holds, or None."""
    taken = {node_id for (ids,) in session.execute(select(m.ExchangeMatch.node_ids).where(
        m.ExchangeMatch.offer_id == offer.id, m.ExchangeMatch.state.in_(m.LIVE_MATCH_STATES))) for node_id in ids}
    nodes = [node for node_id in offer.node_ids if node_id not in taken
             and (node := session.get(Node, node_id)) is not None]
    return nodes[:count] if len(nodes) >= count else None


def capacity_of(session: Session, offer: m.ExchangeOffer, devices: int) -> market_schemas.CapacityIn:
    """Whole servers of a node offer lease as nodes; anything else is a quota of the model."""
    if offer.capacity_kind == "nodes" and offer.node_ids:
        per_node = offer.devices // len(offer.node_ids)
        if per_node and devices % per_node == 0:
            nodes = free_nodes(session, offer, devices // per_node)
            if nodes is not None:
                return market_schemas.CapacityIn(kind="nodes", nodes=[str(node.id) for node in nodes])
    return market_schemas.CapacityIn(kind="quota", model=offer.model, quota=devices)


def why_not(session: Session, snap: Snapshot, offer: m.ExchangeOffer | None, request: m.ExchangeRequest | None,
            devices: int, start: datetime, end: datetime) -> str | None:
    """Why a solved match can no longer be written (None: it can)."""
    if offer is None or offer.state != "open" or snap.offer_revisions.get(offer.id) != offer.revision:
        return "its offer changed during the clearing"
    if request is None or request.state != "open" or snap.request_revisions.get(request.id) != request.revision:
        return "its request changed during the clearing"
    if devices > service.offer_remaining(session, offer):
        return "its offer has fewer devices left than the match takes"
    if free_devices(session, offer.provider_id, offer.model, start, end, except_offer=offer.id) \
            < matched_or_zero(session, offer) + devices:
        return "the ledger no longer has the capacity free (leased or held meanwhile)"
    return None


def matched_or_zero(session: Session, offer: m.ExchangeOffer) -> int:
    """Devices of the offer already in proposed matches (not yet in the ledger)."""
    from zhisuan.exchange.orders import matched_devices

    return matched_devices(session, offer.id, ("proposed",))


def write_match(session: Session, catalog: Catalog, principal: Principal, clearing: m.ExchangeClearing,
                found: Any, snap: Snapshot, now: datetime) -> m.ExchangeMatch | str:
    """Step (3) for one match: the match row and its draft contract, or the reason it was skipped."""
    offer = session.get(m.ExchangeOffer, int(found.offer_id))
    request = session.get(m.ExchangeRequest, int(found.request_id))
    start, end = pricing.from_hours(int(found.start)), pricing.from_hours(int(found.end))
    reason = why_not(session, snap, offer, request, int(found.devices), start, end)
    if reason is not None:
        return reason
    assert offer is not None and request is not None
    price = Decimal(found.price).quantize(CONTRACT_PRICE_PLACES, ROUND_HALF_UP)
    closed, open_ = pricing.contract_months(start, end, offer.closed_months)
    try:
        with session.begin_nested():
            capacity = capacity_of(session, offer, int(found.devices))
            row = m.ExchangeMatch(
                clearing_id=clearing.id, offer_id=offer.id, request_id=request.id, tenant_id=request.tenant_id,
                provider_id=offer.provider_id, model=offer.model, region=offer.region, devices=int(found.devices),
                node_ids=[int(n) for n in capacity.nodes], start=start, end=end, price=price, state="proposed",
                deadline=now + timedelta(hours=ACCEPT_HOURS), created_at=now)
            session.add(row)
            session.flush()
            contract = market.create_contract(session, catalog, service.system_principal(principal),
                                              market_schemas.ContractCreate(
                tenant=str(request.tenant_id), providers=[] if capacity.kind == "nodes" else [str(offer.provider_id)],
                capacity=capacity, pricing_model="device_hour", unit_price=price, start=start,
                closed_months=closed, open_months=open_, penalty_rate=offer.penalty_rate,
                note=f"exchange match M-{row.id}: market-cleared price"))
            row.contract_id = contract.id
            session.flush()
    except DomainError as error:
        return f"the contract could not be drafted: {error.message}"
    return row


def settle_states(session: Session, offer_ids: set[int], request_ids: set[int], reasons: dict[int, str]) -> None:
    for offer_id in offer_ids:
        offer = session.get(m.ExchangeOffer, offer_id)
        if offer is not None and offer.state == "open" and service.offer_remaining(session, offer) <= 0:
            service.bump(offer, "matched")
    for request_id in request_ids:
        request = session.get(m.ExchangeRequest, request_id)
        if request is not None and request.state == "open":
            service.bump(request, "matched")
            request.unmatched_reason = ""
    for request_id, reason in reasons.items():
        request = session.get(m.ExchangeRequest, request_id)
        if request is not None and request.state == "open":
            request.unmatched_reason = reason[:500]


def run_clearing(session: Session, catalog: Catalog, principal: Principal, body: s.ClearBody,
                 now: datetime) -> s.ClearingOut:
    require_role(principal, "operator")
    service.refresh(session, now)
    snap = read_book(session, now)
    session.commit()  # (1) done: no transaction is open while the solver runs
    result = solve(snap, body)
    clearing = m.ExchangeClearing(
        method=body.method, objective=body.objective, status=str(result.status), value=Decimal(result.value),
        bound=None if result.bound is None else Decimal(result.bound), solve_s=float(result.solve_s),
        offers=len(snap.offers), requests=len(snap.requests), actor=principal.username, at=now)
    session.add(clearing)
    session.flush()
    written: list[m.ExchangeMatch] = []
    reasons = {int(k): str(v) for k, v in result.unmatched.items()}
    skipped = []
    for found in result.matches:
        outcome = write_match(session, catalog, principal, clearing, found, snap, now)
        if isinstance(outcome, str):
            skipped.append(f"request {found.request_id} × offer {found.offer_id}: {outcome}")
            reasons.setdefault(int(found.request_id), outcome)
        else:
            written.append(outcome)
    matched_requests = {row.request_id for row in written}
    settle_states(session, {row.offer_id for row in written}, matched_requests,
                  {k: v for k, v in reasons.items() if k not in matched_requests})
    audit.record(session, principal, "exchange.clear", "clearing", f"X-{clearing.id}",
                 detail={"method": body.method, "objective": body.objective, "matches": len(written),
                         "status": clearing.status})
    session.flush()
    return s.ClearingOut(
        id=clearing.id, method=clearing.method, objective=clearing.objective, status=clearing.status,
        value=clearing.value, bound=clearing.bound, solve_s=clearing.solve_s, offers=clearing.offers,
        requests=clearing.requests, matches=service.matches_out(principal, written),
        unmatched=[s.UnmatchedOut(request_id=k, reason=v) for k, v in sorted(reasons.items())
                   if k not in matched_requests], skipped=skipped)
