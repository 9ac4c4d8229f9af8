"""Rate limits (RPM, TPM) and budgets (tokens, money) per key and per tenant.

Shared state lives in a ``LimitStore`` (``RedisLimitStore`` across gateway processes,
``InMemoryLimitStore`` for one process), but the hot path rarely touches it:

- RPM: a token bucket in the store (capacity = rpm, refill rpm/60 per second). A process *leases*
  permits in small batches (``lease_size``: 1 for small limits, at most ~1/50 of the limit) and
  spends them locally; leased permits expire after ``lease_ttl_s``. Across P processes the limit can
  be exceeded by at most P × lease_size − P requests — exact (lease 1) for limits under 100 rpm.
- TPM: a bucket that finished requests debit with their real token counts (batched every
  ``flush_interval_s``); it may go negative, and a request is admitted while it is positive. The
  process refreshes its view of the level every ``refresh_s`` (at once when it looks exhausted).
- Budgets: monotone counters of tokens and money spent (micro-units, priced by ``price``);
  refused once spent ≥ budget. Budget resets belong to billing (a new counter name per period).
  A money budget needs a price: when the model has none for the caller's tenant (``price`` answers
  None) or the limiter has no ``price`` at all, a request under a money budget is refused
  (``insufficient_quota``) rather than served unmetered.

A refusal carries ``retry_after``: when the bucket will have refilled enough.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from zhisuan.gateway.protocols import Denial, KeyGrant, Limits
from zhisuan.gateway.resp import RedisClient

# tenant id (as in KeyGrant), model, prompt tokens, completion tokens → price in micro-units of the tenant's
# currency, or None when the model has no price for that tenant (``gateway.db_prices`` plugs the price book in).
PriceFn = Callable[[str, str, int, int], int | None]
BUDGET_RETRY_AFTER_S = 3600.0
# A missing price is an operator's fix (add a rate); prices are re-read within a minute.
UNPRICED_RETRY_AFTER_S = 60.0
MICROS = 1_000_000


class LimitStore(Protocol):
    async def take(self, bucket: str, want: int, rate: float, capacity: float, debit: float = 0.0) -> tuple[int, float]:
        """Refill ``bucket``, grant up to ``want`` whole permits, subtract ``debit``.
        Returns (granted, level after)."""
        ...

    async def spend(self, counter: str, amount: int) -> int:
        """Add ``amount`` to a counter; returns the new total."""
        ...


@dataclass
class InMemoryLimitStore:
    """One process's buckets (the same arithmetic as the Redis script)."""

    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)
    _counters: dict[str, int] = field(default_factory=dict)
    clock: Callable[[], float] = time.monotonic

    async def take(self, bucket: str, want: int, rate: float, capacity: float, debit: float = 0.0) -> tuple[int, float]:
        now = self.clock()
        level, ts = self._buckets.get(bucket, (capacity, now))
        level = min(capacity, level + (now - ts) * rate)
        granted = max(0, min(want, math.floor(level))) if want > 0 else 0
        level -= granted + debit
        self._buckets[bucket] = (level, now)
        return granted, level

    async def spend(self, counter: str, amount: int) -> int:
        total = self._counters.get(counter, 0) + amount
        self._counters[counter] = total
        return total


TAKE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rate = tonumber(ARGV[1]) / 1000
local cap = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local debit = tonumber(ARGV[4])
local v = redis.call('HMGET', KEYS[1], 'l', 't')
local level = tonumber(v[1])
local ts = tonumber(v[2])
if level == nil then level = cap; ts = now end
level = math.min(cap, level + (now - ts) * rate)
local granted = 0
if want > 0 and level >= 1 then granted = math.min(want, math.floor(level)) end
level = level - granted - debit
redis.call('HSET', KEYS[1], 'l', tostring(level), 't', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(cap / rate) + 60000)
return {granted, tostring(level)}
"""


@dataclass
class RedisLimitStore:
    """Buckets shared by every gateway process through Redis (one Lua script per call, atomic)."""

    client: RedisClient
    prefix: str = "zs:lim:"
    _sha: str | None = None

    async def take(self, bucket: str, want: int, rate: float, capacity: float, debit: float = 0.0) -> tuple[int, float]:
        args = (1, self.prefix + bucket, repr(float(rate)), repr(float(capacity)), want, repr(float(debit)))
        if self._sha is None:
            self._sha = (await self.client.execute("SCRIPT", "LOAD", TAKE_LUA)).decode()
        try:
            granted, level = await self.client.execute("EVALSHA", self._sha, *args)
        except Exception as exc:  # NOSCRIPT after a Redis restart
            if "NOSCRIPT" not in str(exc):
                raise
            granted, level = await self.client.execute("EVAL", TAKE_LUA, *args)
        return int(granted), float(level)

    async def spend(self, counter: str, amount: int) -> int:
        return int(await self.client.execute("INCRBY", self.prefix + counter, amount))


@dataclass
class _View:
    level: float
    at: float


class TokenBucketLimiter:
    """The RateLimiter of the gateway (see the module doc)."""

    def __init__(self, store: LimitStore, *, price: PriceFn | None = None, lease_ttl_s: float = 1.0,
                 refresh_s: float = 0.25, flush_interval_s: float = 0.05,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.price = price
        self.lease_ttl_s = lease_ttl_s
        self.refresh_s = refresh_s
        self.flush_interval_s = flush_interval_s
        self.clock = clock
        self._permits: dict[str, tuple[int, float]] = {}
        self._levels: dict[str, _View] = {}
        self._totals: dict[str, _View] = {}
        self._debits: dict[str, tuple[int, float, float]] = {}
        self._spends: dict[str, int] = {}
        # Spends sent to the store and not yet acknowledged: still counted, so a request admitted
        # while a flush is in flight sees them (else it could slip over the budget in that window).
        self._sending: dict[str, int] = {}
        self._flush_handle: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @staticmethod
    def lease_size(rpm: int) -> int:
        return max(1, min(rpm // 50, 100))

    # -- admission ---------------------------------------------------------------------------------

    async def admit(self, grant: KeyGrant, model: str) -> Denial | None:
        for scope, ident, limits in (("key", grant.key_id, grant.key_limits),
                                     ("tenant", grant.tenant_id, grant.tenant_limits)):
            if limits.rpm is None and limits.tpm is None and limits.token_budget is None \
                    and limits.money_budget_micros is None:
                continue
            denial = await self._admit_scope(scope, ident, limits, grant.tenant_id, model)
            if denial is not None:
                return denial
        return None

    async def _admit_scope(self, scope: str, ident: str, limits: Limits, tenant: str, model: str) -> Denial | None:
        """TPM and budgets first, the RPM bucket last, so a request refused for tokens or money does
        not spend a request permit."""
        now = self.clock()
        if limits.tpm is not None:
            denial = await self._check_tpm(scope, ident, limits.tpm, now)
            if denial is not None:
                return denial
        if limits.money_budget_micros is not None and self._unpriced(tenant, model):
            return Denial("budget", scope, UNPRICED_RETRY_AFTER_S,
                          f"The model '{model}' has no token price for this tenant, so the money budget of "
                          f"{scope} {ident} cannot be enforced; ask the operator to add input and output token "
                          "rates to the price book.")
        for budget, unit in ((limits.token_budget, "tokens"), (limits.money_budget_micros, "money")):
            if budget is not None:
                denial = await self._check_budget(scope, ident, budget, unit, now)
                if denial is not None:
                    return denial
        if limits.rpm is not None:
            return await self._take_rpm(scope, ident, limits.rpm)
        return None

    def _unpriced(self, tenant: str, model: str) -> bool:
        return self.price is None or self.price(tenant, model, 0, 0) is None

    async def _check_tpm(self, scope: str, ident: str, tpm: int, now: float) -> Denial | None:
        name = f"tpm:{scope}:{ident}"
        rate = tpm / 60.0
        level = self._level(name, tpm, rate, now)
        if level is None or level <= 0:
            await self._refresh_level(name, rate, tpm)
            level = self._level(name, tpm, rate, now)
        elif now - self._levels[name].at > self.refresh_s:
            self._spawn(self._refresh_level(name, rate, tpm))
        if level is not None and level <= 0:
            return Denial("tokens", scope, max(1.0, -level / rate),
                          f"Rate limit reached for tokens per minute on {scope} {ident}: limit {tpm}.")
        return None

    async def _check_budget(self, scope: str, ident: str, budget: int, unit: str, now: float) -> Denial | None:
        name = f"spent:{unit}:{scope}:{ident}"
        view = self._totals.get(name)
        spent = (view.level if view else 0) + self._unacknowledged(name)
        if view is None or spent >= budget:
            await self._refresh_total(name)
            spent = self._totals[name].level + self._unacknowledged(name)
        elif now - view.at > self.refresh_s:
            self._spawn(self._refresh_total(name))
        if spent < budget:
            return None
        shown = f"{Decimal(budget) / MICROS} CNY" if unit == "money" else str(budget)
        return Denial("budget", scope, BUDGET_RETRY_AFTER_S,
                      f"You exceeded the {unit} budget of {scope} {ident} ({shown}).")

    async def _take_rpm(self, scope: str, ident: str, rpm: int) -> Denial | None:
        name = f"rpm:{scope}:{ident}"
        left, leased_at = self._permits.get(name, (0, 0.0))
        if left > 0 and self.clock() - leased_at < self.lease_ttl_s:
            self._permits[name] = (left - 1, leased_at)
            return None
        rate = rpm / 60.0
        granted, level = await self.store.take(name, self.lease_size(rpm), rate, rpm)
        if granted == 0:
            self._permits.pop(name, None)
            return Denial("requests", scope, max(1.0, (1 - level) / rate),
                          f"Rate limit reached for requests per minute on {scope} {ident}: limit {rpm}.")
        self._permits[name] = (granted - 1, self.clock())
        return None

    def _level(self, name: str, capacity: int, rate: float, now: float) -> float | None:
        view = self._levels.get(name)
        if view is None:
            return None
        pending = self._debits.get(name, (0, 0.0, 0.0))[0]
        return min(float(capacity), view.level + (now - view.at) * rate) - pending

    async def _refresh_level(self, name: str, rate: float, capacity: float) -> None:
        pending = self._debits.pop(name, None)
        debit = pending[0] if pending else 0
        _, level = await self.store.take(name, 0, rate, capacity, debit)
        self._levels[name] = _View(level, self.clock())

    def _unacknowledged(self, name: str) -> int:
        return self._spends.get(name, 0) + self._sending.get(name, 0)

    async def _send_spend(self, name: str, amount: int) -> None:
        """Add ``amount`` (already counted in ``_sending``) to the shared total; it leaves ``_sending``
        when the store has it."""
        try:
            total = await self.store.spend(name, amount)
        finally:
            left = self._sending.get(name, 0) - amount
            if left:
                self._sending[name] = left
            else:
                self._sending.pop(name, None)
        # No await between the two updates: the total now includes what left _sending.
        self._totals[name] = _View(float(total), self.clock())

    async def _refresh_total(self, name: str) -> None:
        amount = self._spends.pop(name, 0)
        self._sending[name] = self._sending.get(name, 0) + amount
        await self._send_spend(name, amount)

    # -- accounting --------------------------------------------------------------------------------

    def record(self, grant: KeyGrant, model: str, prompt_tokens: int, completion_tokens: int) -> None:
        """Debit a finished request. Its price is taken once (key and tenant pay the same amount); a
        model whose price vanished since admission costs nothing here (billing still rates the usage)."""
        tokens = prompt_tokens + completion_tokens
        cost: int | None = None
        priced = False
        for scope, ident, limits in (("key", grant.key_id, grant.key_limits),
                                     ("tenant", grant.tenant_id, grant.tenant_limits)):
            if limits.tpm is not None and tokens:
                name = f"tpm:{scope}:{ident}"
                n = self._debits.get(name, (0, 0.0, 0.0))[0]
                self._debits[name] = (n + tokens, limits.tpm / 60.0, float(limits.tpm))
            if limits.token_budget is not None and tokens:
                name = f"spent:tokens:{scope}:{ident}"
                self._spends[name] = self._spends.get(name, 0) + tokens
            if limits.money_budget_micros is not None and self.price is not None:
                if not priced:
                    cost, priced = self.price(grant.tenant_id, model, prompt_tokens, completion_tokens), True
                if cost:
                    name = f"spent:money:{scope}:{ident}"
                    self._spends[name] = self._spends.get(name, 0) + cost
        if (self._debits or self._spends) and self._flush_handle is None:
            loop = asyncio.get_running_loop()
            self._flush_handle = loop.call_later(self.flush_interval_s, self._start_flush)

    def _start_flush(self) -> None:
        self._flush_handle = None
        self._spawn(self.flush())

    async def flush(self) -> None:
        debits, self._debits = self._debits, {}
        spends, self._spends = self._spends, {}
        for name, (n, rate, capacity) in debits.items():
            _, level = await self.store.take(name, 0, rate, capacity, n)
            self._levels[name] = _View(level, self.clock())
        for name, amount in spends.items():  # all counted before the first await
            self._sending[name] = self._sending.get(name, 0) + amount
        for name, amount in spends.items():
            await self._send_spend(name, amount)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        await self.flush()
        for task in list(self._tasks):
            await task
