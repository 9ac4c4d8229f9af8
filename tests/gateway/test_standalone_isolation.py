"""``zhisuan gateway`` processes beside a real ``zhisuan up`` that publishes revocations to Redis: a tenant's
private upstream (``--upstream MODEL@TENANT=URL``) is invisible to other tenants, and a key revoked through
the control plane's API gets 401 from the gateway process on its very next request — on SQLite and
PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.e2e.conftest import Platform, start_platform, stop
from tests.gateway import test_standalone as standalone
from tests.gateway.test_limits import needs_redis
from tests.gateway.test_standalone import Gateway, api
from zhisuan.gateway.revocation import REDIS_ENV

gateways = standalone.gateways  # the fixture, over this module's control_plane


@pytest.fixture
def control_plane(database_url: str, tmp_path: Path) -> Iterator[Platform]:
    running = start_platform(tmp_path, "--database", database_url, env={REDIS_ENV: "redis://127.0.0.1:6379/0"})
    yield running
    stop(running)


def client(gateway: Gateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url, api_key=key, max_retries=0, timeout=10)


def chat(gateway: Gateway, key: str, model: str) -> Any:
    return client(gateway, key).chat.completions.create(model=model, max_tokens=5,
                                                       messages=[{"role": "user", "content": "x"}])


@needs_redis
def test_private_upstreams_and_revocations_across_processes(control_plane: Platform, fake_upstream: Any,
                                                           gateways: Callable[..., Gateway]) -> None:
    keys = {}
    for tenant, user in (("acme", "ann"), ("beta", "bob")):
        api(control_plane, "POST", "/tenants", {"name": tenant})
        api(control_plane, "POST", "/users", {"username": user, "role": "tenant", "tenant": tenant})
        keys[user] = api(control_plane, "POST", "/keys", {"user": user, "scopes": ["inference"]})
    gateway = gateways(f"fake-model=http://127.0.0.1:{fake_upstream()}",
                       f"acme-model@acme=http://127.0.0.1:{fake_upstream()}")
    ann, bob = keys["ann"]["key"], keys["bob"]["key"]

    assert chat(gateway, ann, "acme-model").usage.total_tokens == 12
    with pytest.raises(openai.NotFoundError) as hidden:
        chat(gateway, bob, "acme-model")
    with pytest.raises(openai.NotFoundError) as missing:
        chat(gateway, bob, "no-such-model")
    assert hidden.value.response.text == missing.value.response.text.replace("no-such-model", "acme-model")
    assert [m.id for m in client(gateway, bob).models.list()] == ["fake-model"]
    assert sorted(m.id for m in client(gateway, ann).models.list()) == ["acme-model", "fake-model"]

    api(control_plane, "DELETE", f"/keys/{keys['ann']['key_id']}")
    with pytest.raises(openai.AuthenticationError):
        chat(gateway, ann, "fake-model")  # its grant was cached seconds ago: refused anyway
    assert chat(gateway, bob, "fake-model").usage is not None
    output = gateway.stop()
    assert "Traceback" not in output, output
