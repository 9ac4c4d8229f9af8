"""Key authorities. The hot path is one dict lookup: grants are cached by the SHA-256 of the token.

- ``InMemoryKeyAuthority``: grants registered in the process (tests, benchmarks, one-box demos).
- ``DbKeyAuthority``: the platform's API keys (``zs_<id>_<secret>``, verified by
  ``identity.keys.KeyVerifier`` against the database in a worker thread), cached for ``ttl_s``. A
  revocation takes effect at once (``revocation``): the process's own revocations are pushed to it, and
  with a ``RedisRevocationWatch`` (``watch``) it checks the shared revocation version before each request;
  a revoked key id is refused even from a grant cached (or being verified) before the revocation.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from zhisuan.gateway.protocols import UNLIMITED, KeyGrant, KeyRejected, Limits


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass
class InMemoryKeyAuthority:
    _grants: dict[bytes, KeyGrant] = field(default_factory=dict)

    def add(self, token: str, grant: KeyGrant) -> None:
        self._grants[digest(token)] = grant

    def revoke(self, token: str) -> None:
        self._grants.pop(digest(token), None)

    async def authenticate(self, token: str, client: str | None = None) -> KeyGrant:
        grant = self._grants.get(digest(token))
        if grant is None:
            raise KeyRejected("Incorrect API key provided.")
        return grant


LimitsFor = Callable[[Any], tuple[frozenset[str] | None, Limits, Limits]]


def no_limits(_principal: Any) -> tuple[frozenset[str] | None, Limits, Limits]:
    return None, UNLIMITED, UNLIMITED


@dataclass
class DbKeyAuthority:
    """Platform keys from the database. ``limits_for(principal)`` returns (models, key limits,
    tenant limits) — the seam where model scopes and limits stored per key/tenant plug in."""

    sessions: Any  # sessionmaker[Session]
    limits_for: LimitsFor = no_limits
    ttl_s: float = 5.0
    negative_ttl_s: float = 1.0
    watch: Any = None  # a revocation.RedisRevocationWatch, set by whoever owns the Redis client
    _cache: dict[bytes, tuple[float, KeyGrant | KeyRejected]] = field(default_factory=dict)
    _revoked: set[str] = field(default_factory=set)
    _verifier: Any = None
    _unsubscribe: Callable[[], None] | None = None

    def __post_init__(self) -> None:
        from zhisuan.gateway.revocation import REVOCATIONS
        from zhisuan.identity.keys import KeyVerifier

        self._verifier = KeyVerifier()
        self._unsubscribe = REVOCATIONS.subscribe(self.revoked)

    def revoked(self, key_id: str) -> None:
        """Refuse ``key_id`` from now on (called from any thread; a set add is atomic)."""
        self._revoked.add(key_id)

    def revoked_many(self, key_ids: list[str]) -> None:
        self._revoked.update(key_ids)

    def forget_all(self) -> None:
        """Drop every cached grant (revocations were missed): each key is verified again."""
        self._cache = {}

    def close(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    async def authenticate(self, token: str, client: str | None = None) -> KeyGrant:
        if self.watch is not None:
            await self.watch.fresh()
        d = digest(token)
        hit = self._cache.get(d)
        now = time.monotonic()
        if hit is None or hit[0] < now:
            result = await asyncio.get_running_loop().run_in_executor(None, self._verify, token, client)
            ttl = self.ttl_s if isinstance(result, KeyGrant) else self.negative_ttl_s
            if len(self._cache) > 100_000:
                self._cache.clear()
            self._cache[d] = hit = (now + ttl, result)
        value = hit[1]
        if isinstance(value, KeyRejected):
            raise value
        if value.key_id in self._revoked:
            raise KeyRejected(f"API key {value.key_id} was revoked")  # the verifier's words
        return value

    def _verify(self, token: str, client: str | None = None) -> KeyGrant | KeyRejected:
        from zhisuan.errors import DomainError, TooManyRequests

        try:
            with self.sessions() as session:
                # Failed checks count per client address, so unauthenticated callers cannot buy hashing
                # work on demand: past the verifier's allowance they wait before any hashing.
                principal = self._verifier.authenticate(session, token, datetime.now(UTC), client=client)
                session.commit()
        except TooManyRequests as exc:
            return KeyRejected(exc.message, code="too_many_failed_key_checks", retry_after=exc.retry_after_s)
        except DomainError as exc:
            return KeyRejected(exc.message)
        if "inference" not in principal.scopes:
            return KeyRejected(f"API key {principal.key_id} lacks the 'inference' scope", code="insufficient_scope")
        tenant = f"tenant-{principal.tenant_id}" if principal.tenant_id is not None else f"user-{principal.user_id}"
        models, key_limits, tenant_limits = self.limits_for(principal)
        return KeyGrant(key_id=principal.key_id or "", tenant_id=tenant, models=models,
                        key_limits=key_limits, tenant_limits=tenant_limits, owner=principal.tenant_id)
