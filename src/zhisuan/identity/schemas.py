"""Request and response bodies of the identity API."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
USERNAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$"


class Strict(BaseModel):
    """Bodies refuse unknown fields, so a typo is an error rather than silently ignored."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class TenantCreate(Strict):
    name: str = Field(pattern=NAME_PATTERN, description="lower-case letters, digits and dashes")
    display_name: str = Field(default="", max_length=200)
    contact_email: str | None = Field(default=None, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")


ModelName = Annotated[str, StringConstraints(min_length=1, max_length=128)]
RateLimit = Annotated[int, Field(ge=1, le=2**31 - 1)]
Budget = Annotated[int, Field(ge=1, le=2**62)]
# CNY, exact: a JSON string ("12.50", preferred) or number; ≥ 0 with at most 2 decimal places, so the
# gateway's micro-CNY counters hold it exactly (≤ 10¹² CNY keeps them within a signed 64-bit integer).
MoneyBudget = Annotated[Decimal, Field(ge=0, le=10**12, max_digits=15, decimal_places=2)]


# Budgets count per period (core.economics.periods.BUDGET_PERIODS): reset each UTC month, or never.
BudgetPeriod = Literal["monthly", "none"]


class TenantOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    name: str
    display_name: str
    contact_email: str | None
    created_at: datetime
    rpm: int | None = None
    tpm: int | None = None
    token_budget: int | None = None
    money_budget: Decimal | None = None
    budget_period: str = "monthly"


class TenantLimits(Strict):
    """Inference limits over all of a tenant's keys; null clears a limit (unlimited)."""

    rpm: RateLimit | None = Field(default=None, description="requests per minute")
    tpm: RateLimit | None = Field(default=None, description="tokens per minute")
    token_budget: Budget | None = Field(default=None, description="total tokens")
    money_budget: MoneyBudget | None = Field(default=None, description="total spend in CNY, priced by the price book")
    budget_period: BudgetPeriod = Field(default="monthly", description="budgets reset each UTC month, or never")


class UserCreate(Strict):
    username: str = Field(pattern=USERNAME_PATTERN)
    role: str = Field(pattern=r"^(operator|provider|tenant)$")
    tenant: str | None = Field(default=None, description="tenant name or id, for role tenant")
    provider: str | None = Field(default=None, description="provider name or id, for role provider")
    password: str | None = Field(default=None, min_length=12, max_length=200)


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    username: str
    role: str
    tenant_id: int | None
    provider_id: int | None
    disabled: bool
    created_at: datetime


class KeyCreate(Strict):
    name: str = Field(default="", max_length=100)
    scopes: list[str] = Field(default_factory=lambda: ["read", "write", "inference"], max_length=8)
    expires_in_days: float | None = Field(default=None, gt=0, le=3650)
    user: str | None = Field(default=None, description="username; operators may issue keys for others")
    models: list[ModelName] | None = Field(default=None, max_length=64, description="allowed models; null = all")
    rpm: RateLimit | None = Field(default=None, description="requests per minute; null = unlimited")
    tpm: RateLimit | None = Field(default=None, description="tokens per minute; null = unlimited")
    token_budget: Budget | None = Field(default=None, description="total tokens; null = unlimited")
    money_budget: MoneyBudget | None = Field(
        default=None, description="total spend in CNY (e.g. \"12.50\"), priced by the price book; null = unlimited")
    budget_period: BudgetPeriod = Field(default="monthly", description="budgets reset each UTC month, or never")


class KeyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    key_id: str
    name: str
    username: str
    scopes: list[str]
    site_id: int | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    models: list[str] | None = None
    rpm: int | None = None
    tpm: int | None = None
    token_budget: int | None = None
    money_budget: Decimal | None = None
    budget_period: str = "monthly"


class KeyIssued(KeyOut):
    key: str = Field(description="the secret key; shown once, store it now")


class LoginRequest(Strict):
    username: str = Field(max_length=64)
    password: str = Field(max_length=200)


class Whoami(BaseModel):
    username: str
    role: str
    tenant_id: int | None
    provider_id: int | None
    key_id: str | None
    scopes: list[str]


class AuditOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    at: datetime
    actor: str
    action: str
    object_type: str
    object_ref: str
    tenant_id: int | None
    provider_id: int | None
    detail: dict[str, object]
