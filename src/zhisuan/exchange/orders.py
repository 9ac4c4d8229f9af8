"""Offers and requests: validation, creation, withdrawal. Every refusal names the offending field.

Never offering what is not there. An offer's devices must exist at its site, and over its window the
provider's free devices of that model must cover them: free = the provider's devices of the model
− devices of nodes leased by contracts then − quota entitlements held then (ledger rows) − what the
provider's other live offers still offer then (their devices less what accepted matches turned into
contracts, which the ledger already counts). Node offers are also refused if a contract leases one of
the nodes in the window (``ledger.lease_conflict``) or another live offer lists it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from zhisuan.catalog.loader import Catalog
from zhisuan.catalog.measurements import load_measurements
from zhisuan.catalog.models import AcceleratorModel
from zhisuan.catalog.throughput import Measurements
from zhisuan.errors import Conflict, InvalidInput
from zhisuan.exchange import models as m
from zhisuan.exchange import pricing
from zhisuan.exchange import schemas as s
from zhisuan.identity import audit
from zhisuan.identity.access import Principal, require_role
from zhisuan.identity.models import Tenant
from zhisuan.identity.service import by_ref
from zhisuan.inventory.models import Device, Node, Provider, Site
from zhisuan.inventory.service import node_by_ref
from zhisuan.ledger import service as ledger
from zhisuan.ledger.models import Allocation

LIVE_OFFER_STATES = ("open", "matched")


def resolve_model(catalog: Catalog, name: str, field: str) -> AcceleratorModel:
    model = catalog.resolve(name)
    if model is None:
        raise InvalidInput(f"unknown accelerator model '{name}'; see 'zhisuan catalog list'", field=field)
    return model


def check_window(start: datetime, end: datetime, now: datetime, start_field: str, end_field: str) -> int:
    """Hours from ``start`` to ``end`` (both on whole hours, ``end`` after ``start`` and after now)."""
    first, last = pricing.to_hours(start, start_field), pricing.to_hours(end, end_field)
    if last <= first:
        raise InvalidInput(f"{end_field} {end.isoformat()} is not after {start_field} {start.isoformat()}",
                           field=end_field)
    if end <= now:
        raise InvalidInput(f"{end_field} {end.isoformat()} is in the past", field=end_field)
    return last - first


# ----------------------------------------------------------------------------- offers


def offering_provider(session: Session, principal: Principal, ref: str | None) -> Provider:
    require_role(principal, "provider", "operator")
    if principal.role == "provider":
        own: Provider = by_ref(session, Provider, str(principal.provider_id), "provider")
        if ref is not None and ref not in (own.name, str(own.id)):
            raise InvalidInput("a provider offers only its own capacity", field="provider")
        return own
    if ref is None:
        raise InvalidInput("operators name the provider whose capacity they offer", field="provider")
    return by_ref(session, Provider, ref, "provider")  # type: ignore[no-any-return]


def offer_nodes(session: Session, site: Site, refs: Sequence[str]) -> list[Node]:
    query = (select(Node).join(Node.site).where(Site.id == site.id)
             .options(selectinload(Node.devices), selectinload(Node.site)))
    nodes = [node_by_ref(session, query, ref, f"nodes.{n}") for n, ref in enumerate(refs)]
    if len({node.id for node in nodes}) != len(nodes):
        raise InvalidInput("a node is listed twice", field="nodes")
    models = {d.model for node in nodes for d in node.devices}
    if len(models) != 1:
        raise InvalidInput("offered nodes must all carry devices of one model", field="nodes")
    return nodes


def free_devices(session: Session, provider_id: int, model: str, start: datetime, end: datetime,
                 except_offer: int | None = None) -> int:
    """The provider's devices of ``model`` not leased, held as quota, or offered in ``[start, end)``."""
    total = session.execute(select(func.count(Device.id)).join(Device.node).join(Node.site).where(
        Site.provider_id == provider_id, Device.model == model)).scalar_one()
    contract_rows = select(Allocation).where(
        Allocation.purpose == "contract", Allocation.provider_id == provider_id, Allocation.model == model,
        ledger.overlapping(start, end), Allocation.end.is_(None) | (Allocation.end > Allocation.start))
    leased, quota_milli = set(), 0
    for row in session.execute(contract_rows).scalars():
        if row.device_id is not None:
            leased.add(row.device_id)
        else:
            quota_milli += row.milli
    offered = 0
    others = session.execute(select(m.ExchangeOffer).where(
        m.ExchangeOffer.provider_id == provider_id, m.ExchangeOffer.model == model,
        m.ExchangeOffer.state.in_(LIVE_OFFER_STATES), m.ExchangeOffer.start < end, m.ExchangeOffer.end > start,
    )).scalars()
    for offer in others:
        if offer.id != except_offer:
            offered += offer.devices - matched_devices(session, offer.id, ("accepted",))
    return int(total) - len(leased) - -(-quota_milli // 1000) - offered


def matched_devices(session: Session, offer_id: int, states: Sequence[str] = m.LIVE_MATCH_STATES) -> int:
    return int(session.execute(select(func.coalesce(func.sum(m.ExchangeMatch.devices), 0)).where(
        m.ExchangeMatch.offer_id == offer_id, m.ExchangeMatch.state.in_(list(states)))).scalar_one())


def check_nodes_free(session: Session, nodes: Sequence[Node], start: datetime, end: datetime) -> None:
    clash = ledger.lease_conflict(session, [node.id for node in nodes], ledger.Window(start, end))
    if clash is not None:
        node = next(n for n in nodes if n.id == clash[0])
        raise Conflict(f"node {ledger.node_label(node)} is leased by contract C-{clash[1]} in that window",
                       field="nodes")
    ids = {node.id for node in nodes}
    offers = session.execute(select(m.ExchangeOffer).where(
        m.ExchangeOffer.capacity_kind == "nodes", m.ExchangeOffer.state.in_(LIVE_OFFER_STATES),
        m.ExchangeOffer.start < end, m.ExchangeOffer.end > start)).scalars()
    for offer in offers:
        if ids & set(offer.node_ids):
            raise Conflict(f"a node is already offered in offer {offer.id} in that window", field="nodes")


def offer_capacity(session: Session, catalog: Catalog, site: Site, body: s.OfferCreate) -> tuple[str, list[Node], int]:
    """(model key, nodes, devices) of an offer, checked against what the site has."""
    if body.nodes:
        nodes = offer_nodes(session, site, body.nodes)
        model = nodes[0].devices[0].model
        if body.model and resolve_model(catalog, body.model, "model").key != model:
            raise InvalidInput(f"the nodes carry {model}, not {body.model}", field="model")
        devices = sum(len(node.devices) for node in nodes)
        if body.devices and body.devices != devices:
            raise InvalidInput(f"the nodes carry {devices} devices, not {body.devices}", field="devices")
        return model, nodes, devices
    if not body.model:
        raise InvalidInput("an offer of devices names their accelerator model (or lists whole nodes)", field="model")
    model = resolve_model(catalog, body.model, "model").key
    if body.devices <= 0:
        raise InvalidInput("an offer of devices needs devices > 0", field="devices")
    at_site = session.execute(select(func.count(Device.id)).join(Device.node).where(
        Node.site_id == site.id, Device.model == model)).scalar_one()
    if body.devices > at_site:
        raise InvalidInput(f"site {site.name} has {at_site} {model} devices, not {body.devices}", field="devices")
    return model, [], body.devices


def create_offer(session: Session, catalog: Catalog, principal: Principal, body: s.OfferCreate,
                 now: datetime) -> m.ExchangeOffer:
    provider = offering_provider(session, principal, body.provider)
    site: Site = by_ref(session, Site, body.site, "site")
    if site.provider_id != provider.id:
        raise InvalidInput(f"site {site.name} is not provider {provider.name}'s", field="site")
    hours = check_window(body.start, body.end, now, "start", "end")
    if body.min_term_h > hours:
        raise InvalidInput(f"minimum term {body.min_term_h} h is longer than the window ({hours} h)",
                           field="min_term_h")
    model, nodes, devices = offer_capacity(session, catalog, site, body)
    ledger.lock_nodes(session, [node.id for node in site.nodes])  # serialise offers of this site's capacity
    if nodes:
        check_nodes_free(session, nodes, body.start, body.end)
    free = free_devices(session, provider.id, model, body.start, body.end)
    if devices > free:
        raise Conflict(f"only {max(free, 0)} {model} devices of {provider.name} are free to offer in that window "
                       f"(leased, held or offered already)", field="nodes" if nodes else "devices")
    floor = pricing.floor_per_device_hour(catalog, catalog.get(model), load_measurements(session),
                                          body.pricing_model, body.floor_price)
    row = m.ExchangeOffer(
        provider_id=provider.id, site_id=site.id, region=site.region, model=model,
        capacity_kind="nodes" if nodes else "devices", node_ids=[node.id for node in nodes], devices=devices,
        start=body.start, end=body.end, min_term_h=body.min_term_h, pricing_model=body.pricing_model,
        floor_price=body.floor_price, floor_device_hour=floor, closed_months=body.closed_months,
        open_months=body.open_months, penalty_rate=body.penalty_rate, state="open", revision=0,
        created_by=principal.username, created_at=now)
    session.add(row)
    session.flush()
    audit.record(session, principal, "exchange.offer.create", "offer", f"O-{row.id}", provider_id=provider.id,
                 detail={"model": model, "devices": devices, "floor_device_hour": str(floor)})
    return row


# ----------------------------------------------------------------------------- requests


def requesting_tenant(session: Session, principal: Principal, ref: str | None) -> Tenant:
    require_role(principal, "tenant", "operator")
    if principal.role == "tenant":
        own: Tenant = by_ref(session, Tenant, str(principal.tenant_id), "tenant")
        if ref is not None and ref not in (own.name, str(own.id)):
            raise InvalidInput("a tenant requests only for itself", field="tenant")
        return own
    if ref is None:
        raise InvalidInput("operators name the tenant they request for", field="tenant")
    return by_ref(session, Tenant, ref, "tenant")  # type: ignore[no-any-return]


def meets(model: AcceleratorModel, c: s.RequestConstraints) -> bool:
    memory = model.per_device_memory_gib()
    return ((c.min_memory_gib is None or (memory is not None and memory >= c.min_memory_gib))
            and (c.interconnect is None or c.interconnect.lower() in (model.interconnect or "").lower())
            and (c.stack is None or c.stack.lower() == (model.stack or "").lower()))


def acceptable_models(catalog: Catalog, body: s.RequestCreate) -> list[AcceleratorModel]:
    """The named models (each must be in the catalog), or the catalog's models meeting the
    constraints; both given: the named models that meet them."""
    named = [resolve_model(catalog, name, f"models.{n}") for n, name in enumerate(body.models)]
    if body.constraints is None:
        if not named:
            raise InvalidInput("name acceptable models or constraints they must meet", field="models")
        return list({model.key: model for model in named}.values())
    pool = named or [model for model in catalog.all() if not model.anonymised]
    chosen = [model for model in pool if meets(model, body.constraints)]
    if not chosen:
        raise InvalidInput("no catalog model meets the constraints", field="constraints")
    return list({model.key: model for model in chosen}.values())


def model_factors(catalog: Catalog, measured: Measurements, models: Sequence[AcceleratorModel],
                  normalised: bool) -> dict[str, str]:
    """Model → H100 factor (text), an operator's measured ratio first (``pricing.h100_factor``); fixed
    when the request is published, so its terms do not move under the tenant. Normalised requests need
    every model's throughput; others do without (factor 0 where neither figure exists)."""
    factors = {}
    for n, model in enumerate(models):
        if normalised or catalog.relative_throughput(model, "training-bf16", measured) is not None:
            factors[model.key] = str(pricing.h100_factor(catalog, model, measured, f"models.{n}"))
        else:
            factors[model.key] = "0"
    return factors


def create_request(session: Session, catalog: Catalog, principal: Principal, body: s.RequestCreate,
                   now: datetime) -> m.ExchangeRequest:
    tenant = requesting_tenant(session, principal, body.tenant)
    pricing.to_hours(body.earliest_start, "earliest_start")
    pricing.to_hours(body.latest_start, "latest_start")
    if body.latest_start < body.earliest_start:
        raise InvalidInput("latest_start is before earliest_start", field="latest_start")
    if body.latest_start < now:
        raise InvalidInput(f"latest_start {body.latest_start.isoformat()} is in the past", field="latest_start")
    if body.min_fill > body.amount:
        raise InvalidInput(f"min_fill {body.min_fill} exceeds the amount {body.amount}", field="min_fill")
    if body.min_fill and not body.allow_partial:
        raise InvalidInput("min_fill applies to partial fills: set allow_partial", field="min_fill")
    normalised = body.unit == "h100_eq"
    factors = model_factors(catalog, load_measurements(session), acceptable_models(catalog, body), normalised)
    devices = body.amount * pricing.DEVICES_PER_SERVER if body.unit == "servers" else body.amount
    row = m.ExchangeRequest(
        tenant_id=tenant.id, amount=body.amount, unit=body.unit, devices=devices, normalised=normalised,
        models=factors, constraints=body.constraints.model_dump(mode="json", exclude_none=True)
        if body.constraints else {}, earliest_start=body.earliest_start, latest_start=body.latest_start,
        duration_h=body.duration_h, max_price=body.max_price, regions=sorted(set(body.regions)), gang=body.gang,
        allow_partial=body.allow_partial, min_fill=body.min_fill * (8 if body.unit == "servers" else 1),
        state="open", unmatched_reason="", revision=0, created_by=principal.username, created_at=now)
    session.add(row)
    session.flush()
    audit.record(session, principal, "exchange.request.create", "request", f"R-{row.id}", tenant_id=tenant.id,
                 detail={"amount": body.amount, "unit": body.unit, "models": sorted(factors)})
    return row


def factor_of(row: m.ExchangeRequest, model: str) -> Decimal:
    return Decimal(row.models.get(model, "0"))
