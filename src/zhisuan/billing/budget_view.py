"""The budgets in view of a usage summary, with what was spent against each in its current period.

Shown (``UsageSummaryOut.budgets``) when the summary is about one tenant — a tenant's own, or an
operator's with ``tenant=`` or ``key=`` — for the tenant and for each of its keys that has a budget (the
key asked about: always). Each entry names its budget period (``monthly``: the current UTC calendar month;
``none``: all time) and the usage recorded in it: tokens (input + output) and money, priced as the summary
and the invoice price (the default book; ``money_used`` is null when some of it has no price).

Recorded usage is what the gateways have shipped; the gateway enforces the budget against its shared
counter, which also holds requests in flight and usage not shipped yet, so it can be slightly ahead.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from zhisuan.billing import models as b
from zhisuan.billing import schemas as s
from zhisuan.core.economics.periods import budget_window, period_of
from zhisuan.identity.access import Principal
from zhisuan.identity.models import ApiKey, Tenant, User


def budgets_in_view(session: Session, principal: Principal, tenant_id: int | None, key: str | None,
                    now: datetime, summarise: Any) -> list[s.BudgetOut]:
    """See the module doc; ``summarise(start, end, tenant_id, key)`` → the summary totals of that window."""
    if principal.role == "tenant":
        tenant_id = principal.tenant_id
    elif key is not None and tenant_id is None:
        tenant_id = session.execute(select(User.tenant_id).join(ApiKey, ApiKey.user_id == User.id)
                                    .where(ApiKey.key_id == key)).scalar_one_or_none()
    if principal.role not in ("operator", "tenant") or tenant_id is None:
        return []
    tenant = session.get(Tenant, tenant_id)
    if tenant is None:
        return []
    keys = session.execute(select(ApiKey).join(User, ApiKey.user_id == User.id).where(
        User.tenant_id == tenant_id).order_by(ApiKey.key_id)).scalars().all()
    shown = [k for k in keys if k.key_id == key or (key is None and (k.token_budget is not None
                                                                     or k.money_budget is not None))]
    entries = [_entry(session, "tenant", tenant.name, tenant, tenant_id, None, now, summarise)]
    return entries + [_entry(session, "key", k.key_id, k, tenant_id, k.key_id, now, summarise) for k in shown]


def _entry(session: Session, scope: str, ref: str, row: Tenant | ApiKey, tenant_id: int, key: str | None,
           now: datetime, summarise: Any) -> s.BudgetOut:
    period = row.budget_period or "monthly"
    window = budget_window(period, now)
    start = period_of(now).start if window.end is not None else _first_use(session, tenant_id, key, now)
    end = window.end if window.end is not None else now
    totals: s.UsageSummaryRow = summarise(start, end, tenant_id, key)
    return s.BudgetOut(scope=scope, ref=ref, budget_period=period, period=window.label, start=start, end=window.end,
                       token_budget=row.token_budget, tokens_used=totals.input_tokens + totals.output_tokens,
                       money_budget=row.money_budget, money_used=totals.amount)


def _first_use(session: Session, tenant_id: int, key: str | None, now: datetime) -> datetime:
    """Start of an all-time window: the month of the first token record in scope (now's month if none)."""
    query = select(func.min(b.UsageRecord.start)).where(b.UsageRecord.source_kind == "tokens",
                                                        b.UsageRecord.tenant_id == tenant_id)
    if key is not None:
        query = query.where(b.UsageRecord.api_key_id == key)
    first = session.execute(query).scalar_one_or_none()
    first = first.replace(tzinfo=UTC) if first is not None and first.tzinfo is None else first
    return period_of(min(first or now, now)).start
