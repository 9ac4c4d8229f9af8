"""Money budgets priced from the price book in force: a ``limits.PriceFn`` over the ``market`` tables.

Rule — the lookup an invoice makes for token usage (``billing.service.run_invoices`` →
``core.economics.rating``): the default price book (or the one named), its version in force at the
request, the model's ``input_tokens`` and ``output_tokens`` rates, the tenant's override when it has one,
else the base rate (site and region entries never apply to tokens), on demand (no discount). A rate is
CNY per million tokens, so a request costs

    in_rate × prompt_tokens + out_rate × completion_tokens   micro-CNY, rounded up to the micro

(rounded up so that rounding never lets a budget be overrun; invoices round each line to the fen, so the
two agree to within a fen per line).

A model is priced only when both of its token rates exist for the tenant. Otherwise — or when there is no
default book, or before the first ``load`` — the PriceFn answers None, and the limiter refuses requests
under a money budget (``limits.py``) instead of serving them unmetered. Keys of no tenant pay base rates.

Caching, like the key cache (``keys.DbKeyAuthority``): the whole book (all versions) is read in a worker
thread by ``load()``; a call that finds it older than ``ttl_s`` starts a background reload and prices
with what it has, so the hot path never waits for the database. Because every version is cached, a
version that takes effect later applies from its instant without a reload; a new version, rate or
override reaches each gateway within ``ttl_s``. A failed reload keeps the old book and retries after
``ttl_s``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import ROUND_CEILING, Decimal
from typing import Any

from zhisuan.core.economics import pricebook as pb
from zhisuan.core.economics.errors import RateNotFoundError

log = logging.getLogger("zhisuan.gateway.prices")
TENANT_PREFIX = "tenant-"
Rates = tuple[Decimal, Decimal]  # CNY per million input tokens, per million output tokens


def book_tenant(grant_tenant: str) -> str | None:
    """The price book's tenant id (``str(tenants.id)``) of a ``KeyGrant.tenant_id`` (``tenant-<id>``)."""
    return grant_tenant[len(TENANT_PREFIX):] if grant_tenant.startswith(TENANT_PREFIX) else None


def token_rates(version: pb.PriceBookVersion, tenant: str | None, model: str) -> Rates | None:
    """Both token rates of ``model`` for ``tenant`` in ``version``, or None if either is missing (pure)."""
    try:
        rates = [version.entry_for(model, kind, tenant_id=tenant).unit_price for kind in pb.TOKEN_MODELS]
    except RateNotFoundError:
        return None
    return rates[0], rates[1]


def cost_micros(rates: Rates, prompt_tokens: int, completion_tokens: int) -> int:
    """Micro-CNY of a request: per-million rates × tokens, rounded up (pure, exact)."""
    exact = rates[0] * prompt_tokens + rates[1] * completion_tokens
    return int(exact.to_integral_value(rounding=ROUND_CEILING))


class DbPrices:
    """``PriceFn`` of the gateway's limiter (see the module doc): ``prices(tenant, model, p, c)``."""

    def __init__(self, sessions: Any, *, book: str | None = None, ttl_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.sessions = sessions  # sessionmaker[Session]
        self.book_ref = book
        self.ttl_s = ttl_s
        self.clock = clock
        self.now = now
        self._book: pb.PriceBook | None = None
        self._loaded_at = float("-inf")
        self._reloading: asyncio.Task[None] | None = None
        self._rates: dict[tuple[int, str | None, str], Rates | None] = {}

    def read(self) -> pb.PriceBook | None:
        """The book from the database (blocking; worker thread). None when there is no such book."""
        from zhisuan.errors import InvalidInput
        from zhisuan.market.service import core_book, default_book

        with self.sessions() as session:
            try:
                return core_book(default_book(session, self.book_ref))
            except InvalidInput:
                return None

    async def load(self) -> None:
        """Read the book now (call once before serving); on error keep the old one and log."""
        try:
            book = await asyncio.get_running_loop().run_in_executor(None, self.read)
        except Exception:  # the database is briefly unreachable: price with what we have
            log.exception("cannot read the price book; keeping the previous one")
            self._loaded_at = self.clock()
            return
        self._book, self._rates, self._loaded_at = book, {}, self.clock()

    def __call__(self, tenant: str, model: str, prompt_tokens: int, completion_tokens: int) -> int | None:
        self._maybe_reload()
        rates = self.rates(tenant, model)
        return None if rates is None else cost_micros(rates, prompt_tokens, completion_tokens)

    def rates(self, tenant: str, model: str) -> Rates | None:
        """The rates in force now for a grant's tenant (memoised per book version)."""
        book = self._book
        if book is None:
            return None
        try:
            version = book.version_at(self.now())
        except RateNotFoundError:  # the book's first version is still in the future
            return None
        key = (version.version, tenant, model)
        if key not in self._rates:
            self._rates[key] = token_rates(version, book_tenant(tenant), model)
        return self._rates[key]

    def _maybe_reload(self) -> None:
        if self.clock() - self._loaded_at <= self.ttl_s or self._reloading is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # called outside the gateway's loop (a test): no background reload
            return
        self._reloading = loop.create_task(self.load())
        self._reloading.add_done_callback(self._reloaded)

    def _reloaded(self, _task: asyncio.Task[None]) -> None:
        self._reloading = None
