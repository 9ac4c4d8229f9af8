"""Key revocation reaches every gateway at once, not after the grant cache's TTL.

- In process (``zhisuan up``): ``identity.service.revoke_key`` calls ``key_revoked(session, key_id)``;
  once the transaction commits, the key id goes to every listener of ``REVOCATIONS`` — each
  ``keys.DbKeyAuthority`` of the process, which refuses the key from its next request on.
- Across processes (``zhisuan gateway`` sharing the database and Redis): when ``ZHISUAN_REDIS_URL`` is
  set in the control plane's environment (the variable ``zhisuan gateway --redis`` reads), the commit
  also bumps the revocation version ``zs:keys:revoked-version`` in Redis and logs the key id in the sorted
  set ``zs:keys:revoked`` (score = version). A gateway with a ``RedisRevocationWatch`` reads the version
  before it answers a request (one GET shared by all requests that arrive while it is in flight, so the
  cost per request falls as load rises) and drops the keys revoked since the version it last saw.
- Without Redis, or while it is unreachable, the grant cache's TTL (5 s) bounds a revoked key's life.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from zhisuan.config import redact_url_passwords

if TYPE_CHECKING:  # redis-py is imported only where Redis is configured (it is slow to import)
    from zhisuan.gateway.redis_access import PipelinedRedis

log = logging.getLogger("zhisuan.gateway.revocation")
VERSION_KEY = "zs:keys:revoked-version"
LOG_KEY = "zs:keys:revoked"
LOG_LENGTH = 10_000  # revocations kept in the log; a gateway further behind forgets every cached grant
REDIS_ENV = "ZHISUAN_REDIS_URL"
CHECK_TIMEOUT_S = 1.0  # a Redis that does not answer must not hold requests longer
PUBLISH_LUA = f"""
local v = redis.call('INCR', KEYS[1])
redis.call('ZADD', KEYS[2], v, ARGV[1])
redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -{LOG_LENGTH + 1})
return v
"""


class RevocationBus:
    """The process's revocation listeners (thread-safe: revocations commit in worker threads). Bound
    methods are held weakly, so a forgotten key authority does not linger."""

    def __init__(self) -> None:
        self._listeners: list[Callable[[], Callable[[str], None] | None]] = []
        self._lock = threading.Lock()

    def subscribe(self, listener: Callable[[str], None]) -> Callable[[], None]:
        ref: Callable[[], Callable[[str], None] | None] = \
            weakref.WeakMethod(listener) if inspect.ismethod(listener) else (lambda: listener)  # type: ignore[arg-type]
        with self._lock:
            self._listeners.append(ref)

        def unsubscribe() -> None:
            with self._lock:
                if ref in self._listeners:
                    self._listeners.remove(ref)

        return unsubscribe

    def publish(self, key_id: str) -> None:
        with self._lock:
            self._listeners = [ref for ref in self._listeners if ref() is not None]
            listeners = [ref() for ref in self._listeners]
        for listener in listeners:
            if listener is not None:
                listener(key_id)
        url = os.environ.get(REDIS_ENV)
        if url:
            publish_to_redis(url, key_id)


REVOCATIONS = RevocationBus()


def key_revoked(session: Any, key_id: str) -> None:
    """Announce ``key_id``'s revocation once ``session``'s transaction commits (a rolled-back revocation
    is never announced)."""
    from sqlalchemy import event

    event.listen(session, "after_commit", lambda _session: REVOCATIONS.publish(key_id), once=True)


def publish_to_redis(url: str, key_id: str, timeout_s: float = 2.0) -> int | None:
    """Bump the shared revocation version (blocking; runs in the revoking request's worker thread).
    A failure is logged: gateways then drop the key when their cached grant expires."""
    import redis

    from zhisuan.gateway.redis_access import RedisUrlError, sync_client

    try:
        client = sync_client(url, timeout_s=timeout_s)
        try:  # a Script is EVALSHA, loading the script on NOSCRIPT
            return int(client.register_script(PUBLISH_LUA)(keys=[VERSION_KEY, LOG_KEY], args=[key_id]))
        finally:
            client.close()
    except (redis.RedisError, OSError, ValueError, RedisUrlError) as exc:
        log.warning("revocation of key %s not published to Redis %s (%r): other gateways refuse it within their "
                    "grant cache TTL", key_id, redact_url_passwords(url), exc)
        return None


class RedisRevocationWatch:
    """A gateway's view of the shared revocation version; ``fresh()`` before each authentication."""

    def __init__(self, client: PipelinedRedis, on_revoked: Callable[[list[str]], None],
                 on_gap: Callable[[], None]) -> None:
        self.client = client
        self.on_revoked = on_revoked
        self.on_gap = on_gap
        self.seen = 0
        self._next: asyncio.Future[None] | None = None
        self._running = False
        self._failing = False

    async def start(self) -> None:
        self.seen = int(await self.client.execute("GET", VERSION_KEY) or 0)

    async def fresh(self) -> None:
        """Return once a version read that started after this call has been applied."""
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
            if not self._running:
                self._running = True
                asyncio.ensure_future(self._run())
        await asyncio.shield(self._next)

    async def _run(self) -> None:
        try:
            while self._next is not None:
                fut, self._next = self._next, None
                try:
                    await asyncio.wait_for(self._check(), CHECK_TIMEOUT_S)
                    if self._failing:
                        self._failing = False
                        log.warning("revocation version readable again")
                except Exception as exc:  # Redis down: the grant cache TTL bounds revocations meanwhile
                    if not self._failing:  # once per outage, not per request
                        self._failing = True
                        log.warning("revocation version unreadable (%r): revoked keys are refused within the "
                                    "grant cache TTL until Redis answers", exc)
                fut.set_result(None)
        finally:
            self._running = False

    async def _check(self) -> None:
        version = int(await self.client.execute("GET", VERSION_KEY) or 0)
        if version == self.seen:
            return
        if version < self.seen:  # the counter was reset (Redis flushed): trust nothing cached
            self.on_gap()
            self.seen = version
            return
        entries = await self.client.execute("ZRANGEBYSCORE", LOG_KEY, f"({self.seen}", "+inf", "WITHSCORES")
        if entries and not isinstance(entries[0], list):  # RESP2 (a flat list) rather than RESP3's pairs
            entries = [entries[i : i + 2] for i in range(0, len(entries), 2)]
        pairs = [(member.decode(), int(float(score))) for member, score in entries]
        if not pairs or pairs[0][1] > self.seen + 1:  # the log was trimmed past what we saw
            self.on_gap()
        self.on_revoked([key_id for key_id, _ in pairs])
        self.seen = max([version, *(score for _, score in pairs)])
