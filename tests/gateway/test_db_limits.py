"""Model scopes and limits stored with platform keys and tenants, enforced by the gateway."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.gateway.conftest import LoopThread, one_replica
from zhisuan.gateway.db_limits import limits_from_db
from zhisuan.gateway.keys import DbKeyAuthority
from zhisuan.gateway.protocols import Limits
from zhisuan.gateway.server import GatewayConfig, GatewayServer
from zhisuan.identity.access import Principal
from zhisuan.identity.keys import issue_key
from zhisuan.identity.models import Tenant, User
from zhisuan.store.base import make_engine, make_session_factory, transaction


def ask(server: Any, key: str, model: str = "fake-model") -> Any:
    client = openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0, timeout=10)
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}], max_tokens=5)


@pytest.fixture
def world(database_url: str, fake_upstream: Any, tmp_path: Path) -> Iterator[tuple[Any, dict[str, str], int]]:
    """A gateway over two models with DB keys: 'scoped' (fake-model only), 'rpm2' (2 requests/min),
    'free' (no limits); all of tenant acme."""
    engine = make_engine(database_url)
    sessions = make_session_factory(engine)
    keys: dict[str, str] = {}
    with transaction(sessions) as s:
        tenant = Tenant(name="acme")
        s.add(tenant)
        s.flush()
        user = User(username="ann", role="tenant", tenant_id=tenant.id)
        s.add(user)
        s.flush()
        for name, extra in (("scoped", {"models": ["fake-model"]}), ("rpm2", {"rpm": 2}), ("free", {})):
            issued = issue_key(s, user, name=name, scopes=["inference"], expires_at=None)
            for column, value in extra.items():
                setattr(issued.row, column, value)
            keys[name] = issued.plaintext
        tenant_id = tenant.id
    port = fake_upstream()
    models = {**one_replica(port), **one_replica(port, model="other-model", rid="r2")}
    lt = LoopThread()
    server = GatewayServer(GatewayConfig(spool_dir=tmp_path / "spool", models=models),
                           keys=DbKeyAuthority(sessions, limits_for=limits_from_db(sessions), ttl_s=60))
    lt.run(server.start())
    try:
        yield server, keys, tenant_id
    finally:
        lt.run(server.stop())
        lt.close()
        engine.dispose()


def test_key_scoped_to_a_model_gets_model_not_found_for_another(world: Any) -> None:
    server, keys, _ = world
    assert ask(server, keys["scoped"]).usage is not None
    with pytest.raises(openai.NotFoundError) as exc:
        ask(server, keys["scoped"], model="other-model")
    assert exc.value.code == "model_not_found"
    listed = openai.OpenAI(base_url=server.base_url, api_key=keys["scoped"], max_retries=0).models.list()
    assert [m.id for m in listed] == ["fake-model"]
    assert ask(server, keys["free"], model="other-model").usage is not None


def test_key_rpm_gives_429_with_retry_after(world: Any) -> None:
    server, keys, _ = world
    ask(server, keys["rpm2"])
    ask(server, keys["rpm2"])
    with pytest.raises(openai.RateLimitError) as exc:
        ask(server, keys["rpm2"])
    assert exc.value.code == "rate_limit_exceeded"
    assert int(exc.value.response.headers["retry-after"]) >= 1
    assert exc.value.response.headers["x-ratelimit-scope"] == "key"
    assert ask(server, keys["free"]).usage is not None  # other keys are not affected


def test_limits_from_db_reads_key_and_tenant(database_url: str) -> None:
    engine = make_engine(database_url)
    sessions = make_session_factory(engine)
    with transaction(sessions) as s:
        tenant = Tenant(name="acme", rpm=100, tpm=None, token_budget=10**12)
        s.add(tenant)
        s.flush()
        user = User(username="ann", role="tenant", tenant_id=tenant.id)
        s.add(user)
        s.flush()
        row = issue_key(s, user, name="k", scopes=["inference"], expires_at=None).row
        row.models, row.tpm = ["a", "b"], 500
        key_id, tenant_id = row.key_id, tenant.id

    principal = Principal(user_id=0, username="ann", role="tenant", tenant_id=tenant_id, key_id=key_id)
    models, key_limits, tenant_limits = limits_from_db(sessions)(principal)
    assert models == frozenset({"a", "b"})
    assert key_limits == Limits(tpm=500)
    assert tenant_limits == Limits(rpm=100, token_budget=10**12)
    engine.dispose()
