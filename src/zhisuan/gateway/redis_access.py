"""Redis for the gateways: redis-py (asyncio, hiredis parser) opened from one URL, commands pipelined.

URL forms (``zhisuan gateway --redis URL`` / ``ZHISUAN_REDIS_URL``):

- ``redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]`` — plain TCP; USER is an ACL user (``default`` when
  only a password is given).
- ``rediss://…`` — the same over TLS; query options ``ssl_ca_certs=PATH`` (CA bundle to trust),
  ``ssl_certfile=PATH&ssl_keyfile=PATH`` (client certificate), ``ssl_cert_reqs=none`` (no verification,
  tests only), ``ssl_check_hostname=false``.
- ``unix:///PATH/redis.sock?db=N`` (with ``password=``/``username=`` in the query when needed).
- ``redis+sentinel://[[USER]:PASSWORD@]HOST:PORT[,HOST:PORT…]/SERVICE[/DB]`` — ask these Sentinels
  where the master of SERVICE is (and again after a fail-over); ``rediss+sentinel://`` speaks TLS to
  the master and the Sentinels. USER/PASSWORD are the master's; the query's ``sentinel_username`` /
  ``sentinel_password`` authenticate to Sentinels that require it.

Redis Cluster is not supported: the revocation script writes two keys that would hash to different
slots. A Sentinel-managed master (or one Redis) holds all of the gateway's counters.

Commands are not retried on a connection error (redis-py retries by default): an INCRBY that reached
Redis before the connection dropped would be counted twice.

Why ``PipelinedRedis``: the gateway issues one or two small commands per request from many concurrent
requests. redis-py sends each command on a pooled connection of its own, one at a time; the commands
issued in the same event-loop turn are instead sent as one pipeline (one write, one read, one pooled
connection), so the client's cost per command falls as load rises — as with the hand-written client
this replaces, which pipelined every command on one connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError
from redis.retry import Retry

DEFAULT_PORT = 6379
DEFAULT_SENTINEL_PORT = 26379
MAX_CONNECTIONS = 32  # concurrent pipelines in flight; a command waits for a free connection past that
SOCKET_TIMEOUT_S = 5.0
_TLS_OPTIONS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs", "ssl_check_hostname")


class RedisUrlError(ValueError):
    pass


@dataclass(frozen=True)
class SentinelTarget:
    """A parsed ``redis+sentinel://`` / ``rediss+sentinel://`` URL."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False
    options: dict[str, str] = field(default_factory=dict)  # TLS options and sentinel_username/password

    def connection_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {"db": self.db, "username": self.username, "password": self.password}
        if self.tls:
            kw["ssl"] = True
            kw.update(_tls_kwargs(self.options))
        return kw

    def sentinel_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {"socket_timeout": SOCKET_TIMEOUT_S,
                              "username": self.options.get("sentinel_username"),
                              "password": self.options.get("sentinel_password")}
        if self.tls:
            kw["ssl"] = True
            kw.update(_tls_kwargs(self.options))
        return kw


def _tls_kwargs(options: dict[str, str]) -> dict[str, Any]:
    kw: dict[str, Any] = {k: v for k, v in options.items() if k in _TLS_OPTIONS}
    if "ssl_check_hostname" in kw:
        kw["ssl_check_hostname"] = kw["ssl_check_hostname"].lower() not in ("false", "0", "no")
    return kw


def parse_sentinel_url(url: str) -> SentinelTarget:
    """``redis+sentinel://[[user]:password@]h1:p1[,h2:p2…]/service[/db][?options]``."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis+sentinel", "rediss+sentinel"):
        raise RedisUrlError(f"not a Sentinel URL: {parts.scheme}://")
    auth, _, hosts = parts.netloc.rpartition("@")
    user, _, password = auth.partition(":")
    sentinels = []
    for item in filter(None, hosts.split(",")):
        host, _, port = item.rpartition(":") if ":" in item else (item, "", "")
        try:
            sentinels.append((host.strip("[]"), int(port or DEFAULT_SENTINEL_PORT)))
        except ValueError:
            raise RedisUrlError(f"bad Sentinel address {item!r} in the Redis URL") from None
    path = [unquote(p) for p in parts.path.split("/") if p]
    if not sentinels or not path or len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
        raise RedisUrlError("a Sentinel URL is redis+sentinel://[user:password@]host:port[,host:port…]/service[/db]")
    options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    return SentinelTarget(sentinels=tuple(sentinels), service=path[0], db=int(path[1]) if len(path) == 2 else 0,
                          username=unquote(user) or None, password=unquote(password) or None,
                          tls=parts.scheme.startswith("rediss"), options=options)


def redacted(url: str) -> str:
    """``url`` without its password (for logs and error messages)."""
    parts = urlsplit(url)
    auth, at, hosts = parts.netloc.rpartition("@")
    if not at or ":" not in auth:
        return url
    return parts._replace(netloc=f"{auth.partition(':')[0]}:***@{hosts}").geturl()


def _is_sentinel(url: str) -> bool:
    return url.split("://", 1)[0] in ("redis+sentinel", "rediss+sentinel")


def _check_scheme(url: str) -> None:
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme not in ("redis", "rediss", "unix", "redis+sentinel", "rediss+sentinel"):
        hint = " (Redis Cluster is not supported)" if "cluster" in scheme else ""
        raise RedisUrlError(f"unsupported Redis URL scheme {scheme!r}{hint}: use redis://, rediss://, unix:// "
                            "or redis+sentinel://")


def async_client(url: str, *, max_connections: int = MAX_CONNECTIONS) -> aioredis.Redis:
    """A redis-py asyncio client for ``url`` (see the module doc); no connection is made yet."""
    _check_scheme(url)
    no_retry = AsyncRetry(NoBackoff(), 0)
    if _is_sentinel(url):
        from redis.asyncio.sentinel import Sentinel

        t = parse_sentinel_url(url)
        sentinel = Sentinel(list(t.sentinels), sentinel_kwargs=t.sentinel_kwargs(), socket_timeout=SOCKET_TIMEOUT_S)
        return sentinel.master_for(t.service, retry=no_retry, max_connections=max_connections,
                                   **t.connection_kwargs())
    pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=max_connections, timeout=SOCKET_TIMEOUT_S,
                                                    socket_timeout=SOCKET_TIMEOUT_S, retry=no_retry)
    return aioredis.Redis(connection_pool=pool)


def sync_client(url: str, *, timeout_s: float = 2.0) -> redis.Redis:
    """A blocking redis-py client for ``url`` (for the control plane's worker threads)."""
    _check_scheme(url)
    no_retry = Retry(NoBackoff(), 0)
    if _is_sentinel(url):
        from redis.sentinel import Sentinel

        t = parse_sentinel_url(url)
        skw = t.sentinel_kwargs() | {"socket_timeout": timeout_s}
        sentinel = Sentinel(list(t.sentinels), sentinel_kwargs=skw, socket_timeout=timeout_s)
        return sentinel.master_for(t.service, retry=no_retry, **t.connection_kwargs())  # type: ignore[no-any-return]
    return redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry=no_retry)


class PipelinedRedis:
    """``execute(*args)`` → the reply; commands issued in one event-loop turn go out as one pipeline."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client
        self._queue: list[tuple[tuple[Any, ...], asyncio.Future[Any]]] = []
        self._sending: set[asyncio.Task[None]] = set()

    @classmethod
    def from_url(cls, url: str, *, max_connections: int = MAX_CONNECTIONS) -> PipelinedRedis:
        return cls(async_client(url, max_connections=max_connections))

    async def execute(self, *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        if not self._queue:
            loop.call_soon(self._send_queued)
        self._queue.append((args, fut))
        return await fut

    async def evalsha(self, sha: str, script: str, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """EVALSHA; on NOSCRIPT (a restarted or flushed Redis) EVAL, which caches the script again."""
        try:
            return await self.execute("EVALSHA", sha, len(keys), *keys, *args)
        except NoScriptError:
            return await self.execute("EVAL", script, len(keys), *keys, *args)

    def _send_queued(self) -> None:
        batch, self._queue = self._queue, []
        task = asyncio.ensure_future(self._send(batch))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[tuple[tuple[Any, ...], asyncio.Future[Any]]]) -> None:
        try:
            if len(batch) == 1:  # a lone command skips the pipeline's bookkeeping
                replies: list[Any] = [await self._one(batch[0][0])]
            else:
                pipe = self.client.pipeline(transaction=False)
                for args, _ in batch:
                    pipe.execute_command(*args)
                replies = await pipe.execute(raise_on_error=False)
        except Exception as exc:  # connection refused or lost: every command of the batch fails
            replies = [exc] * len(batch)
        for (_, fut), reply in zip(batch, replies, strict=True):
            if fut.done():  # the caller gave up (timeout)
                continue
            if isinstance(reply, Exception):
                fut.set_exception(reply)
            else:
                fut.set_result(reply)

    async def _one(self, args: tuple[Any, ...]) -> Any:
        try:
            return await self.client.execute_command(*args)
        except redis.ResponseError as exc:
            return exc

    async def close(self) -> None:
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)
        await self.client.aclose()
