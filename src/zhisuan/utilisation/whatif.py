"""The operator's what-if: replay a billing period's usage with another price book and/or utilisation
(``core.economics.whatif``) beside the invoices actually issued. Reads only: one short transaction
loads the period's usage records (invoiced or not), the book, contracts and revenue shares; nothing
is metered, invoiced or written.

The replay prices usage only: early-termination penalties and ETTR credits of the issued invoices
are in the *actual* figures and not replayed.
"""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from zhisuan.billing import models as b
from zhisuan.billing.service import core_record, parse_period, rating_context, summarise
from zhisuan.catalog.loader import Catalog
from zhisuan.core.economics.rating import PeriodSummary
from zhisuan.core.economics.whatif import Scenario, WhatIf, what_if
from zhisuan.identity.access import Principal, require_role
from zhisuan.identity.models import Tenant
from zhisuan.inventory.models import Provider
from zhisuan.market import models as m
from zhisuan.market import service as market
from zhisuan.market.service import econ_errors, names
from zhisuan.utilisation.schemas import WhatIfIn, WhatIfOut, WhatIfProvider, WhatIfTenant, WhatIfTotals

HUNDRED = Decimal(100)


def _book(session: Session, body: WhatIfIn, period_label: str) -> m.PriceBook:
    """The named book; else the book of the period's last invoice; else the default book."""
    if body.book is not None:
        return market.default_book(session, body.book)
    issued = session.execute(select(b.Invoice.book_id).where(b.Invoice.period == period_label)
                             .order_by(b.Invoice.id.desc()).limit(1)).scalar_one_or_none()
    return market.default_book(session, str(issued) if issued is not None else None)


def _totals(summary: PeriodSummary) -> WhatIfTotals:
    return WhatIfTotals(revenue=summary.revenue, payouts=summary.payouts, margin=summary.margin)


def replay(session: Session, catalog: Catalog, principal: Principal, body: WhatIfIn) -> WhatIfOut:
    """The period's invoices and margin under ``body``'s scenario, beside the actual ones."""
    require_role(principal, "operator")
    period = parse_period(body.period)
    book = _book(session, body, period.label)
    rows = session.execute(select(b.UsageRecord).where(
        b.UsageRecord.start >= period.start, b.UsageRecord.start < period.end)).scalars().all()
    records = [core_record(r) for r in rows]
    shares = {str(pid): share for pid, share in session.execute(select(Provider.id, Provider.revenue_share)).all()}
    with econ_errors():
        scenario = Scenario(body.version, 1 + body.price_change_percent / HUNDRED, body.usage_factor)
        found: WhatIf = what_if(records, period, rating_context(session, catalog, market.core_book(book), records,
                                                                period), shares, scenario)
    actual = summarise(session, period.label)
    issued = session.execute(select(b.Invoice.tenant_id, b.Invoice.total)
                             .where(b.Invoice.period == period.label)).all()
    actual_by: dict[int, Decimal] = {}
    for tenant_id, total in issued:
        actual_by[tenant_id] = actual_by.get(tenant_id, Decimal(0)) + total
    replayed = {int(inv.tenant_id): inv for inv in found.invoices}
    tenant_names = names(session, Tenant, set(actual_by) | set(replayed))
    provider_ids = {int(st.provider_id) for st in (*actual.settlements, *found.summary.settlements)}
    provider_names = names(session, Provider, provider_ids)
    actual_st = {int(st.provider_id): st for st in actual.settlements}
    replay_st = {int(st.provider_id): st for st in found.summary.settlements}
    zero = Decimal("0.00")
    return WhatIfOut(
        period=period.label, currency=found.summary.currency, book=book.name, version=body.version,
        price_change_percent=body.price_change_percent, usage_factor=body.usage_factor, usage_records=len(records),
        unpriced_records=found.unpriced_records, actual=_totals(actual), what_if=_totals(found.summary),
        tenants=sorted((WhatIfTenant(
            tenant=tenant_names[t], actual=actual_by.get(t, zero),
            what_if=replayed[t].total if t in replayed else zero,
            lines=len(replayed[t].lines) if t in replayed else 0) for t in set(actual_by) | set(replayed)),
            key=lambda row: row.tenant),
        providers=sorted((WhatIfProvider(
            provider=provider_names[p],
            actual_revenue=actual_st[p].revenue if p in actual_st else zero,
            actual_payout=actual_st[p].payout if p in actual_st else zero,
            revenue=replay_st[p].revenue if p in replay_st else zero,
            payout=replay_st[p].payout if p in replay_st else zero) for p in provider_ids),
            key=lambda row: row.provider))
