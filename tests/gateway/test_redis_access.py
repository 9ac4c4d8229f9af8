"""The gateway's Redis URLs against real servers: an ACL user with a password on the shared Redis,
a throw-away TLS Redis with a certificate made here, a throw-away Sentinel in front of a throw-away
master (and its fail-over to a replica); plus URL parsing and batching under concurrency."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.gateway.conftest import free_port
from tests.gateway.test_limits import needs_redis
from zhisuan.config import redact_url_passwords
from zhisuan.gateway.limits import RedisLimitStore
from zhisuan.gateway.redis_access import (
    PipelinedRedis,
    RedisUrlError,
    SentinelTarget,
    async_client,
    parse_sentinel_url,
)
from zhisuan.gateway.revocation import VERSION_KEY, publish_to_redis

needs_redis_server = pytest.mark.skipif(shutil.which("redis-server") is None, reason="no redis-server binary")


@pytest.mark.parametrize(("url", "expected"), [
    ("redis+sentinel://10.0.0.1:26379/mymaster",
     SentinelTarget(sentinels=(("10.0.0.1", 26379),), service="mymaster")),
    ("redis+sentinel://a,b:26380,[::1]:26381/svc/3",
     SentinelTarget(sentinels=(("a", 26379), ("b", 26380), ("::1", 26381)), service="svc", db=3)),
    ("rediss+sentinel://gw:p%40ss@s1:1/svc?ssl_ca_certs=/ca.pem&sentinel_password=x",
     SentinelTarget(sentinels=(("s1", 1),), service="svc", username="gw", password="p@ss", tls=True,
                    options={"ssl_ca_certs": "/ca.pem", "sentinel_password": "x"})),
    (":pw@s1:1/svc".join(("redis+sentinel://", "")),
     SentinelTarget(sentinels=(("s1", 1),), service="svc", password="pw")),
])
def test_sentinel_urls_parse(url: str, expected: SentinelTarget) -> None:
    assert parse_sentinel_url(url) == expected


@pytest.mark.parametrize("url", ["redis+sentinel://s1:1", "redis+sentinel://s1:x/svc", "redis+sentinel:///svc",
                                 "redis+sentinel://s1/svc/notadb", "redis://h/0"])
def test_bad_sentinel_urls_are_refused(url: str) -> None:
    with pytest.raises(RedisUrlError):
        parse_sentinel_url(url)


@pytest.mark.parametrize("url", ["redis+cluster://h:7000/0", "http://h:6379", "h:6379"])
def test_unsupported_schemes_are_refused_with_the_forms_that_work(url: str) -> None:
    with pytest.raises(RedisUrlError, match="redis\\+sentinel://"):
        async_client(url)


@pytest.mark.parametrize(("url", "shown"), [
    ("redis://gw:secret@h:1/0", "redis://gw:***@h:1/0"),
    ("rediss://:secret@h:1/0?ssl_cert_reqs=none", "rediss://:***@h:1/0?ssl_cert_reqs=none"),
    ("redis+sentinel://u:secret@a:1,b:2/svc?sentinel_password=s2", "redis+sentinel://u:***@a:1,b:2/svc?sentinel_password=***"),
    ("unix:///run/redis.sock?db=0&password=secret", "unix:///run/redis.sock?db=0&password=***"),
    ("redis://h:1/0", "redis://h:1/0"),
])
def test_passwords_never_reach_logs(url: str, shown: str) -> None:
    assert redact_url_passwords(url) == shown


async def use_store(url: str, **kwargs: object) -> tuple[tuple[int, float], int]:
    """A rate bucket (Lua) and a counter through ``url``, then the connection closed."""
    client = PipelinedRedis.from_url(url, **kwargs)  # type: ignore[arg-type]
    try:
        store = RedisLimitStore(client, prefix=f"zs:test:{uuid.uuid4().hex}:")
        taken = await store.take("rpm", 3, 1.0, 10.0)
        total = await store.spend("spent", 7)
        return taken, total
    finally:
        await client.close()


@needs_redis
def test_an_acl_user_with_a_password_reaches_only_its_keys() -> None:
    admin = redis.Redis(host="127.0.0.1", port=6379)
    user, password = f"zs-test-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    admin.execute_command("ACL", "SETUSER", user, "on", f">{password}", "~zs:test:*", "~zs:keys:*", "+@all")
    try:
        url = f"redis://{user}:{password}@127.0.0.1:6379/0"
        assert asyncio.run(use_store(url)) == ((3, 7.0), 7)
        assert publish_to_redis(url, f"key-{uuid.uuid4().hex}") == int(admin.get(VERSION_KEY) or 0)

        async def outside_its_keys() -> None:
            client = PipelinedRedis.from_url(url)
            try:
                await client.execute("INCRBY", "other:counter", 1)
            finally:
                await client.close()

        with pytest.raises(redis.exceptions.NoPermissionError):
            asyncio.run(outside_its_keys())
        with pytest.raises(redis.exceptions.AuthenticationError):
            asyncio.run(use_store(f"redis://{user}:wrong@127.0.0.1:6379/0"))
        assert publish_to_redis(f"redis://{user}:wrong@127.0.0.1:6379/0", "k") is None  # logged, not raised
    finally:
        admin.execute_command("ACL", "DELUSER", user)
        admin.close()


@needs_redis
def test_concurrent_commands_each_get_their_own_reply_and_errors_stay_theirs() -> None:
    async def scenario() -> list[object]:
        client = PipelinedRedis.from_url("redis://127.0.0.1:6379/0", lanes=1)
        prefix = f"zs:test:{uuid.uuid4().hex}:"
        try:
            await client.execute("SET", prefix + "text", "x")
            calls = [client.execute("INCRBY", prefix + f"c{i % 7}", i) for i in range(300)]
            calls.insert(150, client.execute("INCRBY", prefix + "text", 1))  # a wrong-type error mid-batch
            return await asyncio.gather(*calls, return_exceptions=True)
        finally:
            await client.close()

    replies = asyncio.run(scenario())
    assert isinstance(replies.pop(150), redis.ResponseError)
    running: dict[int, int] = {}
    for i, reply in enumerate(replies):
        running[i % 7] = running.get(i % 7, 0) + i
        assert reply == running[i % 7]


def test_an_unreachable_redis_fails_the_call_not_the_process() -> None:
    with pytest.raises(redis.ConnectionError):
        asyncio.run(use_store(f"redis://127.0.0.1:{free_port()}/0"))


# -- throw-away servers ------------------------------------------------------------------------------


def start_redis(tmp: Path, *args: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    tmp.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(["redis-server", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(tmp), "--port", str(port), *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_ping(port)
    return proc, port


def wait_for_ping(port: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if redis.Redis(host="127.0.0.1", port=port, socket_timeout=1).ping():
                return
        except redis.AuthenticationError:  # up, and wants a password
            return
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.fixture
def servers() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for p in procs:
        p.kill()
        p.wait(10)


def make_certificate(tmp: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (it is its own CA)."""
    cert, key = tmp / "redis.crt", tmp / "redis.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


@needs_redis_server
@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl to make a certificate")
def test_tls_with_a_trusted_certificate(tmp_path: Path, servers: list[subprocess.Popen[bytes]]) -> None:
    cert, key = make_certificate(tmp_path)
    tls_port = free_port()
    proc, _ = start_redis(tmp_path / "tls", "--tls-port", str(tls_port), "--tls-cert-file", str(cert),
                          "--tls-key-file", str(key), "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no",
                          "--requirepass", "s3cret")
    servers.append(proc)
    url = f"rediss://:s3cret@127.0.0.1:{tls_port}/0"
    assert asyncio.run(use_store(f"{url}?ssl_ca_certs={cert}")) == ((3, 7.0), 7)
    (tmp_path / "other").mkdir()
    other_cert, _ = make_certificate(tmp_path / "other")
    with pytest.raises(redis.ConnectionError, match="(?i)certificate"):  # a server we were not told to trust
        asyncio.run(use_store(f"{url}?ssl_ca_certs={other_cert}"))
    with pytest.raises(redis.ConnectionError):  # plain TCP on the TLS port
        asyncio.run(use_store(f"redis://:s3cret@127.0.0.1:{tls_port}/0", timeout_s=0.5))


def start_sentinel(tmp: Path, master_port: int, service: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    tmp.mkdir(parents=True, exist_ok=True)
    conf = tmp / "sentinel.conf"  # Sentinel rewrites its config file: it must be its own
    conf.write_text(f"port {port}\nbind 127.0.0.1\ndir {tmp}\n"
                    f"sentinel monitor {service} 127.0.0.1 {master_port} 1\n"
                    f"sentinel down-after-milliseconds {service} 500\n"
                    f"sentinel failover-timeout {service} 2000\n")
    proc = subprocess.Popen(["redis-server", str(conf), "--sentinel"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    wait_for_ping(port)
    return proc, port


@needs_redis_server
def test_sentinel_finds_the_master_and_follows_a_fail_over(tmp_path: Path,
                                                          servers: list[subprocess.Popen[bytes]]) -> None:
    master, master_port = start_redis(tmp_path / "master")
    servers.append(master)
    replica, replica_port = start_redis(tmp_path / "replica", "--replicaof", "127.0.0.1", str(master_port))
    servers.append(replica)
    sentinel, sentinel_port = start_sentinel(tmp_path / "sentinel", master_port, "zs-test")
    servers.append(sentinel)
    url = f"redis+sentinel://127.0.0.1:{sentinel_port}/zs-test/0"
    assert publish_to_redis(url, "key-1") == 1  # the control plane's blocking client, through Sentinel too

    async def scenario() -> tuple[int, int, int]:
        client = PipelinedRedis.from_url(url, timeout_s=2.0)
        try:
            first = await client.execute("INCRBY", "zs:test:failover", 5)
            master.kill()  # the replica is promoted once Sentinel sees the master down (~0.5 s + election)
            master.wait(10)
            deadline = time.monotonic() + 30
            while True:
                try:
                    after = await client.execute("INCRBY", "zs:test:failover", 1)
                    break
                except (redis.ConnectionError, redis.ReadOnlyError, redis.TimeoutError):
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.2)
            promoted = await client.client.connection_pool.get_master_address()  # type: ignore[attr-defined]
            return first, after, promoted[1]
        finally:
            await client.close()

    first, after, now_master = asyncio.run(scenario())
    assert first == 5
    assert now_master == replica_port
    assert after in (1, 6)  # 6 when the increment had reached the replica before the kill
