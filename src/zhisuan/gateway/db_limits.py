"""Model scopes and limits stored with API keys and tenants (``api_keys.models/rpm/tpm/token_budget/
money_budget/budget_period``, ``tenants.rpm/tpm/token_budget/money_budget/budget_period``), for
``DbKeyAuthority(sessions, limits_for=limits_from_db(sessions))``.

A money budget is a Decimal in CNY with at most 2 decimal places (the API refuses more), so its value in
micro-CNY (``Limits.money_budget_micros``, the unit ``gateway.db_prices`` prices tokens in) is exact.

The read happens where the authority verifies a key: in its worker thread, once per cache fill. There is
no database call per request, so a change to a key's or tenant's limits (like a revocation) reaches each
gateway process within the authority's ``ttl_s`` (5 s by default): a cached grant may be that stale.
The counters themselves live in the rate limiter (Redis when shared), so limits hold across processes.
"""

from __future__ import annotations

from decimal import ROUND_FLOOR, Decimal
from typing import Any

from sqlalchemy import select

from zhisuan.gateway.keys import LimitsFor
from zhisuan.gateway.limits import MICROS
from zhisuan.gateway.protocols import UNLIMITED, Limits


def money_micros(amount: Decimal | None) -> int | None:
    """CNY → micro-CNY, exact; a (non-API) value with more than 6 decimals rounds down to the micro."""
    if amount is None:
        return None
    return int((amount * MICROS).to_integral_value(rounding=ROUND_FLOOR))


def _limits(row: Any) -> Limits:
    if row is None:
        return UNLIMITED
    limits = Limits(rpm=row.rpm, tpm=row.tpm, token_budget=row.token_budget,
                    money_budget_micros=money_micros(row.money_budget), budget_period=row.budget_period or "monthly")
    return UNLIMITED if limits == UNLIMITED else limits


def limits_from_db(sessions: Any) -> LimitsFor:
    """A ``LimitsFor`` reading the key's model scope and limits and its tenant's limits from the
    database behind ``sessions`` (a ``sessionmaker``). Keys without a tenant get no tenant limits."""
    from zhisuan.identity.models import ApiKey, Tenant

    def limits_for(principal: Any) -> tuple[frozenset[str] | None, Limits, Limits]:
        with sessions() as session:
            key = session.execute(select(ApiKey).where(ApiKey.key_id == principal.key_id)).scalar_one_or_none()
            tenant = session.get(Tenant, principal.tenant_id) if principal.tenant_id is not None else None
            models = frozenset(key.models) if key is not None and key.models is not None else None
            return models, _limits(key), _limits(tenant)

    return limits_for
