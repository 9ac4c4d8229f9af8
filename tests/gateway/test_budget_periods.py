"""Budgets count per period and start again from zero at the UTC period boundary, exactly: the counter's
name carries the period, so no sweeper is needed — in one process and in Redis. The period is stored with
keys and tenants ("monthly" by default, or "none"), and the database refuses any other."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy.exc

from tests.gateway.test_limits import needs_redis
from tests.gateway.test_limits_db_money import make_world
from zhisuan.core.economics.errors import InvalidTimeError
from zhisuan.core.economics.periods import budget_window
from zhisuan.gateway.db_limits import limits_from_db
from zhisuan.gateway.limits import InMemoryLimitStore, LimitStore, RedisLimitStore, TokenBucketLimiter
from zhisuan.gateway.protocols import KeyGrant, Limits, Reservation
from zhisuan.gateway.redis_access import PipelinedRedis
from zhisuan.identity.keys import KeyVerifier
from zhisuan.identity.models import ApiKey, Tenant
from zhisuan.store.base import make_engine, make_session_factory, transaction

LAST_INSTANT = datetime(2026, 1, 31, 23, 59, 59, 999000, tzinfo=UTC)
NEXT_MONTH = datetime(2026, 2, 1, tzinfo=UTC)


def test_the_monthly_window_ends_at_the_first_instant_of_the_next_utc_month() -> None:
    assert budget_window("monthly", LAST_INSTANT) == budget_window("monthly", datetime(2026, 1, 1, tzinfo=UTC))
    assert budget_window("monthly", LAST_INSTANT).end == NEXT_MONTH
    assert budget_window("monthly", NEXT_MONTH).label == "2026-02"
    assert budget_window("monthly", NEXT_MONTH.astimezone(UTC) + timedelta(hours=8)).label == "2026-02"
    assert budget_window("monthly", datetime(2026, 12, 31, 23, 0, tzinfo=UTC)).end == datetime(2027, 1, 1, tzinfo=UTC)
    assert budget_window("none", LAST_INSTANT) == budget_window("none", NEXT_MONTH)
    assert budget_window("none", NEXT_MONTH).end is None
    with pytest.raises(InvalidTimeError):
        budget_window("weekly", NEXT_MONTH)


async def spend_then_cross_the_boundary(store: LimitStore, period: str) -> tuple[bool, float, bool]:
    """A key with a 20-token budget spends it all in the month's last millisecond; → (refused then,
    its retry_after, admitted at the next month's first instant)."""
    now = [LAST_INSTANT.timestamp()]
    limiter = TokenBucketLimiter(store, wall=lambda: now[0])
    grant = KeyGrant(f"k-{uuid.uuid4().hex}", "t", key_limits=Limits(token_budget=20, budget_period=period))
    held = Reservation(5, 15)
    assert await limiter.admit(grant, "m", held) is None
    limiter.record(grant, "m", 5, 15, held)
    await limiter.flush()
    refused = await limiter.admit(grant, "m", Reservation(1, 1))
    now[0] = NEXT_MONTH.timestamp()
    admitted = await limiter.admit(grant, "m", Reservation(1, 1)) is None
    await limiter.aclose()
    return refused is not None, refused.retry_after if refused else 0.0, admitted


def test_a_monthly_budget_resets_exactly_at_the_month_boundary() -> None:
    refused, retry_after, admitted = asyncio.run(spend_then_cross_the_boundary(InMemoryLimitStore(), "monthly"))
    assert refused and admitted
    assert retry_after == 1.0  # 1 ms to go, and never less than a second


def test_a_budget_without_period_never_resets() -> None:
    refused, retry_after, admitted = asyncio.run(spend_then_cross_the_boundary(InMemoryLimitStore(), "none"))
    assert refused and not admitted
    assert retry_after == 3600.0


@needs_redis
def test_a_monthly_budget_resets_in_redis_shared_by_gateways() -> None:
    async def go() -> tuple[bool, float, bool]:
        redis = PipelinedRedis.from_url("redis://127.0.0.1:6379/0")
        try:
            return await spend_then_cross_the_boundary(RedisLimitStore(redis, prefix=f"zs:test:{uuid.uuid4().hex}:"),
                                                       "monthly")
        finally:
            await redis.close()

    refused, _, admitted = asyncio.run(go())
    assert refused and admitted


def test_the_period_is_stored_with_keys_and_tenants(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        world = make_world(make_session_factory(engine), book=False)
        with transaction(world.sessions) as s:
            s.query(ApiKey).filter_by(key_id=world.key_ids["tokens50"]).one().budget_period = "none"
        with world.sessions() as s:
            principal = KeyVerifier().authenticate(s, world.keys["tokens50"], datetime.now(UTC))
        _, key_limits, tenant_limits = limits_from_db(world.sessions)(principal)
        assert (key_limits.token_budget, key_limits.budget_period) == (50, "none")
        assert tenant_limits.budget_period == "monthly"  # the default
        with pytest.raises(sqlalchemy.exc.IntegrityError), transaction(world.sessions) as s:
            s.query(Tenant).filter_by(name="acme").one().budget_period = "weekly"
    finally:
        engine.dispose()
