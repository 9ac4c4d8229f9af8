"""The allocation ledger, metering, token ingestion, invoices and settlements.

The Allocation ledger is the single source of truth: metering integrates it into usage records
(``core.economics.metering``), rating prices usage records into invoice lines
(``core.economics.rating``), and settlements split invoice lines among providers. Every invoice
line stores the keys of the usage records behind it and its price source (book version or
contract terms); every usage record points back at its allocation or gateway event, and at the
invoice line that billed it (so nothing is billed twice).

Metering watermark: ``Allocation.metered_until``. A pass meters ``[max(start, metered_until),
min(end, until))`` cut at month starts, price-book versions and contract amendments, writes the
records (idempotency key ``alloc:{id}:{piece_start}``, unique) and moves the watermark with a
compare-and-set, all in one transaction — a crash loses nothing and a re-run adds nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from zhisuan.billing import ettr
from zhisuan.billing import models as b
from zhisuan.billing import schemas as s
from zhisuan.catalog.loader import Catalog
from zhisuan.core.economics import metering as me
from zhisuan.core.economics import penalties as pe
from zhisuan.core.economics import pricebook as pb
from zhisuan.core.economics import rating as ra
from zhisuan.core.economics.export import invoice_to_csv_text, invoice_to_json_obj
from zhisuan.core.economics.periods import BillingPeriod, billing_period, epoch_seconds, from_epoch
from zhisuan.core.economics.pricebook import PricingModel, Tier
from zhisuan.core.refs import is_ascii_number, row_id
from zhisuan.errors import Conflict, InvalidInput, NotFound
from zhisuan.identity import audit
from zhisuan.identity.access import Principal, require_role
from zhisuan.identity.models import Tenant
from zhisuan.identity.service import by_ref, tenant_filter
from zhisuan.inventory.models import Device, Node, Provider, Site
from zhisuan.ledger import service as ledger
from zhisuan.ledger.models import CPU_MODEL
from zhisuan.market import models as m
from zhisuan.market import service as market
from zhisuan.market.service import econ_errors, names

CHUNK = 500


# ----------------------------------------------------------------------------- allocations


def create_allocations(session: Session, principal: Principal, body: s.AllocationCreate,
                       now: datetime) -> list[b.Allocation]:
    """Hold ``milli`` of each named device of one node for a tenant (one ledger row per device),
    through the ledger (which refuses any hold that would take a device past 1000 milli)."""
    require_role(principal, "operator")
    tenant: Tenant = by_ref(session, Tenant, body.tenant, "tenant")
    node = market._resolve_nodes(session, [body.node])[0]
    window = ledger.Window(body.start or now, body.end)
    by_index = {d.index: d for d in node.devices}
    indexes = body.devices if body.devices is not None else sorted(by_index)
    if not indexes:
        raise InvalidInput(f"node {ledger.node_label(node)} has no devices", field="devices")
    for n, index in enumerate(indexes):
        if index not in by_index:
            raise InvalidInput(f"node {ledger.node_label(node)} has no device {index}", field=f"devices.{n}")
    if len(set(indexes)) != len(indexes):
        raise InvalidInput("a device is listed twice", field="devices")
    contract = _named_entitlement(session, principal, tenant, node, body, window.start)
    holder = ledger.workload_holder(session, tenant.id, node.id, window.start, body.purpose, body.ref,
                                    body.billable, contract.id if contract else None,
                                    pricing_model=body.pricing_model, tier=body.tier, term_months=body.term_months)
    rows = ledger.hold(session, holder, node, [by_index[i] for i in indexes], body.milli, window)
    audit.record(session, principal, "allocation.create", "allocation", ",".join(str(r.id) for r in rows),
                 tenant_id=tenant.id, provider_id=node.site.provider_id,
                 detail={"node": ledger.node_label(node), "devices": indexes, "milli": body.milli})
    return rows


def _named_entitlement(session: Session, principal: Principal, tenant: Tenant, node: Node,
                       body: s.AllocationCreate, start: datetime) -> m.Contract | None:
    """The contract the body names, checked: the tenant's, holding its entitlement at ``start``
    (active, or terminated and still in its notice period), and leasing this node if it leases nodes."""
    if body.contract is None:
        return None
    contract = market.get_contract(session, principal, body.contract)
    if contract.tenant_id != tenant.id or not ledger.contract_holds_at(session, contract.id, start):
        raise InvalidInput(f"contract C-{contract.id} is not an active contract of tenant {tenant.name}",
                           field="contract")
    if contract.capacity_kind == "nodes" and node.id not in contract.node_ids:
        raise InvalidInput(f"contract C-{contract.id} does not lease node {ledger.node_label(node)}",
                           field="contract")
    return contract


def allocation_query(principal: Principal):  # type: ignore[no-untyped-def]
    query = select(b.Allocation).order_by(b.Allocation.id)
    if principal.role == "tenant":
        query = query.where(b.Allocation.tenant_id == principal.tenant_id)
    elif principal.role == "provider":
        query = query.where(b.Allocation.provider_id == principal.provider_id)
    else:
        require_role(principal, "operator")
    return query


def list_allocations(session: Session, principal: Principal, tenant: str | None = None, contract: int | None = None,
                     active_at: datetime | None = None, limit: int = 1000) -> list[b.Allocation]:
    query = allocation_query(principal)
    if tenant:
        query = query.where(b.Allocation.tenant_id == tenant_filter(session, principal, tenant))
    if contract is not None:
        query = query.where(b.Allocation.contract_id == contract)
    if active_at is not None:
        query = query.where(ledger.live_at(active_at))
    return list(session.execute(query.limit(limit)).scalars())


def get_allocation(session: Session, principal: Principal, allocation_id: int) -> b.Allocation:
    row = session.execute(allocation_query(principal).where(b.Allocation.id == allocation_id)).scalar_one_or_none()
    if row is None:
        raise NotFound(f"allocation {allocation_id} not found", field="allocation")
    return row  # type: ignore[no-any-return]


def end_allocation(session: Session, principal: Principal, allocation_id: int, at: datetime | None,
                   now: datetime) -> b.Allocation:
    require_role(principal, "operator")
    row = get_allocation(session, principal, allocation_id)
    at = at or now
    if row.purpose == "contract":
        raise Conflict("a contract's entitlement ends with the contract (terminate or amend it)", field="allocation")
    if at <= row.start:
        raise InvalidInput(f"end {at.isoformat()} is not after start {row.start.isoformat()}", field="at")
    if row.end is not None and at > row.end:
        raise Conflict(f"allocation {row.id} already ends at {row.end.isoformat()}", field="at")
    ledger.release(session, [row], at)
    audit.record(session, principal, "allocation.end", "allocation", str(row.id), tenant_id=row.tenant_id,
                 provider_id=row.provider_id, detail={"at": at.isoformat()})
    return row


def allocation_outs(session: Session, rows: Sequence[b.Allocation],
                    principal: Principal | None = None) -> list[s.AllocationOut]:
    """Rows as the API shows them; a tenant ``principal`` reads node names only of nodes it leases
    (``market.nodes_named_to``); the site, where its own workload runs, it reads as on its invoices."""
    named = market.nodes_named_to(session, principal) if principal is not None else None
    tenants = names(session, Tenant, {r.tenant_id for r in rows})
    providers = names(session, Provider, {r.provider_id for r in rows})
    sites = names(session, Site, {r.site_id for r in rows if r.site_id})
    nodes = names(session, Node, {r.node_id for r in rows if r.node_id and (named is None or r.node_id in named)})
    device_ids = {r.device_id for r in rows if r.device_id}
    indexes = dict(session.execute(select(Device.id, Device.index).where(Device.id.in_(device_ids))).all()) \
        if device_ids else {}
    return [s.AllocationOut(
        id=r.id, tenant=tenants[r.tenant_id], provider=providers[r.provider_id],
        site=sites.get(r.site_id) if r.site_id else None, node=nodes.get(r.node_id) if r.node_id else None,
        device_index=indexes.get(r.device_id) if r.device_id else None, model=r.model, milli=r.milli,
        purpose=r.purpose, ref=r.ref, contract_id=r.contract_id, billable=r.billable,
        pricing_model=r.pricing_model, tier=r.tier, start=r.start, end=r.end, end_reason=r.end_reason,
        cpu_milli=r.cpu_milli, memory_mib=r.memory_mib, metered_until=r.metered_until)
        for r in rows]


# ----------------------------------------------------------------------------- metering


def throughput(catalog: Catalog, precision: str = "bf16") -> me.Throughput:
    figures = {}
    for model in catalog:
        value = model.per_device_tflops(precision)  # type: ignore[arg-type]
        if value is not None and value > 0:
            figures[model.key] = value
    return me.Throughput(precision, figures)


def price_cuts(session: Session) -> list[int]:
    """Every instant a price can change: price-book versions and contract amendments."""
    versions = session.execute(select(m.PriceBookVersion.effective_from)).scalars()
    amendments = session.execute(select(m.ContractAmendment.effective_at)).scalars()
    return sorted({epoch_seconds(t) for t in [*versions, *amendments]})


def scope_of(row: b.Allocation | b.UsageRecord) -> me.UsageScope:
    return me.UsageScope(
        str(row.tenant_id), str(row.provider_id), row.model, PricingModel(row.pricing_model), Tier(row.tier),
        None if row.site_id is None else str(row.site_id), row.region, row.term_months,
        None if row.contract_id is None else str(row.contract_id))


def meter(session: Session, catalog: Catalog, until: datetime) -> s.MeterResult:
    """Meter every billable allocation up to ``until`` (see the module docstring)."""
    until = from_epoch(epoch_seconds(until))
    rows = session.execute(select(b.Allocation).where(
        b.Allocation.billable, b.Allocation.start < until,
        or_(b.Allocation.metered_until.is_(None), b.Allocation.metered_until < until),
        or_(b.Allocation.end.is_(None), b.Allocation.metered_until.is_(None),
            b.Allocation.metered_until < b.Allocation.end)).order_by(b.Allocation.id)).scalars().all()
    cuts, rates = price_cuts(session), throughput(catalog)
    written = touched = 0
    for row in rows:
        start = row.metered_until or row.start
        end = min(row.end, until) if row.end is not None else until
        if epoch_seconds(end) <= epoch_seconds(start):
            continue
        known = row.model in rates.dense_tflops
        figures = rates if known else me.Throughput(rates.precision, {row.model: Decimal(1)})
        held = row.cpu_milli if row.device_id is None and row.model == CPU_MODEL else row.milli  # cores or devices
        with econ_errors():
            records = me.meter_allocation(me.AllocationInterval(str(row.id), scope_of(row), start, end, held),
                                          figures, cuts) if held > 0 else ()
        for record in records:
            session.add(_usage_row(record, "allocation", row.id, record.pflops_seconds if known else Decimal(0)))
        old = row.metered_until
        guard = b.Allocation.metered_until.is_(None) if old is None else b.Allocation.metered_until == old
        result = session.execute(update(b.Allocation).where(b.Allocation.id == row.id, guard)
                                 .values(metered_until=from_epoch(epoch_seconds(end)))
                                 .execution_options(synchronize_session=False))
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise Conflict("another metering pass moved this allocation's watermark; retry", field="until")
        written, touched = written + len(records), touched + 1
    try:
        session.flush()
    except IntegrityError as error:
        raise Conflict("another metering pass wrote these usage records; retry", field="until") from error
    session.expire_all()
    return s.MeterResult(until=until, allocations=touched, records=written)


def run_metering(session: Session, catalog: Catalog, principal: Principal, until: datetime | None,
                 now: datetime) -> s.MeterResult:
    require_role(principal, "operator")
    until = until or now
    if until > now:
        raise InvalidInput("cannot meter the future: until is after now", field="until")
    result = meter(session, catalog, until)
    audit.record(session, principal, "metering.run", "metering", until.isoformat(),
                 detail={"records": result.records, "allocations": result.allocations})
    return result


def _usage_row(record: me.UsageRecord, kind: str, allocation_id: int | None, pflops: Decimal) -> b.UsageRecord:
    scope = record.scope
    return b.UsageRecord(
        key=record.key, source_kind=kind, source_id=record.source_id, allocation_id=allocation_id,
        tenant_id=int(scope.tenant_id), provider_id=int(scope.provider_id),
        site_id=None if scope.site_id is None else int(scope.site_id), region=scope.region, model=scope.model,
        pricing_model=str(scope.pricing_model), tier=str(scope.tier), term_months=scope.term_months,
        contract_id=None if scope.contract_id is None else int(scope.contract_id), start=record.start,
        end=record.end, quantity=record.quantity, pflops_seconds=pflops)


def core_record(row: b.UsageRecord) -> me.UsageRecord:
    return me.UsageRecord(row.key, scope_of(row), row.start, row.end, row.quantity, row.pflops_seconds,
                          row.source_id)


def _ref_id(session: Session, model: type, ref: str, field: str) -> int:
    try:
        return int(by_ref(session, model, ref, field.rsplit(".", 1)[-1]).id)
    except NotFound as error:
        raise InvalidInput(error.message, field=field) from error


def chunks(items: Sequence[str], size: int = CHUNK) -> Iterable[Sequence[str]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def list_usage(session: Session, principal: Principal, period: str | None, tenant: str | None,
               limit: int = 1000) -> list[s.UsageOut]:
    query = select(b.UsageRecord).order_by(b.UsageRecord.id)
    if principal.role == "tenant":
        query = query.where(b.UsageRecord.tenant_id == principal.tenant_id)
    elif principal.role == "provider":
        query = query.where(b.UsageRecord.provider_id == principal.provider_id)
    if tenant:
        query = query.where(b.UsageRecord.tenant_id == tenant_filter(session, principal, tenant))
    if period:
        p = parse_period(period)
        query = query.where(b.UsageRecord.start >= p.start, b.UsageRecord.start < p.end)
    rows = list(session.execute(query.limit(limit)).scalars())
    tenants = names(session, Tenant, {r.tenant_id for r in rows})
    providers = names(session, Provider, {r.provider_id for r in rows})
    return [s.UsageOut(key=r.key, source_kind=r.source_kind, source_id=r.source_id, tenant=tenants[r.tenant_id],
                       provider=providers[r.provider_id], model=r.model, pricing_model=r.pricing_model, tier=r.tier,
                       contract_id=r.contract_id, start=r.start, end=r.end, quantity=r.quantity,
                       pflops_seconds=r.pflops_seconds, api_key_id=r.api_key_id,
                       invoice_line_id=r.invoice_line_id) for r in rows]


# ----------------------------------------------------------------------------- invoices


def parse_period(label: str) -> BillingPeriod:
    year, _, month = label.partition("-")
    # Years 1..9998: a period's end (the next month's start) must still be a datetime.
    if not (len(year) == 4 and is_ascii_number(year) and is_ascii_number(month) and 1 <= int(month) <= 12
            and 1 <= int(year) <= 9998):
        raise InvalidInput(f"period '{label}' is not YYYY-MM", field="period")
    with econ_errors():
        return billing_period(int(year), int(month))


def run_invoices(session: Session, catalog: Catalog, principal: Principal, body: s.InvoiceRun,
                 now: datetime) -> list[b.Invoice]:
    """Invoice every tenant's not-yet-invoiced usage of a closed period, and the early-termination
    penalties falling due in it (a re-run bills only late usage, as a supplementary invoice ``…-2``)."""
    require_role(principal, "operator")
    period = parse_period(body.period)
    if period.end > now:
        raise Conflict(f"period {period.label} is not over yet (it ends {period.end.isoformat()})", field="period")
    book = market.default_book(session, body.book)
    meter(session, catalog, period.end)
    rows = session.execute(select(b.UsageRecord).where(
        b.UsageRecord.invoice_line_id.is_(None), b.UsageRecord.start >= period.start,
        b.UsageRecord.start < period.end)).scalars().all()
    core = market.core_book(book)
    records, _unpriced_cpu = ra.split_unpriced_cpu([core_record(r) for r in rows], core)  # see docs: CPU usage
    penalties = due_penalties(session, period)
    if not records and not penalties:
        return []
    ctx = rating_context(session, catalog, core, records, period)
    with econ_errors():
        invoices = ra.rate_period(records, period, ctx) if records else ()
        invoices = pe.with_penalties(invoices, penalties, period, core.currency)
    invoices = ettr.with_credits(session, invoices, period, core.currency)
    tenant_names = names(session, Tenant, {int(inv.tenant_id) for inv in invoices})
    created = []
    for inv in invoices:
        tenant_id = int(inv.tenant_id)
        previous = session.execute(select(func.count(b.Invoice.id)).where(
            b.Invoice.tenant_id == tenant_id, b.Invoice.period == period.label)).scalar_one()
        number = f"INV-{tenant_names[tenant_id]}-{period.label}" + (f"-{previous + 1}" if previous else "")
        row = b.Invoice(number=number, tenant_id=tenant_id, period=period.label, period_start=period.start,
                        period_end=period.end, currency=inv.currency, total=inv.total, book_id=book.id,
                        issued_at=now, lines=[_line_row(line) for line in inv.lines])
        session.add(row)
        session.flush()
        for line_row, line in zip(row.lines, inv.lines, strict=True):
            _mark_billed(session, line_row.id, list(line.usage_record_keys))
        audit.record(session, principal, "invoice.issue", "invoice", number, tenant_id=tenant_id,
                     detail={"total": str(inv.total), "lines": len(inv.lines), "book": book.name})
        created.append(row)
    return created


def rating_context(session: Session, catalog: Catalog, core: pb.PriceBook, records: Sequence[me.UsageRecord],
                   period: BillingPeriod) -> ra.RatingContext:
    """What rating ``records`` of ``period`` needs besides them: the book, the throughput at the book's
    PFLOPS precision and the contracts the records name (invoices and the what-if replay share it)."""
    contract_ids = {int(r.scope.contract_id) for r in records if r.scope.contract_id is not None}
    contracts = {str(c.id): market.core_contract(c) for c in session.execute(
        market.contract_query().where(m.Contract.id.in_(contract_ids))).scalars()} if contract_ids else {}
    first = core.versions[0]
    precision = core.version_at(period.start).pflops_precision if first.effective_from <= period.start \
        else first.pflops_precision
    return ra.RatingContext(core, throughput(catalog, precision), contracts)


def due_penalties(session: Session, period: BillingPeriod) -> list[pe.DuePenalty]:
    """Penalties of contracts that ended in ``period`` and are not invoiced yet (see
    ``core.economics.penalties``): the provider weights are the leased devices per provider for a
    node lease, equal parts otherwise."""
    steps = session.execute(select(m.ContractTransition).where(
        m.ContractTransition.to_state.in_(("terminated", "breached")), m.ContractTransition.at >= period.start,
        m.ContractTransition.at < period.end).order_by(m.ContractTransition.id)).scalars().all()
    steps = [step for step in steps if step.penalty > 0]
    if not steps:
        return []
    ids = {step.contract_id for step in steps}
    billed = set(session.execute(select(b.InvoiceLine.contract_id).where(
        b.InvoiceLine.kind == "penalty", b.InvoiceLine.contract_id.in_(ids))).scalars())
    contracts = {c.id: c for c in session.execute(market.contract_query().where(m.Contract.id.in_(ids))).scalars()}
    due = []
    for step in steps:
        if step.contract_id in billed:
            continue
        row = contracts[step.contract_id]
        weights: dict[str, int] = {str(p): 0 if row.node_ids else 1 for p in row.provider_ids}
        for provider_id in session.execute(select(Site.provider_id).join(Node, Node.site_id == Site.id)
                                           .where(Node.id.in_(row.node_ids))).scalars() if row.node_ids else []:
            weights[str(provider_id)] = weights.get(str(provider_id), 0) + row.devices_per_node
        due.append(pe.DuePenalty(market.core_contract(row), step.penalty, weights))
    return due


def _line_row(line: ra.InvoiceLine) -> b.InvoiceLine:
    scope = line.scope
    return b.InvoiceLine(
        line_no=line.line_no, kind=line.kind, provider_id=int(scope.provider_id), model=scope.model,
        pricing_model=str(scope.pricing_model), tier=str(scope.tier),
        site_id=None if scope.site_id is None else int(scope.site_id), region=scope.region,
        contract_id=None if scope.contract_id is None else int(scope.contract_id), term_months=scope.term_months,
        usage_quantity=line.usage_quantity, billable_quantity=line.billable_quantity, unit=line.unit,
        list_price=line.list_price, discount=line.discount, unit_price=line.unit_price,
        exact_amount=line.exact_amount, amount=line.amount, currency=line.currency,
        price_source=str(line.price_source), usage_record_keys=list(line.usage_record_keys),
        description=line.description)


def _mark_billed(session: Session, line_id: int, keys: list[str]) -> None:
    marked = 0
    for chunk in chunks(keys):
        result = session.execute(update(b.UsageRecord).where(
            b.UsageRecord.key.in_(chunk), b.UsageRecord.invoice_line_id.is_(None))
            .values(invoice_line_id=line_id).execution_options(synchronize_session=False))
        marked += result.rowcount  # type: ignore[attr-defined]
    if marked != len(keys):
        raise Conflict("some usage records were invoiced concurrently; retry", field="period")


def invoice_query(principal: Principal):  # type: ignore[no-untyped-def]
    require_role(principal, "operator", "tenant")
    query = select(b.Invoice).options(selectinload(b.Invoice.lines)).order_by(b.Invoice.id)
    if principal.role == "tenant":
        query = query.where(b.Invoice.tenant_id == principal.tenant_id)
    return query


def list_invoices(session: Session, principal: Principal, period: str | None = None,
                  tenant: str | None = None) -> list[b.Invoice]:
    query = invoice_query(principal)
    if period:
        query = query.where(b.Invoice.period == parse_period(period).label)
    if tenant:
        query = query.where(b.Invoice.tenant_id == tenant_filter(session, principal, tenant))
    return list(session.execute(query).scalars())


def get_invoice(session: Session, principal: Principal, ref: str) -> b.Invoice:
    query = invoice_query(principal)
    number = row_id(ref, "invoice")
    query = query.where(b.Invoice.id == number) if number is not None else query.where(b.Invoice.number == ref)
    row = session.execute(query).scalar_one_or_none()
    if row is None:
        raise NotFound(f"invoice '{ref}' not found", field="invoice")
    return row  # type: ignore[no-any-return]


@dataclass
class Names:
    tenants: dict[int, str]
    providers: dict[int, str]
    sites: dict[int, str]
    books: dict[int, str]

    @classmethod
    def of(cls, session: Session, invoices: Sequence[b.Invoice]) -> Names:
        lines = [line for inv in invoices for line in inv.lines]
        return cls(names(session, Tenant, {i.tenant_id for i in invoices}),
                   names(session, Provider, {line.provider_id for line in lines}),
                   names(session, Site, {line.site_id for line in lines if line.site_id}),
                   names(session, m.PriceBook, {i.book_id for i in invoices}))


def invoice_out(row: b.Invoice, n: Names) -> s.InvoiceOut:
    return s.InvoiceOut(
        id=row.id, number=row.number, tenant=n.tenants[row.tenant_id], period=row.period,
        period_start=row.period_start, period_end=row.period_end, currency=row.currency, total=row.total,
        book=n.books.get(row.book_id, str(row.book_id)), issued_at=row.issued_at,
        lines=[s.InvoiceLineOut(
            line_no=line.line_no, kind=line.kind, provider=n.providers[line.provider_id], model=line.model,
            pricing_model=line.pricing_model, tier=line.tier, site=n.sites.get(line.site_id) if line.site_id else None,
            region=line.region, contract_id=line.contract_id, usage_quantity=line.usage_quantity,
            billable_quantity=line.billable_quantity, unit=line.unit, list_price=line.list_price,
            discount=line.discount, unit_price=line.unit_price, exact_amount=line.exact_amount, amount=line.amount,
            currency=line.currency, price_source=line.price_source, usage_record_keys=list(line.usage_record_keys),
            description=line.description)
            for line in row.lines])


def core_invoice(row: b.Invoice, n: Names | None = None) -> ra.Invoice:
    """The core's view of a stored invoice; with ``n``, ids are replaced by names (for export)."""
    period = parse_period(row.period)

    def label(table: dict[int, str], key: int | None) -> str | None:
        return None if key is None else (table.get(key, str(key)) if n else str(key))

    tenant = label(n.tenants, row.tenant_id) if n else str(row.tenant_id)
    lines = []
    for line in row.lines:
        scope = me.UsageScope(
            tenant or str(row.tenant_id), (label(n.providers, line.provider_id) if n else str(line.provider_id)) or "",
            line.model, PricingModel(line.pricing_model), Tier(line.tier),
            label(n.sites, line.site_id) if n else (None if line.site_id is None else str(line.site_id)),
            line.region, line.term_months, None if line.contract_id is None else f"C-{line.contract_id}")
        kind, _, rest = line.price_source.partition(":")
        ref, _, version = rest.rpartition("@")
        lines.append(ra.InvoiceLine(
            line.line_no, scope, period, line.usage_quantity, line.billable_quantity, line.unit, line.list_price,
            line.discount, line.unit_price, line.exact_amount, line.amount, line.currency,
            ra.PriceSource(kind, ref, int(version[1:] or 0)), tuple(line.usage_record_keys), line.kind,
            line.description))
    return ra.Invoice(row.number, tenant or str(row.tenant_id), period, row.currency, tuple(lines))


def export_invoice(session: Session, principal: Principal, ref: str, fmt: str) -> tuple[str, object]:
    row = get_invoice(session, principal, ref)
    core = core_invoice(row, Names.of(session, [row]))
    if fmt == "csv":
        return "text/csv", invoice_to_csv_text(core)
    if fmt == "json":
        return "application/json", invoice_to_json_obj(core)
    raise InvalidInput(f"unknown export format '{fmt}' (csv or json)", field="format")


# ----------------------------------------------------------------------------- settlements


def summarise(session: Session, period_label: str) -> ra.PeriodSummary:
    period = parse_period(period_label)
    invoices = session.execute(select(b.Invoice).where(b.Invoice.period == period.label)
                               .options(selectinload(b.Invoice.lines))).scalars().all()
    shares = {str(pid): share for pid, share in session.execute(select(Provider.id, Provider.revenue_share)).all()}
    core = [core_invoice(inv) for inv in invoices]
    with econ_errors():
        return ra.settle(core, period, shares)


def run_settlements(session: Session, principal: Principal, body: s.SettlementRun, now: datetime) -> s.MarginOut:
    """(Re)compute every provider's settlement of a period from all its invoices."""
    require_role(principal, "operator")
    summary = summarise(session, body.period)
    numbers = dict(session.execute(select(b.Invoice.number, b.Invoice.number)
                                   .where(b.Invoice.period == summary.period.label)).all())
    session.execute(delete(b.Settlement).where(b.Settlement.period == summary.period.label))
    for st in summary.settlements:
        session.add(b.Settlement(provider_id=int(st.provider_id), period=summary.period.label,
                                 currency=summary.currency, revenue=st.revenue, share=st.share, payout=st.payout,
                                 lines=[[numbers.get(inv, inv), no] for inv, no in st.lines], computed_at=now))
    session.flush()
    audit.record(session, principal, "settlement.run", "settlement", summary.period.label,
                 detail={"revenue": str(summary.revenue), "payouts": str(summary.payouts),
                         "margin": str(summary.margin)})
    return margin_out(session, summary, now)


def margin_out(session: Session, summary: ra.PeriodSummary, computed_at: datetime | None) -> s.MarginOut:
    providers = names(session, Provider, {int(st.provider_id) for st in summary.settlements})
    return s.MarginOut(
        period=summary.period.label, currency=summary.currency, revenue=summary.revenue, payouts=summary.payouts,
        margin=summary.margin, settlements=[s.SettlementOut(
            provider=providers[int(st.provider_id)], period=summary.period.label, currency=summary.currency,
            revenue=st.revenue, share=st.share, payout=st.payout, lines=[list(x) for x in st.lines],
            computed_at=computed_at) for st in summary.settlements])


def margin(session: Session, principal: Principal, period: str) -> s.MarginOut:
    require_role(principal, "operator")
    return margin_out(session, summarise(session, period), None)


def list_settlements(session: Session, principal: Principal, period: str | None) -> list[s.SettlementOut]:
    require_role(principal, "operator", "provider")
    query = select(b.Settlement).order_by(b.Settlement.period, b.Settlement.provider_id)
    if principal.role == "provider":
        query = query.where(b.Settlement.provider_id == principal.provider_id)
    if period:
        query = query.where(b.Settlement.period == parse_period(period).label)
    rows = list(session.execute(query).scalars())
    providers = names(session, Provider, {r.provider_id for r in rows})
    return [s.SettlementOut(provider=providers[r.provider_id], period=r.period, currency=r.currency,
                            revenue=r.revenue, share=r.share, payout=r.payout, lines=r.lines,
                            computed_at=r.computed_at) for r in rows]
