"""Request and response bodies of the identity API."""

from __future__ import annotations

import types
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationInfo, field_validator

NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
USERNAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$"


def scalar_type(annotation: Any) -> type | None:
    """``int`` or ``bool`` when a field holds exactly that scalar (optionally None), else None."""
    if get_origin(annotation) is Annotated:
        return scalar_type(get_args(annotation)[0])
    if get_origin(annotation) in (Union, types.UnionType):
        kinds = [arg for arg in get_args(annotation) if arg is not type(None)]
        return scalar_type(kinds[0]) if len(kinds) == 1 else None
    return annotation if annotation in (int, bool) else None


def item_type(annotation: Any) -> type | None:
    """``int`` or ``bool`` when a field is a list of that scalar (optionally None), else None."""
    if get_origin(annotation) is Annotated:
        return item_type(get_args(annotation)[0])
    if get_origin(annotation) in (Union, types.UnionType):
        kinds = [arg for arg in get_args(annotation) if arg is not type(None)]
        return item_type(kinds[0]) if len(kinds) == 1 else None
    return scalar_type(get_args(annotation)[0]) if get_origin(annotation) is list else None


MAX_STORED_INT = 2**63 - 1


def check_strict_scalar(kind: type, value: Any) -> None:
    if kind is bool and not isinstance(value, bool):
        raise ValueError("must be true or false")
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ValueError("must be an integer")
    if kind is int and not -MAX_STORED_INT <= value <= MAX_STORED_INT:
        # The widest integer column (BIGINT; SQLite's INTEGER) holds 64 bits: a larger number would be a
        # driver overflow (500) at the flush. Fields stored in narrower columns carry their own bounds.
        raise ValueError(f"must be between -{MAX_STORED_INT} and {MAX_STORED_INT}")


def contains_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(contains_nul(k) or contains_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(contains_nul(item) for item in value)
    return False


class Strict(BaseModel):
    """Base of every request body.

    - Unknown fields are refused, so a typo is an error rather than silently ignored.
    - Integers and booleans are strict: ``"rpm": true`` or ``"drained": "yes"`` are errors, not 1 and
      True. (Pydantic's model-wide strict mode would also refuse the JSON strings that datetimes and
      decimals arrive as, so strictness is applied to int and bool fields only.)
    - No string may hold a NUL character: PostgreSQL cannot store one, and no name needs one.
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*", mode="before")
    @classmethod
    def strict_scalars_and_no_nul(cls, value: Any, info: ValidationInfo) -> Any:
        if contains_nul(value):
            raise ValueError("must not contain a NUL character")
        field = cls.model_fields.get(info.field_name or "")
        if value is None or field is None:
            return value
        kind = scalar_type(field.annotation)
        if kind is not None:
            check_strict_scalar(kind, value)
        items = item_type(field.annotation)
        if items is not None and isinstance(value, list):
            for item in value:
                check_strict_scalar(items, item)
        return value


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
