"""The gateway with the platform's own API keys (zs_<id>_<secret>) from the database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
import pytest

from tests.gateway.conftest import LoopThread, one_replica
from zhisuan.gateway.keys import DbKeyAuthority
from zhisuan.gateway.server import GatewayConfig, GatewayServer
from zhisuan.identity.keys import issue_key
from zhisuan.identity.models import Tenant, User
from zhisuan.store.base import make_engine, make_session_factory, transaction


def test_platform_keys_with_inference_scope(database_url: str, fake_upstream: Any, tmp_path: Path) -> None:
    sessions = make_session_factory(make_engine(database_url))
    with transaction(sessions) as s:
        tenant = Tenant(name="acme")
        s.add(tenant)
        s.flush()
        user = User(username="ann", role="tenant", tenant_id=tenant.id)
        s.add(user)
        s.flush()
        good = issue_key(s, user, name="maas", scopes=["inference"], expires_at=None).plaintext
        readonly = issue_key(s, user, name="ro", scopes=["read"], expires_at=None).plaintext
        tenant_id = tenant.id
    lt = LoopThread()
    server = GatewayServer(GatewayConfig(spool_dir=tmp_path / "spool", models=one_replica(fake_upstream())),
                           keys=DbKeyAuthority(sessions, ttl_s=60))
    lt.run(server.start())
    try:
        ok = openai.OpenAI(base_url=server.base_url, api_key=good, max_retries=0)
        r = ok.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "x"}])
        assert r.usage is not None
        with pytest.raises(openai.AuthenticationError) as exc:
            openai.OpenAI(base_url=server.base_url, api_key=readonly, max_retries=0).models.list()
        assert exc.value.code == "insufficient_scope"
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=server.base_url, api_key=good[:-2] + "xx", max_retries=0).models.list()

        async def ship() -> list[Any]:
            await server.spool.drain()
            await server.shipper.ship_all()
            return list(server.sink.events.values())  # type: ignore[attr-defined]

        (event,) = lt.run(ship())
        assert event.tenant_id == f"tenant-{tenant_id}" and event.key_id == good.split("_")[1]
    finally:
        lt.run(server.stop())
        lt.close()
