"""Price books, contracts and the market index: rules independent of HTTP.

Every rule about money or time is decided by the pure core (``zhisuan.core.economics``); this
module loads rows, turns them into core values, asks the core, and writes the result. Core errors
become domain errors (``econ_errors``) so the API maps them to 4xx in one place. Ids cross into
the core as strings (``str(row.id)``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, selectinload

from zhisuan.billing import ettr
from zhisuan.billing.models import UsageRecord
from zhisuan.catalog.loader import Catalog
from zhisuan.catalog.measurements import effective_tflops, load_measurements
from zhisuan.catalog.throughput import WORKLOAD_CLASSES, Measurements
from zhisuan.core.economics import contracts as cc
from zhisuan.core.economics import market_index as mi
from zhisuan.core.economics import pricebook as pb
from zhisuan.core.economics.errors import (
    ContractStateError,
    DuplicateUsageError,
    EconomicsError,
)
from zhisuan.core.economics.periods import BillingPeriod
from zhisuan.core.refs import row_id
from zhisuan.errors import Conflict, Forbidden, InvalidInput, NotFound
from zhisuan.identity import audit
from zhisuan.identity.access import Principal, may_see_tenant, require_role
from zhisuan.identity.models import Tenant
from zhisuan.identity.service import by_ref, tenant_filter
from zhisuan.inventory.models import Device, Node, Provider, Site
from zhisuan.inventory.service import node_by_ref
from zhisuan.ledger import service as ledger
from zhisuan.ledger.models import Allocation
from zhisuan.market import models as m
from zhisuan.market import schemas as s

ACTIVE_OR_DRAFT = ("draft", "active")
FOREVER = datetime.max.replace(tzinfo=UTC)


@contextmanager
def econ_errors(prefix: str = "") -> Iterator[None]:
    """Turn the core's errors into domain errors: state/duplicates → 409, the rest → 422."""
    try:
        yield
    except (ContractStateError, DuplicateUsageError) as error:
        raise Conflict(error.message, field=_field(prefix, error.field)) from error
    except EconomicsError as error:
        raise InvalidInput(str(error) if not prefix else f"{prefix}{str(error)}",
                           field=_field(prefix, error.field)) from error


def _field(prefix: str, field: str) -> str | None:
    if not field:
        return prefix.rstrip(".: ") or None
    return f"{prefix.rstrip(': ')}.{field}" if prefix and not prefix.endswith(": ") else field


# ----------------------------------------------------------------------------- price books


def resolve_accelerator(catalog: Catalog, name: str, field: str) -> str:
    model = catalog.resolve(name)
    if model is None:
        raise InvalidInput(f"unknown accelerator model '{name}'; see 'zhisuan catalog list'", field=field)
    return model.key


def _rate_rows(session: Session, catalog: Catalog, rates: Sequence[s.RateIn]) -> list[m.PriceRate]:
    rows = []
    for n, rate in enumerate(rates):
        model = rate.model
        if rate.pricing_model in pb.CAPACITY_MODELS:
            model = resolve_accelerator(catalog, rate.model, f"rates.{n}.model")
        tenant_id = by_ref(session, Tenant, rate.tenant, "tenant").id if rate.tenant else None
        site = by_ref(session, Site, rate.site, "site") if rate.site else None
        rows.append(m.PriceRate(
            model=model, pricing_model=str(rate.pricing_model), unit_price=rate.unit_price, tenant_id=tenant_id,
            site_id=site.id if site else None, region=rate.region, spot_discount=rate.spot_discount,
            reserved_discounts=[{"min_months": d.min_months, "discount": str(d.discount)}
                                for d in rate.reserved_discounts]))
    return rows


def core_rate(row: m.PriceRate) -> pb.RateEntry:
    return pb.RateEntry(
        row.model, pb.PricingModel(row.pricing_model), row.unit_price,
        tenant_id=None if row.tenant_id is None else str(row.tenant_id),
        site_id=None if row.site_id is None else str(row.site_id), region=row.region,
        spot_discount=row.spot_discount,
        reserved_discounts=tuple(pb.TermDiscount(int(d["min_months"]), Decimal(str(d["discount"])))
                                 for d in row.reserved_discounts))


def core_book(book: m.PriceBook) -> pb.PriceBook:
    """The core's immutable view of a stored book (all versions)."""
    with econ_errors():
        return pb.PriceBook(str(book.id), tuple(
            pb.PriceBookVersion(v.version, v.effective_from, tuple(core_rate(r) for r in v.rates), book.currency,
                                v.devices_per_server, v.pflops_precision, v.note)
            for v in book.versions))


def _new_version(session: Session, catalog: Catalog, book: m.PriceBook, body: s.VersionCreate,
                 now: datetime) -> m.PriceBookVersion:
    if body.currency != book.currency:
        raise InvalidInput(f"currency mismatch: book '{book.name}' is in {book.currency}, not {body.currency}",
                           field="currency")
    effective = body.effective_from or now
    if effective < now and (book.versions or usage_since(session, effective, now)):
        # A new book too: made the default, it would re-price usage already held or metered.
        raise InvalidInput(f"a new {'version' if book.versions else 'price book'} cannot take effect in the past "
                           f"(usage since {effective.isoformat()} keeps the prices it was held at)",
                           field="effective_from")
    number = (book.versions[-1].version + 1) if book.versions else 1
    version = m.PriceBookVersion(version=number, effective_from=effective, devices_per_server=body.devices_per_server,
                                 pflops_precision=body.pflops_precision, note=body.note,
                                 rates=_rate_rows(session, catalog, body.rates))
    book.versions.append(version)
    core_book(book)  # validates: duplicate scopes, version order, currency
    return version


def usage_since(session: Session, since: datetime, now: datetime) -> bool:
    """Whether anything billable was held or used between ``since`` and ``now`` (a book taking
    effect from ``since`` would price it). Only on a platform where nothing was used since then may
    a new book be back-dated (setting up the first prices)."""
    used = session.execute(select(UsageRecord.id).where(UsageRecord.end > since).limit(1)).first()
    held = session.execute(select(Allocation.id).where(
        Allocation.billable, Allocation.start < now, ledger.overlapping(since, None),
        or_(Allocation.end.is_(None), Allocation.end > Allocation.start)).limit(1)).first()
    return used is not None or held is not None


def create_price_book(session: Session, catalog: Catalog, principal: Principal, body: s.PriceBookCreate,
                      now: datetime) -> m.PriceBook:
    require_role(principal, "operator")
    if session.execute(select(m.PriceBook.id).where(m.PriceBook.name == body.name)).first():
        raise Conflict(f"a price book named '{body.name}' already exists", field="name")
    first = session.execute(select(func.count(m.PriceBook.id))).scalar_one() == 0
    book = m.PriceBook(name=body.name, currency=body.currency, is_default=body.default or first, versions=[])
    _new_version(session, catalog, book, body, now)
    if book.is_default:
        for other in session.execute(select(m.PriceBook).where(m.PriceBook.is_default)).scalars():
            other.is_default = False
    session.add(book)
    session.flush()
    audit.record(session, principal, "pricebook.create", "pricebook", book.name,
                 detail={"rates": len(body.rates), "default": book.is_default})
    return book


def add_version(session: Session, catalog: Catalog, principal: Principal, ref: str, body: s.VersionCreate,
                now: datetime) -> m.PriceBook:
    require_role(principal, "operator")
    book = get_price_book(session, principal, ref)
    version = _new_version(session, catalog, book, body, now)
    session.flush()
    audit.record(session, principal, "pricebook.version", "pricebook", f"{book.name}@v{version.version}",
                 detail={"rates": len(body.rates), "effective_from": version.effective_from.isoformat()})
    return book


def _books_query():  # type: ignore[no-untyped-def]
    return select(m.PriceBook).options(
        selectinload(m.PriceBook.versions).selectinload(m.PriceBookVersion.rates)).order_by(m.PriceBook.id)


def list_price_books(session: Session, principal: Principal) -> list[m.PriceBook]:
    return list(session.execute(_books_query()).scalars())


def get_price_book(session: Session, principal: Principal, ref: str) -> m.PriceBook:
    number = row_id(ref, "pricebook")
    column = m.PriceBook.id if number is not None else m.PriceBook.name
    book = session.execute(_books_query().where(column == (ref if number is None else number))).scalar_one_or_none()
    if book is None:
        raise NotFound(f"price book '{ref}' not found", field="pricebook")
    return book  # type: ignore[no-any-return]


def default_book(session: Session, ref: str | None = None) -> m.PriceBook:
    if ref:
        number = row_id(ref, "book")
        column = m.PriceBook.id if number is not None else m.PriceBook.name
        query = _books_query().where(column == (ref if number is None else number))
    else:
        query = _books_query().where(m.PriceBook.is_default)
    book = session.execute(query).scalar_one_or_none()
    if book is None:
        raise InvalidInput(f"price book '{ref}' not found" if ref else
                           "no default price book: create one with 'zhisuan pricebook create'", field="book")
    return book  # type: ignore[no-any-return]


def rate_visible(principal: Principal, rate: m.PriceRate) -> bool:
    """Tenant overrides are shown to the operator and to that tenant only."""
    return rate.tenant_id is None or principal.is_operator or principal.tenant_id == rate.tenant_id


# ----------------------------------------------------------------------------- contracts


def contract_query():  # type: ignore[no-untyped-def]
    return select(m.Contract).options(selectinload(m.Contract.transitions), selectinload(m.Contract.amendments))


def may_see_contract(principal: Principal, contract: m.Contract) -> bool:
    if principal.role == "provider":
        return principal.provider_id in contract.provider_ids
    return may_see_tenant(principal, contract.tenant_id)


def nodes_named_to(session: Session, principal: Principal) -> set[int] | None:
    """The nodes whose site and node names ``principal`` may read in ledger and serving views:
    None = all (operators, providers: their views are limited to their sites already); a tenant
    only the nodes its contracts lease, since other nodes are providers' business, not the tenant's."""
    if principal.role != "tenant":
        return None
    leases = session.execute(select(m.Contract.node_ids).where(m.Contract.tenant_id == principal.tenant_id)).scalars()
    return {int(node_id) for node_ids in leases for node_id in (node_ids or [])}


def get_contract(session: Session, principal: Principal, ref: str | int) -> m.Contract:
    ref = str(ref).removeprefix("C-")
    contract = None
    number = row_id(ref, "contract")
    if number is not None:
        contract = session.execute(contract_query().where(m.Contract.id == number)).scalar_one_or_none()
    if contract is None or not may_see_contract(principal, contract):
        raise NotFound(f"contract '{ref}' not found", field="contract")
    return contract  # type: ignore[no-any-return]


def list_contracts(session: Session, principal: Principal, state: str | None = None,
                   tenant: str | None = None) -> list[m.Contract]:
    query = contract_query().order_by(m.Contract.id)
    if state:
        query = query.where(m.Contract.state == state)
    if principal.role == "tenant":
        query = query.where(m.Contract.tenant_id == principal.tenant_id)
    if tenant:
        query = query.where(m.Contract.tenant_id == tenant_filter(session, principal, tenant))
    rows = list(session.execute(query).scalars())
    return [c for c in rows if may_see_contract(principal, c)]


def core_capacity(row: m.Contract, quota: int | None = None, pflops: Decimal | None = None) -> cc.Capacity:
    return cc.Capacity(cc.CapacityKind(row.capacity_kind), row.model, tuple(str(n) for n in row.node_ids),
                       row.devices_per_node, quota if quota is not None else row.quota,
                       pflops if pflops is not None else row.pflops)


def core_terms(row: m.Contract) -> cc.ContractTerms:
    return cc.ContractTerms(
        str(row.id), str(row.tenant_id), tuple(str(p) for p in row.provider_ids), core_capacity(row),
        pb.PricingModel(row.pricing_model), row.unit_price, row.start, row.closed_months, row.open_months,
        row.notice_days, row.deposit, row.penalty_rate, row.currency, row.devices_per_server)


def core_amendment(row: m.Contract, a: m.ContractAmendment) -> cc.Amendment:
    capacity = None
    if a.quota is not None or a.pflops is not None:
        capacity = core_capacity(row, a.quota, a.pflops)
    return cc.Amendment(str(a.id), a.effective_at, a.unit_price, capacity, a.open_months, a.note)


def core_contract(row: m.Contract) -> cc.Contract:
    """The core's view of a stored contract: terms, amendments, state and history."""
    with econ_errors():
        return cc.Contract(
            core_terms(row), cc.ContractState(row.state),
            tuple(cc.Transition(cc.ContractState(t.from_state), cc.ContractState(t.to_state), t.at, t.reason,
                                t.penalty, t.deposit_applied, t.amount_due, t.deposit_refund)
                  for t in row.transitions),
            tuple(core_amendment(row, a) for a in row.amendments))


def final_terms(row: m.Contract) -> cc.ContractTerms:
    """Terms after every recorded amendment (what decides the contract's end)."""
    contract = core_contract(row)
    return contract.terms_at(row.amendments[-1].effective_at if row.amendments else row.start)


def contract_window(row: m.Contract) -> tuple[datetime, datetime]:
    """``[start, end)`` during which the contract holds its capacity (ended contracts: until ended_at)."""
    return row.start, row.ended_at if row.ended_at is not None else final_terms(row).end


def _resolve_nodes(session: Session, refs: list[str]) -> list[Node]:
    every_node = select(Node).join(Node.site).options(selectinload(Node.devices), selectinload(Node.site))
    nodes = [node_by_ref(session, every_node, ref, f"capacity.nodes.{n}") for n, ref in enumerate(refs)]
    if len({node.id for node in nodes}) != len(nodes):
        raise InvalidInput("a node is listed twice", field="capacity.nodes")
    return nodes


def node_label(node: Node) -> str:
    return ledger.node_label(node)


def check_exclusive_overlap(session: Session, node_ids: Sequence[int], start: datetime, end: datetime,
                            exclude_contract: int | None = None) -> None:
    """409 naming the node if another contract leases any of these nodes in ``[start, end)`` — per
    the ledger's lease rows: an active contract, or a terminated one until its notice period ends."""
    clash = ledger.lease_conflict(session, node_ids, ledger.Window(start, end), except_contract=exclude_contract)
    if clash is None:
        return
    node_id, other, other_start, other_end = clash
    node = session.get(Node, node_id)
    label = node_label(node) if node else str(node_id)
    until = other_end.isoformat() if other_end else "open end"
    raise Conflict(f"node {label} is already leased exclusively by contract C-{other} "
                   f"from {other_start.isoformat()} to {until}", field="capacity.nodes")


# ----------------------------------------------------------------------------- contract entitlements


def entitlement_milli(catalog: Catalog, row: m.Contract, capacity: cc.Capacity,
                      measured: Measurements | None = None) -> int:
    """Milli-devices a quota/PFLOPS entitlement holds (PFLOPS: at the model's effective BF16 TFLOPS —
    an operator's measured ratio × the H100's 989.4 when recorded, else the catalog's dense BF16
    figure — rounded half up to a thousandth of a device)."""
    if capacity.kind == cc.CapacityKind.PFLOPS:
        assert capacity.pflops is not None
        tflops = effective_tflops(catalog, catalog.get(row.model), measured or {})
        if tflops is None:
            raise InvalidInput(f"the catalog has no dense bf16 figure for {row.model} and no operator measured one",
                               field="capacity.model")
        return int((capacity.pflops * 1_000_000 / tflops).quantize(Decimal(1), ROUND_HALF_UP))
    return capacity.quota * 1000


def contract_holder(row: m.Contract) -> ledger.Holder:
    return ledger.Holder(row.tenant_id, "contract", f"contract:C-{row.id}", row.id, True, row.pricing_model,
                         "reserved", row.closed_months + row.open_months)


def hold_entitlement(session: Session, catalog: Catalog, row: m.Contract, start: datetime, end: datetime) -> None:
    """The ledger rows of a contract's entitlement over ``[start, end)``: an exclusive lease of its
    nodes, or one quota row per stretch of unchanged capacity (split at amendments)."""
    if end <= start:
        return
    window = ledger.Window(start, end)
    if row.capacity_kind == "nodes":
        nodes = session.execute(select(Node).where(Node.id.in_(row.node_ids)).order_by(Node.id)
                                .options(selectinload(Node.devices), selectinload(Node.site))).scalars().all()
        ledger.hold_lease(session, contract_holder(row), nodes, window)
        return
    contract = core_contract(row)
    measured = load_measurements(session)
    cuts = sorted({a.effective_at for a in row.amendments if start < a.effective_at < end})
    for a, z in zip([start, *cuts], [*cuts, end], strict=True):
        milli = entitlement_milli(catalog, row, contract.terms_at(a).capacity, measured)
        ledger.hold_quota(session, contract_holder(row), row.provider_ids[0], row.model, milli, ledger.Window(a, z))


def create_contract(session: Session, catalog: Catalog, principal: Principal, body: s.ContractCreate) -> m.Contract:
    require_role(principal, "operator")
    tenant: Tenant = by_ref(session, Tenant, body.tenant, "tenant")
    providers = [by_ref(session, Provider, ref, "provider") for ref in body.providers]
    cap = body.capacity
    node_ids: list[int] = []
    devices_per_node, model = 8, cap.model
    if cap.kind == "nodes":
        if not cap.nodes:
            raise InvalidInput("node capacity needs at least one node", field="capacity.nodes")
        nodes = _resolve_nodes(session, cap.nodes)
        models = {d.model for node in nodes for d in node.devices}
        counts = {len(node.devices) for node in nodes}
        if len(models) != 1 or len(counts) != 1 or 0 in counts:
            raise InvalidInput("leased nodes must all carry the same number of devices of one model",
                               field="capacity.nodes")
        model, devices_per_node = models.pop(), counts.pop()
        if cap.model and resolve_accelerator(catalog, cap.model, "capacity.model") != model:
            raise InvalidInput(f"the nodes carry {model}, not {cap.model}", field="capacity.model")
        node_providers = sorted({node.site.provider_id for node in nodes})
        if providers and sorted(p.id for p in providers) != node_providers:
            raise InvalidInput("providers must be the owners of the leased nodes (or be left out)",
                               field="providers")
        provider_ids, node_ids = node_providers, [node.id for node in nodes]
    else:
        if not cap.model:
            raise InvalidInput(f"{cap.kind} capacity needs an accelerator model", field="capacity.model")
        model = resolve_accelerator(catalog, cap.model, "capacity.model")
        if not providers:
            raise InvalidInput(f"{cap.kind} capacity needs its provider(s)", field="providers")
        provider_ids = [p.id for p in providers]
        if cap.kind == "pflops" and cap.pflops is None:
            raise InvalidInput("pflops capacity needs capacity.pflops", field="capacity.pflops")
        if cap.kind == "quota" and cap.quota <= 0:
            raise InvalidInput("quota capacity needs capacity.quota > 0", field="capacity.quota")
    assert model is not None
    check_sla_capacity(cap.kind, body.ettr_sla)
    row = m.Contract(
        tenant_id=tenant.id, provider_ids=provider_ids, capacity_kind=cap.kind, model=model, node_ids=node_ids,
        devices_per_node=devices_per_node, quota=cap.quota, pflops=cap.pflops, pricing_model=body.pricing_model,
        unit_price=body.unit_price, currency=body.currency, start=body.start, closed_months=body.closed_months,
        open_months=body.open_months, notice_days=body.notice_days, deposit=body.deposit,
        penalty_rate=body.penalty_rate, devices_per_server=body.devices_per_server, state="draft", note=body.note,
        ettr_sla=ettr.stored_sla(body.ettr_sla), transitions=[], amendments=[])
    if body.pricing_model == "pflops_year" and cap.kind != "pflops":
        row.pflops = capacity_pflops(catalog, model, (len(node_ids) * devices_per_node) or cap.quota,
                                     measured=load_measurements(session))
    with econ_errors():
        terms = core_terms(row)
    if body.currency != "CNY":
        raise InvalidInput(f"currency mismatch: contracts are billed in CNY, not {body.currency}", field="currency")
    if node_ids:
        check_exclusive_overlap(session, node_ids, terms.start, terms.end)
    session.add(row)
    session.flush()
    audit.record(session, principal, "contract.create", "contract", f"C-{row.id}", tenant_id=tenant.id,
                 provider_id=provider_ids[0], detail={"pricing_model": row.pricing_model,
                                                      "unit_price": str(row.unit_price)})
    return row


def check_sla_capacity(kind: str, sla: s.EttrSlaIn | None) -> None:
    """An ETTR service level measures the jobs on the contract's leased nodes (``billing.ettr``): the
    ledger ties only those to a contract, so quota and PFLOPS contracts cannot carry one."""
    if sla is not None and kind != "nodes":
        raise InvalidInput(f"an ETTR service level needs a node lease (capacity.kind nodes), not {kind}",
                           field="ettr_sla")


def capacity_pflops(catalog: Catalog, model: str, devices: int, precision: str = "bf16",
                    measured: Measurements | None = None) -> Decimal:
    """PFLOPS of ``devices`` devices at their effective TFLOPS for training at ``precision``: an operator's
    measured ratio first (``catalog.measurements.effective_tflops``), else the catalog's dense figure."""
    training = f"training-{precision}"
    workload_class = training if training in WORKLOAD_CLASSES else f"inference-{precision}"
    tflops = effective_tflops(catalog, catalog.get(model), measured or {}, workload_class)
    if tflops is None:
        raise InvalidInput(f"the catalog has no dense {precision} figure for {model} and no operator measured one",
                           field="capacity.model")
    return (tflops * devices / 1000).quantize(Decimal("0.000001"), rounding=ROUND_HALF_UP)


def _record_transition(session: Session, principal: Principal, row: m.Contract, before: cc.Contract,
                       after: cc.Contract, now: datetime) -> None:
    for step in after.transitions[len(before.transitions):]:
        row.transitions.append(m.ContractTransition(
            from_state=str(step.from_state), to_state=str(step.to_state), at=step.at, recorded_at=now,
            actor=principal.username, reason=step.reason, penalty=step.penalty,
            deposit_applied=step.deposit_applied, amount_due=step.amount_due, deposit_refund=step.deposit_refund))
    row.state = str(after.state)
    row.ended_at = after.ended_at
    audit.record(session, principal, f"contract.{after.state}", "contract", f"C-{row.id}", tenant_id=row.tenant_id,
                 provider_id=row.provider_ids[0],
                 detail={"at": after.transitions[-1].at.isoformat(), "penalty": str(after.transitions[-1].penalty)})


def cancel_draft(session: Session, principal: Principal, row: m.Contract, at: datetime, reason: str,
                 now: datetime) -> None:
    """DRAFT → CANCELLED (a draft nobody signed; it never held capacity), recorded and audited."""
    before = core_contract(row)
    with econ_errors():
        after = cc.cancel(before, at, reason)
    _record_transition(session, principal, row, before, after, now)


def activate_contract(session: Session, catalog: Catalog, principal: Principal, ref: str, body: s.ActivateBody,
                      now: datetime) -> m.Contract:
    require_role(principal, "operator")
    row = get_contract(session, principal, ref)
    before = core_contract(row)
    with econ_errors():
        after = cc.activate(before, body.at or now, body.reason)
    _record_transition(session, principal, row, before, after, now)
    hold_entitlement(session, catalog, row, *contract_window(row))  # the ledger refuses an overlapping lease
    return row


def end_contract(session: Session, principal: Principal, ref: str, action: str,
                 body: s.TerminateBody | s.BreachBody | s.ExpireBody, now: datetime) -> m.Contract:
    """Terminate (tenant or operator), breach or expire (operator); the contract's entitlement ends
    at ``ended_at`` (a termination with notice keeps holding its nodes until then)."""
    require_role(principal, *(("operator", "tenant") if action == "terminate" else ("operator",)))
    row = get_contract(session, principal, ref)
    before = core_contract(row)
    with econ_errors():
        if isinstance(body, s.TerminateBody):
            after = cc.terminate(before, body.notice_at or now, body.effective_at, body.reason)
        elif isinstance(body, s.BreachBody):
            after = cc.breach(before, body.at or now, body.reason)
        else:
            after = cc.expire(before, body.at or now)
    assert after.ended_at is not None
    ledger.release_contract(session, row.id, after.ended_at)
    _record_transition(session, principal, row, before, after, now)
    return row


def amend_contract(session: Session, catalog: Catalog, principal: Principal, ref: str, body: s.AmendmentCreate,
                   now: datetime) -> m.Contract:
    require_role(principal, "operator")
    row = get_contract(session, principal, ref)
    if (body.quota is not None and row.capacity_kind != "quota") or (
            body.pflops is not None and row.capacity_kind != "pflops"):
        raise InvalidInput(f"a {row.capacity_kind} contract cannot change its "
                           f"{'quota' if body.quota is not None else 'pflops'}", field="quota")
    if all(v is None for v in (body.unit_price, body.quota, body.pflops, body.open_months, body.ettr_sla)):
        raise InvalidInput("an amendment must change something", field="effective_at")
    check_sla_capacity(row.capacity_kind, body.ettr_sla)
    before = core_contract(row)
    amendment = m.ContractAmendment(effective_at=body.effective_at, unit_price=body.unit_price, quota=body.quota,
                                    pflops=body.pflops, open_months=body.open_months, note=body.note,
                                    ettr_sla=ettr.stored_sla(body.ettr_sla), actor=principal.username,
                                    recorded_at=now)
    terms_change = any(v is not None for v in (body.unit_price, body.quota, body.pflops, body.open_months))
    with econ_errors():
        after = cc.amend(before, core_amendment(row, amendment))
    new_end = after.terms_at(body.effective_at).end
    if row.node_ids and row.state == "active":
        check_exclusive_overlap(session, row.node_ids, row.start, new_end, exclude_contract=row.id)
    row.amendments.append(amendment)
    session.flush()
    if row.state == "active" and terms_change:  # a new service level alone holds nothing new
        ledger.release_contract(session, row.id, body.effective_at)
        hold_entitlement(session, catalog, row, body.effective_at, new_end)
    audit.record(session, principal, "contract.amend", "contract", f"C-{row.id}", tenant_id=row.tenant_id,
                 provider_id=row.provider_ids[0], detail=body.model_dump(mode="json", exclude_none=True))
    return row


def penalty_quote(session: Session, principal: Principal, ref: str, at: datetime) -> s.PenaltyQuote:
    row = get_contract(session, principal, ref)
    contract = core_contract(row)
    with econ_errors():
        terms = contract.terms_at(at)
        penalty = contract.penalty_at(at)
        month = cc.contract_month(contract, at)
    applied = min(terms.deposit, penalty)
    return s.PenaltyQuote(
        contract_id=row.id, at=at, contract_month=month, in_closed_period=at < terms.closed_end,
        remaining_closed_value=contract.remaining_closed_value(at).quantize(Decimal("0.01"), ROUND_HALF_UP),
        penalty_rate=terms.penalty_rate, penalty=penalty, deposit=terms.deposit, amount_due=penalty - applied,
        deposit_refund=terms.deposit - applied)


def sla_out(stored: dict[str, Any] | None) -> s.EttrSlaIn | None:
    return None if stored is None else s.EttrSlaIn.model_validate(stored)


def names(session: Session, model: type, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    return dict(session.execute(select(model.id, model.name).where(model.id.in_(ids))).all())  # type: ignore[attr-defined]


def contract_out(session: Session, row: m.Contract, period: BillingPeriod | None = None) -> s.ContractOut:
    """The contract as the API shows it; with ``period``, the ETTR measured in it (so far) under its SLA."""
    contract = core_contract(row)
    terms = contract.terms_at(row.ended_at or max([row.start, *[a.effective_at for a in row.amendments]]))
    tenants = names(session, Tenant, {row.tenant_id})
    providers = names(session, Provider, set(row.provider_ids))
    node_labels = []
    for node_id in row.node_ids:
        node = session.get(Node, node_id)
        node_labels.append(node_label(node) if node else f"#{node_id}")
    return s.ContractOut(
        id=row.id, tenant=tenants.get(row.tenant_id, str(row.tenant_id)),
        providers=[providers.get(p, str(p)) for p in row.provider_ids], capacity_kind=row.capacity_kind,
        model=row.model, nodes=node_labels, devices=terms.capacity.devices, quota=terms.capacity.quota,
        pflops=terms.capacity.pflops, pricing_model=row.pricing_model, unit_price=terms.unit_price,
        currency=row.currency, start=row.start, closed_end=terms.closed_end, end=terms.end,
        closed_months=row.closed_months, open_months=terms.open_months, notice_days=row.notice_days,
        deposit=row.deposit, penalty_rate=row.penalty_rate, devices_per_server=row.devices_per_server,
        state=row.state, ended_at=row.ended_at,
        committed_value=contract.committed_value().quantize(Decimal("0.01"), ROUND_HALF_UP), note=row.note,
        ettr_sla=sla_out(ettr.sla_in_force(row, period.end if period is not None else FOREVER)),
        ettr=ettr.measured(session, row, period) if period is not None else None,
        transitions=[s.TransitionOut.model_validate(t, from_attributes=True) for t in row.transitions],
        amendments=[s.AmendmentOut.model_validate(a, from_attributes=True) for a in row.amendments])


# ----------------------------------------------------------------------------- index and breach risk


def price_points(session: Session, at: datetime) -> tuple[list[m.Contract], list[mi.PricePoint]]:
    """Observed prices at ``at``: contracts holding capacity then (active, or terminated and still
    in their notice period; terms in force) and the default book's list prices.

    A list price (a rate of the default book in force, without tenant/site/region scope) weighs as
    many devices of its model as the fleet holds (at least one), so it counts like listed supply.
    """
    candidates = session.execute(contract_query().where(m.Contract.state != "draft", m.Contract.start <= at)).scalars()
    rows = [row for row in candidates if core_contract(row).holds_capacity_at(at)]
    contracts = [core_contract(row) for row in rows]
    points = mi.contract_price_points(contracts, at)
    book = session.execute(_books_query().where(m.PriceBook.is_default)).scalar_one_or_none()
    if book is not None and any(v.effective_from <= at for v in book.versions):
        version = core_book(book).version_at(at)
        fleet = dict(session.execute(select(Device.model, func.count(Device.id)).group_by(Device.model)).all())
        for rate in version.rates:
            if rate.scope == (None, None, None):
                points.append(mi.PricePoint(rate.model, rate.pricing_model, rate.unit_price,
                                            Decimal(max(1, fleet.get(rate.model, 0))),
                                            f"listing:{book.name}@v{version.version}", version.currency))
    # Prices the exchange cleared that await both signatures (signed ones are contracts above).
    from zhisuan.exchange.service import cleared_price_points  # the exchange builds on the market

    points += cleared_price_points(session, at)
    return rows, points


def market_index(session: Session, principal: Principal, at: datetime) -> list[s.IndexEntryOut]:
    _, points = price_points(session, at)
    with econ_errors():
        index = mi.price_index(points)
    return [s.IndexEntryOut(model=e.model, pricing_model=str(e.pricing_model), price=e.price, low=e.low,
                            high=e.high, points=e.points, weight=e.weight) for e in index.values()]


def breach_risk(session: Session, principal: Principal, at: datetime) -> list[s.BreachRiskOut]:
    if principal.role not in ("operator", "tenant", "provider"):
        raise Forbidden("no access to breach risk")
    rows, points = price_points(session, at)
    with econ_errors():
        index = mi.price_index(points)
        risks = mi.breach_risk_report([core_contract(r) for r in rows], index, at)
    by_id = {row.id: row for row in rows}
    tenants = names(session, Tenant, {r.tenant_id for r in rows})
    providers = names(session, Provider, {p for r in rows for p in r.provider_ids})
    result = []
    for risk in risks:
        row = by_id[int(risk.contract_id)]
        if not may_see_contract(principal, row):
            continue
        result.append(s.BreachRiskOut(
            contract_id=row.id, tenant=tenants[row.tenant_id], providers=[providers[p] for p in row.provider_ids],
            model=risk.model, pricing_model=str(risk.pricing_model), contract_price=risk.contract_price,
            index_price=risk.index_price, premium=risk.premium.quantize(Decimal("0.0001"), ROUND_HALF_UP),
            penalty_rate=risk.penalty_rate, remaining_value=risk.remaining_value,
            replacement_value=risk.replacement_value, penalty=risk.penalty, tenant_saving=risk.tenant_saving,
            provider_exposure=risk.provider_exposure))
    return result
