"""A revoked key is refused by the gateway on its very next request — not after the grant cache's 5 s:
in the control plane's own process (pushed on commit) and in another gateway process sharing the
database and Redis (the shared revocation version)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, tzinfo
from pathlib import Path

import httpx
import pytest

from tests.gateway.conftest import LoopThread, free_port
from tests.gateway.test_limits import needs_redis
from tests.gateway.test_limits_db_money import Db, make_world
from zhisuan.bootstrap import system_principal
from zhisuan.gateway import keys as gateway_keys
from zhisuan.gateway.keys import DbKeyAuthority
from zhisuan.gateway.redis_access import PipelinedRedis
from zhisuan.gateway.revocation import REDIS_ENV, RedisRevocationWatch
from zhisuan.gateway.server import GatewayConfig, GatewayServer
from zhisuan.identity import keys as identity_keys
from zhisuan.identity.hashing import verify_secret
from zhisuan.identity.service import revoke_key
from zhisuan.store.base import make_engine, make_session_factory, transaction


@pytest.fixture
def db(database_url: str) -> Iterator[Db]:
    engine = make_engine(database_url)
    yield make_world(make_session_factory(engine))
    engine.dispose()


@pytest.fixture
def loop() -> Iterator[LoopThread]:
    lt = LoopThread()
    yield lt
    lt.close()


def serve(loop: LoopThread, keys: DbKeyAuthority, spool: Path) -> GatewayServer:
    async def make() -> GatewayServer:
        server = GatewayServer(GatewayConfig(spool_dir=spool), keys=keys)
        await server.start()
        return server

    return loop.run(make())


def models(server: GatewayServer, key: str) -> int:
    return httpx.get(server.base_url + "/models", headers={"Authorization": f"Bearer {key}"}, timeout=10).status_code


def revoke(db: Db, name: str) -> None:
    with transaction(db.sessions) as session:
        revoke_key(session, system_principal(), db.key_ids[name], datetime.now(UTC))


def test_a_revocation_in_the_control_plane_process_takes_effect_at_once(db: Db, loop: LoopThread,
                                                                        tmp_path: Path) -> None:
    keys = DbKeyAuthority(db.sessions, ttl_s=3600)  # a cached grant would live an hour
    server = serve(loop, keys, tmp_path / "spool")
    try:
        assert models(server, db.keys["plain"]) == 200
        assert models(server, db.keys["beta"]) == 200
        revoke(db, "plain")
        response = httpx.get(server.base_url + "/models", headers={"Authorization": f"Bearer {db.keys['plain']}"})
        assert response.status_code == 401
        assert response.json()["error"]["message"] == f"API key {db.key_ids['plain']} was revoked"
        assert models(server, db.keys["beta"]) == 200  # other keys keep their cached grants
    finally:
        loop.run(server.stop())
        keys.close()


@needs_redis
def test_a_revocation_reaches_another_gateway_process_through_redis(db: Db, loop: LoopThread, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(REDIS_ENV, "redis://127.0.0.1:6379/0")
    keys = DbKeyAuthority(db.sessions, ttl_s=3600)
    keys.close()  # stands for another process: the in-process push does not reach it
    redis = PipelinedRedis.from_url("redis://127.0.0.1:6379/0")
    keys.watch = RedisRevocationWatch(redis, keys.revoked_many, keys.forget_all)
    loop.run(keys.watch.start())
    server = serve(loop, keys, tmp_path / f"spool-{uuid.uuid4().hex}")
    try:
        assert models(server, db.keys["plain"]) == 200
        assert models(server, db.keys["money"]) == 200
        revoke(db, "plain")
        assert models(server, db.keys["plain"]) == 401
        assert models(server, db.keys["money"]) == 200
        revoke(db, "money")
        assert models(server, db.keys["money"]) == 401
    finally:
        loop.run(server.stop())
        loop.run(redis.close())


@needs_redis
def test_a_watch_ahead_of_redis_forgets_every_cached_grant(loop: LoopThread) -> None:
    """Redis lost its revocation log (flushed, restarted empty): revocations may have been missed."""
    redis = PipelinedRedis.from_url("redis://127.0.0.1:6379/0")
    gaps: list[bool] = []
    watch = RedisRevocationWatch(redis, lambda ids: None, lambda: gaps.append(True))
    loop.run(watch.start())
    watch.seen += 1000
    loop.run(watch.fresh())
    assert gaps == [True]
    loop.run(redis.close())


def test_a_watch_without_redis_lets_requests_through(loop: LoopThread) -> None:
    """Redis unreachable: authentication goes on (the grant cache TTL bounds revocations meanwhile)."""
    unreachable = PipelinedRedis.from_url(f"redis://127.0.0.1:{free_port()}/0")
    watch = RedisRevocationWatch(unreachable, lambda ids: None, lambda: None)
    loop.run(watch.fresh(), timeout=5)
    loop.run(watch.fresh(), timeout=5)


class FrozenDatetime(datetime):
    """The gateway's key checks at one instant: the throttle's lockout after the allowance (1 s
    from the 20th failure) must not run out between two requests of a slow (loaded) test run."""

    @classmethod
    def now(cls, tz: tzinfo | None = None) -> FrozenDatetime:
        return cls(2026, 12, 2, 12, 0, tzinfo=tz)


def test_wrong_keys_from_one_client_are_throttled_before_any_hashing(db: Db, loop: LoopThread, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Unauthenticated callers cannot buy scrypt work on demand: past the verifier's allowance of
    failed checks per client address, the gateway answers 429 without hashing."""
    monkeypatch.setattr(gateway_keys, "datetime", FrozenDatetime)
    hashed: list[str] = []

    def counted_verify(secret: str, stored: str) -> bool:
        hashed.append(secret)
        return verify_secret(secret, stored)

    monkeypatch.setattr(identity_keys, "verify_secret", counted_verify)
    keys = DbKeyAuthority(db.sessions)
    server = serve(loop, keys, tmp_path / "spool")
    try:
        statuses = [models(server, f"zs_{uuid.uuid4().hex[:12]}_{uuid.uuid4().hex}") for _ in range(24)]
        assert statuses[:20] == [401] * 20 and statuses[20:] == [429] * 4, statuses
        assert len(hashed) == 20  # one check per 401, none for a 429
        response = httpx.get(server.base_url + "/models", headers={"Authorization": "Bearer zs_x_y"})
        assert response.status_code == 429 and int(response.headers["retry-after"]) >= 1
        assert response.json()["error"]["code"] == "too_many_failed_key_checks"
        assert len(hashed) == 20
    finally:
        loop.run(server.stop())
        keys.close()
