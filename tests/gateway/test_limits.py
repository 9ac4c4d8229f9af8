"""RPM/TPM limits and budgets, per key and per tenant, in one process and across processes (Redis)."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import openai
import pytest

from tests.gateway.conftest import TOKEN, grant, one_replica
from zhisuan.gateway.limits import InMemoryLimitStore, RedisLimitStore, TokenBucketLimiter
from zhisuan.gateway.protocols import KeyGrant, Limits, Reservation
from zhisuan.gateway.proxy import DEFAULT_COMPLETION_BOUND
from zhisuan.gateway.redis_access import PipelinedRedis


def redis_available() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5):
            return True
    except OSError:
        return False


needs_redis = pytest.mark.skipif(not redis_available(), reason="no Redis on 127.0.0.1:6379")


def ask(server: Any, key: str = TOKEN, max_tokens: int = 5) -> Any:
    c = openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0, timeout=10)
    return c.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "x"}],
                                     max_tokens=max_tokens)


def test_rpm_per_key_gives_429_with_retry_after(fake_upstream: Any, gateway: Any) -> None:
    server = gateway(one_replica(fake_upstream()), keys=[grant(Limits(rpm=3))])
    for _ in range(3):
        ask(server)
    with pytest.raises(openai.RateLimitError) as exc:
        ask(server)
    assert exc.value.code == "rate_limit_exceeded"
    assert exc.value.body["type"] == "requests"  # type: ignore[index]
    assert int(exc.value.response.headers["retry-after"]) >= 1
    assert exc.value.response.headers["x-ratelimit-scope"] == "key"


def test_tenant_limit_spans_its_keys(fake_upstream: Any, gateway: Any) -> None:
    tenant = Limits(rpm=2)
    server = gateway(one_replica(fake_upstream()),
                     keys=[grant(tenant_limits=tenant, tenant_id="acme"),
                           grant(tenant_limits=tenant, tenant_id="acme", key_id="bob")])
    ask(server)
    ask(server, "sk-test-bob")
    with pytest.raises(openai.RateLimitError) as exc:
        ask(server, "sk-test-bob")
    assert exc.value.response.headers["x-ratelimit-scope"] == "tenant"


def test_tpm_counts_engine_tokens(fake_upstream: Any, gateway: Any) -> None:
    server = gateway(one_replica(fake_upstream()), keys=[grant(Limits(tpm=20))])
    ask(server)  # 7 + 5 = 12 tokens: 8 left
    time.sleep(0.15)  # debits are flushed every 50 ms
    ask(server)  # admitted while positive, leaves -4
    time.sleep(0.15)
    with pytest.raises(openai.RateLimitError) as exc:
        ask(server)
    assert exc.value.body["type"] == "tokens"  # type: ignore[index]


def test_token_budget_is_insufficient_quota(fake_upstream: Any, gateway: Any) -> None:
    """Each request reserves its prompt bound + max_tokens (the first 1 + 32 + 5; once the route has
    learnt the engine's template overhead, 1 + 6 + 5 = its real 12) and settles to its real 12 tokens."""
    server = gateway(one_replica(fake_upstream()), keys=[grant(Limits(token_budget=50))])
    for _ in range(4):
        ask(server)
    time.sleep(0.15)
    with pytest.raises(openai.RateLimitError) as exc:
        ask(server)
    assert exc.value.code == "insufficient_quota"
    assert "has 2 left" in exc.value.message


def test_a_token_budget_holds_against_a_large_max_tokens(fake_upstream: Any, gateway: Any) -> None:
    """80 tokens: a request that may use 1 + 32 + 40 runs (47 real); the next may use 1 + 6 + 40 and is
    refused though 33 tokens are left — it could overshoot; one that may use 27 runs."""
    server = gateway(one_replica(fake_upstream()), keys=[grant(Limits(token_budget=80))])
    assert ask(server, max_tokens=40).usage.total_tokens == 47
    with pytest.raises(openai.RateLimitError) as exc:
        ask(server, max_tokens=40)
    assert exc.value.code == "insufficient_quota"
    assert "has 33 left" in exc.value.message
    assert ask(server, max_tokens=20).usage.total_tokens == 27


def test_concurrent_requests_do_not_jointly_overshoot_a_budget(fake_upstream: Any, gateway: Any) -> None:
    server = gateway(one_replica(fake_upstream("--delay-ms", "200")), keys=[grant(Limits(token_budget=50))])
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: _try(server), range(8)))
    served = sum(r for r in results if r is not None)
    assert 0 < served <= 50
    assert results.count(None) >= 4  # refused, not served over the budget


def test_a_request_without_max_tokens_is_bounded_under_a_budget(fake_upstream: Any, gateway: Any) -> None:
    server = gateway(one_replica(fake_upstream()), keys=[grant(Limits(token_budget=5000))])
    c = openai.OpenAI(base_url=server.base_url, api_key=TOKEN, max_retries=0, timeout=10)
    r = c.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "x"}])
    assert r.usage is not None and r.usage.completion_tokens == DEFAULT_COMPLETION_BOUND  # the fake obeys it
    with pytest.raises(openai.BadRequestError):
        c.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "x"}], max_tokens=0)


def _try(server: Any) -> int | None:
    try:
        return int(ask(server).usage.total_tokens)
    except openai.RateLimitError:
        return None


def test_money_budget_uses_the_price_function() -> None:
    async def go() -> None:
        limiter = TokenBucketLimiter(InMemoryLimitStore(), price=lambda t, m, p, c: p * 1 + c * 2)
        g = KeyGrant("k", "t", key_limits=Limits(money_budget_micros=100))
        assert await limiter.admit(g, "m") is None
        limiter.record(g, "m", 30, 40)  # 110 micros
        await limiter.flush()
        denial = await limiter.admit(g, "m")
        assert denial is not None and denial.kind == "budget"

    asyncio.run(go())


def test_rpm_bucket_refills_over_time() -> None:
    now = [0.0]

    async def go() -> None:
        store = InMemoryLimitStore(clock=lambda: now[0])
        limiter = TokenBucketLimiter(store, clock=lambda: now[0])
        g = KeyGrant("k", "t", key_limits=Limits(rpm=60))
        results = [await limiter.admit(g, "m") for _ in range(61)]
        assert sum(r is None for r in results) == 60
        denial = results[-1]
        assert denial is not None and 0.9 <= denial.retry_after <= 1.1
        now[0] += 2.0  # leased permits expire; the bucket refilled 2
        assert await limiter.admit(g, "m") is None

    asyncio.run(go())


@needs_redis
def test_limits_hold_across_gateway_processes(fake_upstream: Any, gateway: Any) -> None:
    """Two gateways sharing one Redis: the key's 5 rpm hold across both."""
    port = fake_upstream()
    key = grant(Limits(rpm=5), key_id=f"shared-{uuid.uuid4().hex[:8]}")
    a = gateway(one_replica(port), keys=[key], redis_url="redis://127.0.0.1:6379/0")
    b = gateway(one_replica(port), keys=[key], redis_url="redis://127.0.0.1:6379/0")
    ok = 0
    for i in range(12):
        try:
            ask(a if i % 2 else b, key["token"])
            ok += 1
        except openai.RateLimitError:
            pass
    assert ok == 5


@needs_redis
def test_redis_store_matches_in_memory_arithmetic() -> None:
    async def go() -> None:
        client = PipelinedRedis.from_url("redis://127.0.0.1:6379/0")
        store = RedisLimitStore(client, prefix=f"zs:test:{uuid.uuid4().hex}:")
        granted, level = await store.take("b", 3, rate=1.0, capacity=5)
        assert granted == 3 and 1.9 < level <= 2.1
        granted, level = await store.take("b", 0, rate=1.0, capacity=5, debit=10)
        assert granted == 0 and level < -7
        granted, _ = await store.take("b", 1, rate=1.0, capacity=5)
        assert granted == 0
        assert await store.spend("c", 5) == 5 and await store.spend("c", 7) == 12
        await client.close()

    asyncio.run(go())


def test_a_reservation_is_given_back_when_the_request_is_not_served() -> None:
    """Refused by another limit after its budget was reserved, or never forwarded (no replica): the
    counter goes back to what was really used."""
    async def go() -> None:
        store = InMemoryLimitStore()
        limiter = TokenBucketLimiter(store)
        g = KeyGrant("k", "t", key_limits=Limits(token_budget=100, rpm=1))
        name = f"spent:tokens:key:k:{limiter.window('monthly')[0]}"
        first = Reservation(10, 20)
        assert await limiter.admit(g, "m", first) is None
        assert store._counters[name] == 30
        denial = await limiter.admit(g, "m", Reservation(10, 20))  # the RPM bucket refuses it
        assert denial is not None and denial.kind == "requests"
        assert store._counters[name] == 30
        limiter.release(first)  # e.g. no healthy replica answered
        await limiter.flush()
        assert store._counters[name] == 0

    asyncio.run(go())


class _SlowGiveBackStore(InMemoryLimitStore):
    """Fault injection: a give-back (negative spend) reaches the store only when ``arrive`` is set —
    like one INCRBY still on the wire to Redis while the next request's reservation is answered."""

    def __init__(self) -> None:
        super().__init__()
        self.arrive = asyncio.Event()

    async def spend(self, counter: str, amount: int) -> int:
        if amount < 0:
            await self.arrive.wait()
        return await super().spend(counter, amount)


def test_a_give_back_in_flight_does_not_refuse_a_request_the_budget_has_room_for() -> None:
    """Sequential requests under a 50-token budget: the first reserved 38 and used 12; while its
    give-back of 26 is still on its way to the store, the next reservation must wait for it rather
    than refuse on the stale total (38 + 12 + 12 > 50) — the CI failure of 2026-12-02."""
    async def go() -> None:
        store = _SlowGiveBackStore()
        limiter = TokenBucketLimiter(store, flush_interval_s=0.0)
        g = KeyGrant("k", "t", key_limits=Limits(token_budget=50))
        first = Reservation(33, 5)
        assert await limiter.admit(g, "m", first) is None
        limiter.record(g, "m", 7, 5, first)  # used 12 of 38: 26 to give back
        second = Reservation(7, 5)
        assert await limiter.admit(g, "m", second) is None  # 38 + 12 = 50: still fits
        limiter.record(g, "m", 7, 5, second)
        await asyncio.sleep(0.01)  # the flush starts: the give-back of 26 is now in flight
        assert limiter._sending
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, store.arrive.set)
        assert await limiter.admit(g, "m", Reservation(7, 5)) is None  # 12 + 12 + 12 = 36 ≤ 50
        await limiter.aclose()
        name = f"spent:tokens:key:k:{limiter.window('monthly')[0]}"
        assert store._counters[name] == 36

    asyncio.run(go())
