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

Why ``PipelinedRedis`` rather than redis-py's commands: the gateway sends one to three small commands per
request from many concurrent requests. redis-py's client takes a pooled connection per command and
reads its reply under a timer of its own (~100 µs of CPU per command here); the gateway's commands are
instead queued and written in batches on redis-py connections (its protocol, hiredis parser, auth,
TLS, Sentinel fail-over), with one timeout per batch, so the cost per command falls as load rises — as
with the hand-written client this replaced, which pipelined every command on one connection. Replies
are Redis's own (no redis-py response callbacks): bytes, ints, lists.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import redis
import redis.asyncio as aioredis
from hiredis import pack_command
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError
from redis.retry import Retry

DEFAULT_PORT = 6379
DEFAULT_SENTINEL_PORT = 26379
MAX_CONNECTIONS = 32
SOCKET_TIMEOUT_S = 5.0
LANES = 2  # batches in flight at once (each on a connection of its own)
MAX_BATCH = 512  # commands per write
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


def _is_sentinel(url: str) -> bool:
    return url.split("://", 1)[0] in ("redis+sentinel", "rediss+sentinel")


def _check_scheme(url: str) -> None:
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme not in ("redis", "rediss", "unix", "redis+sentinel", "rediss+sentinel"):
        hint = " (Redis Cluster is not supported)" if "cluster" in scheme else ""
        raise RedisUrlError(f"unsupported Redis URL scheme {scheme!r}{hint}: use redis://, rediss://, unix:// "
                            "or redis+sentinel://")


def async_client(url: str, *, max_connections: int = MAX_CONNECTIONS,
                 socket_timeout: float | None = SOCKET_TIMEOUT_S) -> aioredis.Redis:
    """A redis-py asyncio client for ``url`` (see the module doc); no connection is made yet."""
    _check_scheme(url)
    no_retry = AsyncRetry(NoBackoff(), 0)
    if _is_sentinel(url):
        from redis.asyncio.sentinel import Sentinel

        t = parse_sentinel_url(url)
        sentinel = Sentinel(list(t.sentinels), sentinel_kwargs=t.sentinel_kwargs())
        return sentinel.master_for(t.service, retry=no_retry, max_connections=max_connections,
                                   socket_timeout=socket_timeout, socket_connect_timeout=SOCKET_TIMEOUT_S,
                                   **t.connection_kwargs())
    pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=max_connections, timeout=SOCKET_TIMEOUT_S,
                                                    socket_timeout=socket_timeout,
                                                    socket_connect_timeout=SOCKET_TIMEOUT_S, retry=no_retry)
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
    """``execute(*args)`` → the reply. Commands wait in one queue; each of ``lanes`` senders takes all
    that is queued, writes it on a pooled connection in one go and reads the replies in order, then
    takes what queued meanwhile — so under load many requests' commands share one write and one read.
    A batch gets ``timeout_s`` in all; when it fails (timeout, connection lost) its connection is
    dropped and every command of the batch not yet answered fails with that error."""

    def __init__(self, client: aioredis.Redis, *, lanes: int = LANES, max_batch: int = MAX_BATCH,
                 timeout_s: float = SOCKET_TIMEOUT_S) -> None:
        self.client = client
        self.max_batch = max_batch
        self.timeout_s = timeout_s
        self._queue: list[tuple[tuple[Any, ...], asyncio.Future[Any]]] = []
        self._free_lanes = lanes
        self._lanes: set[asyncio.Task[None]] = set()
        self._idle: list[Any] = []  # connections between batches

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> PipelinedRedis:
        # No per-read timeout in redis-py (it costs a timer per reply): the batch has one.
        return cls(async_client(url, socket_timeout=None), **kwargs)

    async def execute(self, *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._queue.append((args, fut))
        if self._free_lanes and len(self._queue) == 1:
            # The lane starts on the next loop turn and takes everything queued by then: this turn's
            # commands go out together.
            self._free_lanes -= 1
            lane = loop.create_task(self._lane())
            self._lanes.add(lane)
            lane.add_done_callback(self._lanes.discard)
        return await fut

    async def evalsha(self, sha: str, script: str, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """EVALSHA; on NOSCRIPT (a restarted or flushed Redis) EVAL, which caches the script again."""
        try:
            return await self.execute("EVALSHA", sha, len(keys), *keys, *args)
        except NoScriptError:
            return await self.execute("EVAL", script, len(keys), *keys, *args)

    def _take(self) -> list[tuple[tuple[Any, ...], asyncio.Future[Any]]]:
        batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
        return batch

    async def _lane(self) -> None:
        try:
            while batch := self._take():
                await self._send(batch)
        finally:
            self._free_lanes += 1
            if self._queue and self._free_lanes:  # queued while this lane was finishing: nobody else will send it
                self._free_lanes -= 1
                lane = asyncio.get_running_loop().create_task(self._lane())
                self._lanes.add(lane)
                lane.add_done_callback(self._lanes.discard)

    async def _send(self, batch: list[tuple[tuple[Any, ...], asyncio.Future[Any]]]) -> None:
        answered = 0
        try:
            async with asyncio.timeout(self.timeout_s):
                # A connection is kept between batches (the pool's checks cost as much as the batch at low load).
                conn = self._idle.pop() if self._idle else await self.client.connection_pool.get_connection()
                try:
                    # hiredis's C packer: redis-py's own was most of the client's CPU at this rate
                    await conn.send_packed_command(b"".join([pack_command(args) for args, _ in batch]),
                                                   check_health=False)
                    for _, fut in batch:
                        try:
                            reply: Any = await conn.read_response()
                        except redis.ResponseError as exc:  # this command's error; the connection is fine
                            reply = exc
                        answered += 1
                        _settle(fut, reply)
                except BaseException:
                    await conn.disconnect(nowait=True)  # replies may be left unread: never reuse it
                    await self.client.connection_pool.release(conn)
                    raise
                self._idle.append(conn)
        except Exception as exc:  # connection refused or lost, timeout
            error = exc if isinstance(exc, redis.RedisError) else redis.ConnectionError(f"Redis: {exc!r}")
            for _, fut in batch[answered:]:
                _settle(fut, error)

    async def close(self) -> None:
        if self._lanes:
            await asyncio.gather(*self._lanes, return_exceptions=True)
        while self._idle:
            await self.client.connection_pool.release(self._idle.pop())
        await self.client.aclose()


def _settle(fut: asyncio.Future[Any], reply: Any) -> None:
    if fut.done():  # the caller gave up (its own timeout)
        return
    if isinstance(reply, Exception):
        fut.set_exception(reply)
    else:
        fut.set_result(reply)
