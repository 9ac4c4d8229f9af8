"""The gateway's seams: who a key is (KeyAuthority), whether it may call now (RateLimiter), where
usage goes (UsageSink). Implementations live in keys.py, limits.py and usage.py."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Limits:
    """Per key or per tenant. None = unlimited. Budgets are totals per ``budget_period``
    (``core.economics.periods.BUDGET_PERIODS``: "monthly", reset at each UTC calendar month, or "none"):
    tokens, or money in micro-units of the tenant's currency (priced by a ``PriceFn``)."""

    rpm: int | None = None
    tpm: int | None = None
    token_budget: int | None = None
    money_budget_micros: int | None = None
    budget_period: str = "monthly"

    @property
    def has_budget(self) -> bool:
        return self.token_budget is not None or self.money_budget_micros is not None


UNLIMITED = Limits()


@dataclass(frozen=True)
class KeyGrant:
    """What a valid key may do. ``models`` None = every model. ``tenant_id`` names the tenant in usage
    and limits; ``owner`` is the platform tenant id the key belongs to (None: no tenant), which decides
    the private models it may see (``router.Router.resolve``)."""

    key_id: str
    tenant_id: str
    models: frozenset[str] | None = None
    key_limits: Limits = UNLIMITED
    tenant_limits: Limits = UNLIMITED
    owner: int | None = None

    def may_use(self, model: str) -> bool:
        return self.models is None or model in self.models


class KeyRejected(Exception):
    """``retry_after`` set: the client failed too many key checks and is throttled (429), not refused (401)."""

    def __init__(self, message: str, code: str = "invalid_api_key", retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.retry_after = retry_after


class KeyAuthority(Protocol):
    async def authenticate(self, token: str, client: str | None = None) -> KeyGrant:
        """The grant of a bearer token; raises KeyRejected. ``client``: the caller's address (throttled
        on failed checks)."""
        ...


@dataclass(frozen=True)
class Denial:
    """Why a request is refused now; ``retry_after`` in seconds."""

    kind: str  # "requests" | "tokens" | "budget"
    scope: str  # "key" | "tenant"
    retry_after: float
    message: str


@dataclass
class Reservation:
    """What a request may use at most — ``prompt_tokens`` (an upper bound) + ``completion_tokens``
    (its ``max_tokens``) — reserved against budgets at admission; ``held`` lists the (counter, amount)
    the limiter took, settled to the real use by ``record``."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    held: list[tuple[str, int]] = field(default_factory=list)
    # The request set no max_tokens: the gateway forwards it with max_tokens = completion_tokens.
    sets_max_tokens: bool = False
    prompt_text: int = 0  # UTF-8 bytes of the prompt's text (the rest of prompt_tokens is template overhead)


class RateLimiter(Protocol):
    async def admit(self, grant: KeyGrant, model: str, reservation: Reservation | None = None) -> Denial | None:
        """Take one request permit (RPM), check token buckets and reserve against budgets."""
        ...

    def record(self, grant: KeyGrant, model: str, prompt_tokens: int, completion_tokens: int,
               reservation: Reservation | None = None) -> None:
        """Debit the tokens (and their price) a finished request used, settling its reservation.
        Never blocks."""
        ...

    def release(self, reservation: Reservation) -> None:
        """Give back a reservation of a request that was not forwarded after all."""
        ...


@dataclass
class UsageEvent:
    """One forwarded request's metered usage. ``event_id`` is the idempotency key."""

    event_id: str
    key_id: str
    tenant_id: str
    model: str
    replica: str
    prompt_tokens: int
    completion_tokens: int
    stream: bool
    status: str  # "ok" | "client_disconnected" | "upstream_error" | "upstream_failed"
    started_at: float
    ended_at: float
    # True when the engine did not report usage and the gateway counted (disconnect mid-stream).
    estimated: bool = False
    endpoint: str = "chat.completions"
    extra: dict[str, object] = field(default_factory=dict)


class UsageSink(Protocol):
    async def ingest(self, events: Sequence[UsageEvent]) -> None:
        """Durably accept a batch. Must be idempotent on ``event_id``: a batch may be re-sent."""
        ...
