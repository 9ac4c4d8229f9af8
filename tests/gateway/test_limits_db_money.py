"""Money and token budgets stored in the database, priced from the price book, enforced by a gateway
whose counters live in Redis — on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.gateway.conftest import LoopThread, one_replica
from tests.gateway.test_limits import needs_redis
from zhisuan.bootstrap import system_principal
from zhisuan.catalog.loader import default_catalog
from zhisuan.gateway.db_limits import limits_from_db
from zhisuan.gateway.db_prices import DbPrices, cost_micros
from zhisuan.gateway.keys import DbKeyAuthority
from zhisuan.gateway.limits import RedisLimitStore
from zhisuan.gateway.redis_access import PipelinedRedis
from zhisuan.gateway.server import GatewayConfig, GatewayServer
from zhisuan.identity.keys import issue_key
from zhisuan.identity.models import Tenant, User
from zhisuan.market import schemas as ms
from zhisuan.market.service import add_version, create_price_book
from zhisuan.store.base import make_engine, make_session_factory, transaction

# CNY per million tokens. acme's override makes a request of the fake engine (7 prompt + 5 completion
# tokens) cost 7 × 500 + 5 × 1000 = 8500 micro-CNY; at base rates it costs 7 × 1 + 5 × 2 = 17.
BASE_RATES = [("fake-model", "input_tokens", "1"), ("fake-model", "output_tokens", "2"),
              ("half-priced", "input_tokens", "1")]
ACME_RATES = [("fake-model", "input_tokens", "500"), ("fake-model", "output_tokens", "1000")]


def rates(specs: list[tuple[str, str, str]], tenant: str | None = None) -> list[ms.RateIn]:
    return [ms.RateIn(model=model, pricing_model=kind, unit_price=Decimal(price), tenant=tenant)  # type: ignore[arg-type]
            for model, kind, price in specs]


@dataclass
class Db:
    sessions: Any
    keys: dict[str, str]  # name → secret
    key_ids: dict[str, str]


def make_world(sessions: Any, book: bool = True) -> Db:
    """Tenant acme (money budget 0.03 CNY = 30 000 micro-CNY, a price override) with keys 'plain',
    'tokens50' (token budget 50) and 'money' (own money budget 1 CNY); tenant beta (no limits) with key
    'beta'; and, if ``book``, the default price book."""
    keys, key_ids = {}, {}
    with transaction(sessions) as s:
        acme = Tenant(name="acme", money_budget=Decimal("0.03"))
        beta = Tenant(name="beta")
        s.add_all([acme, beta])
        s.flush()
        users = {"acme": User(username="ann", role="tenant", tenant_id=acme.id),
                 "beta": User(username="bob", role="tenant", tenant_id=beta.id)}
        s.add_all(users.values())
        s.flush()
        for name, owner, extra in (("plain", "acme", {}), ("tokens50", "acme", {"token_budget": 50}),
                                   ("money", "acme", {"money_budget": Decimal("1.00")}), ("beta", "beta", {})):
            issued = issue_key(s, users[owner], name=name, scopes=["inference"], expires_at=None)
            for column, value in extra.items():
                setattr(issued.row, column, value)
            keys[name], key_ids[name] = issued.plaintext, issued.row.key_id
        if book:
            body = ms.PriceBookCreate(name="std", rates=rates(BASE_RATES) + rates(ACME_RATES, tenant="acme"))
            create_price_book(s, default_catalog(), system_principal(), body, datetime.now(UTC))
    return Db(sessions, keys, key_ids)


@pytest.fixture
def db(database_url: str) -> Iterator[Db]:
    engine = make_engine(database_url)
    yield make_world(make_session_factory(engine))
    engine.dispose()


# -- pricing from the price book ------------------------------------------------------------------


def loaded(prices: DbPrices) -> DbPrices:
    loop = LoopThread()
    try:
        loop.run(prices.load())
    finally:
        loop.close()
    return prices


def acme_tenant(db: Db) -> str:
    with db.sessions() as s:
        return f"tenant-{s.query(Tenant).filter_by(name='acme').one().id}"


def test_prices_follow_the_tenant_override_and_the_base_book(db: Db) -> None:
    prices = loaded(DbPrices(db.sessions))
    acme = acme_tenant(db)
    assert prices(acme, "fake-model", 7, 5) == 8500
    assert prices("tenant-999999", "fake-model", 7, 5) == 17  # no override: base rates
    assert prices("user-1", "fake-model", 7, 5) == 17  # a key of no tenant: base rates
    assert prices(acme, "fake-model", 0, 0) == 0  # priced, and free when nothing was used


def test_a_model_without_both_token_rates_is_unpriced(db: Db) -> None:
    prices = loaded(DbPrices(db.sessions))
    assert prices(acme_tenant(db), "half-priced", 7, 5) is None  # input rate only
    assert prices(acme_tenant(db), "no-such-model", 7, 5) is None


def test_without_a_default_book_nothing_is_priced(database_url: str) -> None:
    engine = make_engine(database_url)
    world = make_world(make_session_factory(engine), book=False)
    prices = loaded(DbPrices(world.sessions))
    assert prices(acme_tenant(world), "fake-model", 7, 5) is None
    engine.dispose()


def test_a_later_version_applies_from_its_instant_without_reload(db: Db) -> None:
    later = datetime.now(UTC) + timedelta(days=1)
    with transaction(db.sessions) as s:
        body = ms.VersionCreate(effective_from=later, rates=rates([("fake-model", "input_tokens", "3"),
                                                                  ("fake-model", "output_tokens", "4")]))
        add_version(s, default_catalog(), system_principal(), "std", body, datetime.now(UTC))
    at = [datetime.now(UTC)]
    prices = loaded(DbPrices(db.sessions, now=lambda: at[0]))
    assert prices("tenant-999999", "fake-model", 7, 5) == 17
    at[0] = later + timedelta(seconds=1)
    assert prices("tenant-999999", "fake-model", 7, 5) == 7 * 3 + 5 * 4
    assert prices(acme_tenant(db), "fake-model", 7, 5) == 7 * 3 + 5 * 4  # version 2 has no acme override


def test_cost_is_exact_and_rounded_up_to_the_micro() -> None:
    assert cost_micros((Decimal("0.5"), Decimal("0.25")), 3, 1) == 2  # 1.75 micro-CNY → 2
    assert cost_micros((Decimal("2"), Decimal("6")), 1_000_000, 0) == 2_000_000  # 2 CNY per million


# -- enforced by a gateway over the database, counters in Redis ---------------------------------------


@pytest.fixture
def gateway(db: Db, fake_upstream: Any, tmp_path: Path) -> Iterator[GatewayServer]:
    """A gateway with keys, limits and prices from ``db``; limit counters in Redis under a fresh prefix."""
    port = fake_upstream()
    models = {**one_replica(port), **one_replica(port, model="half-priced", rid="r2")}
    lt = LoopThread()
    redis = PipelinedRedis.from_url("redis://127.0.0.1:6379/0")
    prices = DbPrices(db.sessions)
    lt.run(prices.load())
    server = GatewayServer(GatewayConfig(spool_dir=tmp_path / "spool", models=models),
                           keys=DbKeyAuthority(db.sessions, limits_for=limits_from_db(db.sessions), ttl_s=60),
                           store=RedisLimitStore(redis, prefix=f"zs:test:{uuid.uuid4().hex}:"), price=prices)
    lt.run(server.start())
    try:
        yield server
    finally:
        lt.run(server.stop())
        lt.run(redis.close())
        lt.close()


def ask(server: GatewayServer, key: str, model: str = "fake-model") -> Any:
    client = openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0, timeout=10)
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}], max_tokens=5)


def refused(server: GatewayServer, key: str, model: str = "fake-model") -> openai.RateLimitError:
    with pytest.raises(openai.RateLimitError) as exc:
        ask(server, key, model)
    return exc.value


def assert_openai_429(error: openai.RateLimitError, code: str, scope: str) -> None:
    assert error.status_code == 429
    assert error.code == code
    assert isinstance(error.body, dict) and {"message", "type", "code"} <= error.body.keys()
    assert int(error.response.headers["retry-after"]) >= 1
    assert error.response.headers["x-ratelimit-scope"] == scope


@needs_redis
def test_tenant_money_budget_gives_429_once_spent(db: Db, gateway: GatewayServer) -> None:
    # 30 000 micro-CNY at acme's 8 500 per request (7 + 5 tokens). A request reserves what it may cost:
    # the first (1 + 32) × 500 + 5 × 1000 = 21 500, the next ones (1 + 6) × 500 + 5 × 1000 = 8 500 once the
    # route learnt the template overhead. The fourth would exceed the budget (3 × 8 500 + 8 500): refused,
    # and from then on every key of acme.
    for _ in range(3):
        ask(gateway, db.keys["plain"])
    error = refused(gateway, db.keys["plain"])
    assert_openai_429(error, "insufficient_quota", "tenant")
    assert "money budget" in error.message
    assert_openai_429(refused(gateway, db.keys["tokens50"]), "insufficient_quota", "tenant")
    assert ask(gateway, db.keys["beta"]).usage is not None  # another tenant is not affected


@needs_redis
def test_key_token_budget_gives_429_once_spent(db: Db, gateway: GatewayServer) -> None:
    with transaction(db.sessions) as s:  # lift acme's money budget: only the key's token budget binds
        s.query(Tenant).filter_by(name="acme").one().money_budget = None
    for _ in range(4):  # 12 tokens each; reserved first 1 + 32 + 5, then 1 + 6 + 5
        ask(gateway, db.keys["tokens50"])
    error = refused(gateway, db.keys["tokens50"])  # 48 + 12 > 50
    assert_openai_429(error, "insufficient_quota", "key")
    assert "tokens budget" in error.message
    assert ask(gateway, db.keys["plain"]).usage is not None  # the tenant's other keys still work


@needs_redis
def test_money_budget_on_an_unpriced_model_is_refused_not_served_free(db: Db, gateway: GatewayServer) -> None:
    error = refused(gateway, db.keys["money"], model="half-priced")
    assert_openai_429(error, "insufficient_quota", "key")
    assert "no token price" in error.message
    assert ask(gateway, db.keys["beta"], model="half-priced").usage is not None  # no money budget: served
