"""Token usage per API key, model, UTC day (and tenant), priced by the price book: ``GET /usage/summary``.

Counting (from the token records ``billing.token_ingest.ingest_tokens`` writes — one per non-zero side
of an event, ``tok:{event_id}:in`` / ``:out``, both with ``source_id`` = the event id):

* ``input_tokens`` / ``output_tokens`` = Σ quantity of the group's input / output records;
* ``requests`` = Σ ``requests`` of the group's records: an event's requests (1, or a gateway roll-up's
  count) are held by exactly one of its records, so a request counts once whether its event wrote one
  record or two, and the sum is additive over coarser groups.

Pricing uses the invoice's own code (``core.economics.rating.price_aggregate``) with the default
price book, on the same aggregates an invoice line is made of: per scope (tenant, provider, model,
pricing model, …), billing month and price segment (cut at book versions, and at amendments of the
contracts the month's usage names, as ``run_invoices`` cuts). Each aggregate's amount is rounded
to the fen half-up; a row's amount is the sum of its aggregates' amounts, so grouping by model (or
tenant) reproduces the invoice's token lines exactly, while rows per key or day are each rounded
on their own — ``totals`` is always priced at invoice granularity (a note says when Σ rows differs).
A row with usage the book has no price for gets ``amount`` null and a ``note``.

Scope: tenants see their own usage, providers the usage credited to them, operators everything;
only operators filter or group by tenant.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, case, func, literal, select
from sqlalchemy.orm import Session

from zhisuan.billing import models as b
from zhisuan.billing import schemas as s
from zhisuan.billing.budget_view import budgets_in_view
from zhisuan.billing.service import parse_period
from zhisuan.core.economics import metering as me
from zhisuan.core.economics import rating as ra
from zhisuan.core.economics.errors import EconomicsError
from zhisuan.core.economics.money import ZERO
from zhisuan.core.economics.periods import BillingPeriod, epoch_seconds, from_epoch, period_of, sorted_cuts
from zhisuan.core.economics.pricebook import PricingModel, Tier
from zhisuan.errors import Forbidden, InvalidInput, NotFound
from zhisuan.identity.access import Principal, require_role
from zhisuan.identity.models import ApiKey, Tenant, User
from zhisuan.identity.service import tenant_filter
from zhisuan.market import models as m
from zhisuan.market import service as market
from zhisuan.market.service import names

DIMENSIONS = ("tenant", "key", "model", "day")
MAX_DAYS = 366
DAY = timedelta(days=1)
FEN_ZERO = Decimal("0.00")
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
Piece = tuple[me.UsageScope, BillingPeriod, datetime]  # what one invoice line prices


@dataclass(frozen=True)
class SummaryQuery:
    """The parsed query: group dimensions, the half-open UTC window and the filters."""

    group_by: tuple[str, ...]
    start: datetime
    end: datetime
    tenant_id: int | None = None
    key: str | None = None
    model: str | None = None


@dataclass
class Group:
    """Running sums of one output row, and the quantities to price per invoice-line aggregate."""

    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    pieces: dict[Piece, int] = field(default_factory=dict)

    def add(self, fine: Fine, priced: tuple[BillingPeriod, datetime]) -> None:
        self.requests += fine.requests
        self.input_tokens += fine.input_tokens
        self.output_tokens += fine.output_tokens
        for pricing, quantity in ((PricingModel.INPUT_TOKENS, fine.input_tokens),
                                  (PricingModel.OUTPUT_TOKENS, fine.output_tokens)):
            if quantity:
                piece = (fine.scope(pricing), *priced)
                self.pieces[piece] = self.pieces.get(piece, 0) + quantity


@dataclass(frozen=True)
class Fine:
    """One SQL group: a scope (less its pricing model), key and time bucket."""

    tenant_id: int
    provider_id: int
    model: str
    tier: str
    site_id: int | None
    region: str | None
    term_months: int
    contract_id: int | None
    api_key_id: str | None
    bucket: int
    input_tokens: int
    output_tokens: int
    requests: int

    def scope(self, pricing: PricingModel) -> me.UsageScope:
        return me.UsageScope(str(self.tenant_id), str(self.provider_id), self.model, pricing, Tier(self.tier),
                             None if self.site_id is None else str(self.site_id), self.region, self.term_months,
                             None if self.contract_id is None else str(self.contract_id))


@dataclass(frozen=True)
class Pricing:
    """The default book (if any) as a rating context, and the price cuts of each billing month."""

    book: m.PriceBook | None
    context: ra.RatingContext | None
    cuts: dict[str, list[int]]
    problem: str | None = None


# ----------------------------------------------------------------------------- parsing


def parse_group_by(text: str, principal: Principal) -> tuple[str, ...]:
    dims = tuple(part.strip() for part in text.split(",") if part.strip())
    for dim in dims:
        if dim not in DIMENSIONS:
            raise InvalidInput(f"cannot group by '{dim}' (choose from {', '.join(DIMENSIONS)})", field="group_by")
    if len(set(dims)) != len(dims):
        raise InvalidInput("a dimension is named twice", field="group_by")
    if "tenant" in dims and not principal.is_operator:
        raise Forbidden("only operators group usage by tenant", field="group_by")
    return dims


def parse_day(text: str, name: str) -> date:
    try:
        if DATE.match(text):
            return date.fromisoformat(text)
    except ValueError:
        pass
    raise InvalidInput(f"{name} '{text}' is not a date YYYY-MM-DD", field=name)


def parse_window(period: str | None, start: str | None, end: str | None, now: datetime) -> tuple[datetime, datetime]:
    """``[start, end)`` in UTC: a billing month, or the days ``from``..``to`` (both included);
    default the current month. ``to`` defaults to today (or ``from``), ``from`` to the 1st of ``to``'s month."""
    if period is not None and (start is not None or end is not None):
        raise InvalidInput("give either period or from/to, not both", field="period")
    if period is not None:
        p = parse_period(period)
        return p.start, p.end
    if start is None and end is None:
        p = period_of(now)
        return p.start, p.end
    first = parse_day(start, "from") if start is not None else None
    last = parse_day(end, "to") if end is not None else max(now.astimezone(UTC).date(), first or date.min)
    first = first or last.replace(day=1)
    if last < first:
        raise InvalidInput(f"to {last} is before from {first}", field="to")
    if (last - first).days >= MAX_DAYS:
        raise InvalidInput(f"at most {MAX_DAYS} days at a time", field="to")
    return datetime(first.year, first.month, first.day, tzinfo=UTC), \
        datetime(last.year, last.month, last.day, tzinfo=UTC) + DAY


def visible_key(session: Session, principal: Principal, key_id: str) -> str:
    """``key_id`` if the caller may ask about it (a tenant: only its own keys); else 404."""
    owner = session.execute(select(User.tenant_id).join(ApiKey, ApiKey.user_id == User.id)
                            .where(ApiKey.key_id == key_id)).first()
    if owner is None or (principal.role == "tenant" and owner[0] != principal.tenant_id):
        raise NotFound(f"API key '{key_id}' not found", field="key")
    return key_id


def parse_query(session: Session, principal: Principal, params: dict[str, Any], now: datetime) -> SummaryQuery:
    require_role(principal, "operator", "tenant", "provider")
    dims = parse_group_by(params.get("group_by") or "", principal)
    start, end = parse_window(params.get("period"), params.get("from"), params.get("to"), now)
    tenant_id = None
    if params.get("tenant"):
        tenant_id = tenant_filter(session, principal, params["tenant"])
    key = visible_key(session, principal, params["key"]) if params.get("key") else None
    return SummaryQuery(dims, start, end, tenant_id, key, params.get("model") or None)


# ----------------------------------------------------------------------------- pricing


def months(start: datetime, end: datetime) -> list[BillingPeriod]:
    result, cursor = [], period_of(start)
    while cursor.start < end:
        result.append(cursor)
        cursor = period_of(cursor.end)
    return result


def pricing(session: Session, start: datetime, end: datetime) -> Pricing:
    """The default book and, per month, the cuts ``run_invoices`` would use (book versions and the
    amendments of contracts that the month's usage records name)."""
    try:
        book = market.default_book(session)
    except InvalidInput as error:
        return Pricing(None, None, {p.label: [] for p in months(start, end)}, error.message)
    core = market.core_book(book)
    cuts = {}
    for p in months(start, end):
        ids = session.execute(select(b.UsageRecord.contract_id).distinct().where(
            b.UsageRecord.contract_id.is_not(None), b.UsageRecord.start >= p.start,
            b.UsageRecord.start < p.end)).scalars().all()
        contracts: Sequence[m.Contract] = session.execute(
            market.contract_query().where(m.Contract.id.in_(ids))).scalars().all() if ids else []
        cuts[p.label] = sorted_cuts(core.boundaries(), *(market.core_contract(c).boundaries() for c in contracts))
    precision = core.versions[0].pflops_precision if core.versions else "bf16"
    return Pricing(book, ra.RatingContext(core, me.Throughput(precision, {})), cuts)


def bucket_bounds(start: datetime, end: datetime, price: Pricing) -> list[datetime]:
    """Starts of the time buckets: every UTC day, cut again wherever a price can change."""
    days = {epoch_seconds(start + DAY * n) for n in range((end - start) // DAY)}
    inside = {c for cuts in price.cuts.values() for c in cuts if epoch_seconds(start) < c < epoch_seconds(end)}
    return [from_epoch(x) for x in sorted(days | inside)]


def priced_at(bound: datetime, price: Pricing) -> tuple[BillingPeriod, datetime]:
    """The month of a bucket and the start of its price segment (as ``rating.aggregate_records``)."""
    period = period_of(bound)
    cuts = price.cuts[period.label]
    segment = bisect_right(cuts, epoch_seconds(bound))
    begin = max(epoch_seconds(period.start), cuts[segment - 1] if segment else epoch_seconds(period.start))
    return period, from_epoch(begin)


def amount_of(pieces: dict[Piece, int], price: Pricing) -> tuple[Decimal | None, str | None]:
    """Σ round_fen(each aggregate's exact amount), or None and why."""
    if price.context is None:
        return None, price.problem
    total = FEN_ZERO
    for (scope, period, at), quantity in pieces.items():
        try:
            total += ra.price_aggregate(ra.UsageAggregate(scope, period, at, quantity, ()), price.context).amount
        except EconomicsError as error:
            name = price.book.name if price.book else "?"
            return None, f"book {name}: {error} ({scope.model}, {scope.pricing_model})"
    return total, None


# ----------------------------------------------------------------------------- the query


def bucket_of(column: Any, bounds: Sequence[datetime]) -> ColumnElement[int]:
    if len(bounds) == 1:
        return literal(0)
    return case(*[(column < bound, n) for n, bound in enumerate(bounds[1:])], else_=len(bounds) - 1)


def fine_rows(session: Session, principal: Principal, q: SummaryQuery, bounds: Sequence[datetime]) -> list[Fine]:
    """Token usage summed per scope, key and bucket, in the database (portable SQL)."""
    r = b.UsageRecord
    scope = (r.tenant_id, r.provider_id, r.model, r.tier, r.site_id, r.region, r.term_months, r.contract_id,
             r.api_key_id)
    inner = select(*scope, r.pricing_model, r.quantity, r.requests, bucket_of(r.start, bounds).label("bucket")) \
        .where(r.source_kind == "tokens", r.start >= q.start, r.start < q.end)
    if principal.role == "tenant":
        inner = inner.where(r.tenant_id == principal.tenant_id)
    elif principal.role == "provider":
        inner = inner.where(r.provider_id == principal.provider_id)
    for column, value in ((r.tenant_id, q.tenant_id), (r.api_key_id, q.key), (r.model, q.model)):
        if value is not None:
            inner = inner.where(column == value)
    sub = inner.subquery()
    keys = [sub.c[c.key] for c in scope] + [sub.c.bucket]
    sums = [func.sum(case((sub.c.pricing_model == str(pm), sub.c.quantity), else_=0))
            for pm in (PricingModel.INPUT_TOKENS, PricingModel.OUTPUT_TOKENS)]
    query = select(*keys, *sums, func.sum(sub.c.requests)).group_by(*keys)
    return [Fine(*row[:10], int(row[10]), int(row[11]), int(row[12])) for row in session.execute(query).all()]


def summarise(session: Session, principal: Principal, q: SummaryQuery) -> s.UsageSummaryOut:
    price = pricing(session, q.start, q.end)
    bounds = bucket_bounds(q.start, q.end, price)
    fines = fine_rows(session, principal, q, bounds)
    tenants = names(session, Tenant, {f.tenant_id for f in fines})
    groups: dict[tuple[Any, ...], Group] = {}
    total = Group()
    for fine in fines:
        at = priced_at(bounds[fine.bucket], price)
        dims = {"tenant": tenants.get(fine.tenant_id), "key": fine.api_key_id, "model": fine.model,
                "day": bounds[fine.bucket].date()}
        groups.setdefault(tuple(dims[d] for d in q.group_by), Group()).add(fine, at)
        total.add(fine, at)
    rows = [row_out(dict(zip(q.group_by, key, strict=True)), group, price) for key, group in sorted(
        groups.items(), key=lambda item: [(v is None, v if v is not None else "") for v in item[0]])]
    totals = row_out({}, total, price)
    return s.UsageSummaryOut(
        group_by=list(q.group_by), start=q.start, end=q.end, book=price.book.name if price.book else None,
        currency=price.book.currency if price.book else None, rows=rows, totals=totals,
        notes=notes(rows, totals, price))


def row_out(dims: dict[str, Any], group: Group, price: Pricing) -> s.UsageSummaryRow:
    amount, note = amount_of(group.pieces, price)
    return s.UsageSummaryRow(**dims, requests=group.requests, input_tokens=group.input_tokens,
                             output_tokens=group.output_tokens, amount=amount, note=note)


def notes(rows: Sequence[s.UsageSummaryRow], totals: s.UsageSummaryRow, price: Pricing) -> list[str]:
    result = [price.problem] if price.problem else []
    amounts = [row.amount for row in rows if row.amount is not None]
    if totals.amount is not None and len(amounts) == len(rows) and sum(amounts, ZERO) != totals.amount:
        result.append("row amounts are each rounded to the fen; totals are rounded per invoice line, "
                      "as on the invoice")
    return result


def usage_summary(session: Session, principal: Principal, params: dict[str, Any], now: datetime) -> s.UsageSummaryOut:
    """``GET /usage/summary`` (see the module docstring; ``budgets``: ``billing.budget_view``)."""
    q = parse_query(session, principal, params, now)

    def totals(start: datetime, end: datetime, tenant_id: int, key: str | None) -> s.UsageSummaryRow:
        return summarise(session, principal, SummaryQuery((), start, end, tenant_id, key)).totals

    out = summarise(session, principal, q)
    out.budgets = budgets_in_view(session, principal, q.tenant_id, q.key, now, totals)
    return out
