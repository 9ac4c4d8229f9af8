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
- Budgets: counters of tokens and money (micro-units, priced by ``price``) per budget period. A request
  is admitted only if what it may use fits: its ``Reservation`` (an upper bound of its prompt tokens + its
  ``max_tokens``, priced for money) is added to the shared counter at once (one atomic INCRBY), and the
  request is refused — and the amount given back — if the counter then exceeds the budget. When it
  finishes, ``record`` settles the counter to the real use. The counter thus always holds settled use plus
  every process's in-flight reservations, so concurrent requests never jointly overshoot a budget (one
  store call per admitted request under a budget; requests of keys without budgets pay nothing).
  Periods (``Limits.budget_period``, rule in ``core.economics.periods.budget_window``): the counter's name
  carries the period's label (``…:2026-12`` monthly, ``…:all`` for "none"), so a budget starts again from
  zero at the first instant of each UTC calendar month without any sweeper; a refusal's ``retry_after``
  is the time left until then.
  A money budget needs a price: when the model has none for the caller's tenant (``price`` answers
  None) or the limiter has no ``price`` at all, a request under a money budget is refused
  (``insufficient_quota``) rather than served unmetered.

A refusal carries ``retry_after``: when the bucket will have refilled enough.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

from zhisuan.core.economics.periods import budget_window
from zhisuan.gateway.protocols import Denial, KeyGrant, Limits, Reservation

if TYPE_CHECKING:  # redis-py is imported only where Redis is configured (it is slow to import)
    from zhisuan.gateway.redis_access import PipelinedRedis

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
TAKE_SHA = hashlib.sha1(TAKE_LUA.encode()).hexdigest()  # the name Redis caches the script under


@dataclass
class RedisLimitStore:
    """Buckets shared by every gateway process through Redis (one Lua script per call, atomic)."""

    client: PipelinedRedis
    prefix: str = "zs:lim:"

    async def take(self, bucket: str, want: int, rate: float, capacity: float, debit: float = 0.0) -> tuple[int, float]:
        args = (repr(float(rate)), repr(float(capacity)), want, repr(float(debit)))
        granted, level = await self.client.evalsha(TAKE_SHA, TAKE_LUA, (self.prefix + bucket,), args)
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
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time) -> None:
        self.store = store
        self.price = price
        self.lease_ttl_s = lease_ttl_s
        self.refresh_s = refresh_s
        self.flush_interval_s = flush_interval_s
        self.clock = clock
        self.wall = wall  # epoch seconds: which budget period it is
        self._windows: dict[str, tuple[str, float]] = {}  # budget period → (label, end in epoch s)
        self._permits: dict[str, tuple[int, float]] = {}
        self._levels: dict[str, _View] = {}
        self._debits: dict[str, tuple[int, float, float]] = {}
        self._spends: dict[str, int] = {}
        # Spends sent to the store and not yet acknowledged: still counted, so a request admitted
        # while a flush is in flight sees them (else it could slip over the budget in that window).
        self._sending: dict[str, int] = {}
        self._flush_handle: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._flushes: set[asyncio.Task[None]] = set()  # the spawned flushes still running

    @staticmethod
    def lease_size(rpm: int) -> int:
        return max(1, min(rpm // 50, 100))

    # -- admission ---------------------------------------------------------------------------------

    async def admit(self, grant: KeyGrant, model: str, reservation: Reservation | None = None) -> Denial | None:
        """Without a ``reservation`` nothing is reserved: a budget then only refuses once exhausted."""
        for scope, ident, limits in (("key", grant.key_id, grant.key_limits),
                                     ("tenant", grant.tenant_id, grant.tenant_limits)):
            if limits.rpm is None and limits.tpm is None and not limits.has_budget:
                continue
            denial = await self._admit_scope(scope, ident, limits, grant.tenant_id, model, reservation)
            if denial is not None:
                if reservation is not None:
                    await self._give_back(reservation)
                return denial
        return None

    async def _admit_scope(self, scope: str, ident: str, limits: Limits, tenant: str, model: str,
                           need: Reservation | None) -> Denial | None:
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
                want = self._wanted(unit, need, tenant, model) if need is not None else 0
                denial = await self._reserve(scope, ident, unit, budget, limits.budget_period, want, need)
                if denial is not None:
                    return denial
        if limits.rpm is not None:
            return await self._take_rpm(scope, ident, limits.rpm)
        return None

    def _unpriced(self, tenant: str, model: str) -> bool:
        return self.price is None or self.price(tenant, model, 0, 0) is None

    def _wanted(self, unit: str, need: Reservation, tenant: str, model: str) -> int:
        """What ``need`` may cost in ``unit`` (at least 1, so an exhausted budget refuses)."""
        if unit == "tokens":
            return max(1, need.prompt_tokens + need.completion_tokens)
        assert self.price is not None  # _unpriced refused otherwise
        return max(1, self.price(tenant, model, need.prompt_tokens, need.completion_tokens) or 0)

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

    def window(self, period: str) -> tuple[str, float]:
        """(label, end in epoch seconds) of the current ``period`` window; recomputed only at its end."""
        now = self.wall()
        cached = self._windows.get(period)
        if cached is None or now >= cached[1]:
            w = budget_window(period, datetime.fromtimestamp(now, UTC))
            cached = self._windows[period] = (w.label, w.end.timestamp() if w.end is not None else math.inf)
        return cached

    async def _reserve(self, scope: str, ident: str, unit: str, budget: int, period: str, want: int,
                       need: Reservation | None) -> Denial | None:
        label, end = self.window(period)
        name = f"spent:{unit}:{scope}:{ident}:{label}"
        total = await self.store.spend(name, want)
        if need is not None and want:
            need.held.append((name, want))  # given back by the caller if any check refuses
        # Settlements not yet in ``total``: unsent ones surely not; ones being sent maybe (counted if positive).
        pending = self._spends.get(name, 0) + max(0, self._sending.get(name, 0))
        if total + pending < budget or (want and total + pending == budget):
            return None
        if self._sending.get(name, 0) < 0:
            # A give-back is on its way to the store and ``total`` may predate it: refusing on that stale
            # total would turn away a request the budget has room for. Wait for it, then read again.
            await self._flushed()
            total = await self.store.spend(name, 0)
            pending = self._spends.get(name, 0) + max(0, self._sending.get(name, 0))
            if total + pending < budget or (want and total + pending == budget):
                return None
        left = max(0, budget - (total - want + pending))
        show: Callable[[int], str] = (lambda v: f"{Decimal(v) / MICROS} CNY") if unit == "money" else str
        per = "" if period == "none" else f" this {period.removesuffix('ly')}"
        retry = end - self.wall() if end != math.inf else BUDGET_RETRY_AFTER_S
        if left == 0:
            message = f"You exceeded the {unit} budget of {scope} {ident} ({show(budget)}{per})."
        else:
            message = (f"This request may use up to {show(want)} ({unit}) but the {unit} budget of {scope} {ident} "
                       f"({show(budget)}{per}) has {show(left)} left; lower max_tokens or the prompt.")
        return Denial("budget", scope, max(1.0, retry), message)

    async def _give_back(self, need: Reservation) -> None:
        held, need.held = need.held, []
        for name, amount in held:
            await self.store.spend(name, -amount)

    def release(self, reservation: Reservation) -> None:
        """A reservation of a request that was not served: given back with the next flush."""
        held, reservation.held = reservation.held, []
        for name, amount in held:
            self._spends[name] = self._spends.get(name, 0) - amount
        self._schedule_flush()

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

    async def _send_spend(self, name: str, amount: int) -> None:
        """Add ``amount`` (already counted in ``_sending``) to the shared total; it leaves ``_sending``
        when the store has it."""
        try:
            await self.store.spend(name, amount)
        finally:
            left = self._sending.get(name, 0) - amount
            if left:
                self._sending[name] = left
            else:
                self._sending.pop(name, None)

    # -- accounting --------------------------------------------------------------------------------

    def record(self, grant: KeyGrant, model: str, prompt_tokens: int, completion_tokens: int,
               reservation: Reservation | None = None) -> None:
        """Debit a finished request: TPM buckets, and budget counters — settling its reservation to the
        real use (the counters of the period it was admitted in). Its price is taken once (key and tenant
        pay the same amount); a model whose price vanished since admission costs nothing here (billing
        still rates the usage)."""
        tokens = prompt_tokens + completion_tokens
        cost: list[int | None] = []

        def price() -> int:
            if not cost:
                cost.append(self.price(grant.tenant_id, model, prompt_tokens, completion_tokens) if self.price else 0)
            return cost[0] or 0

        for scope, ident, limits in (("key", grant.key_id, grant.key_limits),
                                     ("tenant", grant.tenant_id, grant.tenant_limits)):
            if limits.tpm is not None and tokens:
                name = f"tpm:{scope}:{ident}"
                n = self._debits.get(name, (0, 0.0, 0.0))[0]
                self._debits[name] = (n + tokens, limits.tpm / 60.0, float(limits.tpm))
            if reservation is None and limits.has_budget:  # nothing reserved: debit the current period
                label = self.window(limits.budget_period)[0]
                if limits.token_budget is not None and tokens:
                    self._add_spend(f"spent:tokens:{scope}:{ident}:{label}", tokens)
                if limits.money_budget_micros is not None:
                    self._add_spend(f"spent:money:{scope}:{ident}:{label}", price())
        if reservation is not None:
            held, reservation.held = reservation.held, []
            for name, amount in held:
                self._add_spend(name, (tokens if name.startswith("spent:tokens:") else price()) - amount)
        self._schedule_flush()

    def _add_spend(self, name: str, amount: int) -> None:
        if amount:
            self._spends[name] = self._spends.get(name, 0) + amount

    def _schedule_flush(self) -> None:
        if (self._debits or self._spends) and self._flush_handle is None:
            loop = asyncio.get_running_loop()
            self._flush_handle = loop.call_later(self.flush_interval_s, self._start_flush)

    def _start_flush(self) -> None:
        self._flush_handle = None
        self._flushes.add(self._spawn(self.flush()))

    async def _flushed(self) -> None:
        """Until the flushes under way have reached the store (their failures are theirs to report)."""
        if self._flushes:
            await asyncio.gather(*self._flushes, return_exceptions=True)

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

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(self._flushes.discard)
        return task

    async def aclose(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        await self.flush()
        for task in list(self._tasks):
            await task
