"""Request and response bodies of the billing API. Money is Decimal, serialised as a JSON string."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, Field, StrictInt, ValidationInfo

from zhisuan.identity.schemas import Strict

PERIOD = Field(pattern=r"^[0-9]{4}-(0[1-9]|1[0-2])$", description="billing period YYYY-MM (UTC calendar month)")


class AllocationCreate(Strict):
    tenant: str = Field(min_length=1, max_length=64)
    node: str = Field(min_length=1, max_length=200, description="node ref: site/name or id")
    devices: list[int] | None = Field(default=None, max_length=1024, description="device indexes (default: all)")
    milli: int = Field(default=1000, ge=1, le=1000, description="thousandths of each device held")
    purpose: str = Field(default="manual", pattern=r"^(job|instance|service|manual)$")
    ref: str = Field(default="", max_length=200, description="what holds it, e.g. job:42")
    contract: int | None = Field(default=None, description="the tenant's contract whose entitlement this uses")
    billable: bool | None = Field(default=None, description="default: true unless inside a contract's entitlement")
    pricing_model: str = Field(default="device_hour", pattern=r"^(device_hour|server_month|pflops_year)$")
    tier: str = Field(default="on_demand", pattern=r"^(on_demand|spot|reserved)$")
    term_months: int = Field(default=0, ge=0, le=600)
    start: datetime | None = Field(default=None, description="default: now")
    end: datetime | None = None


class AllocationEnd(Strict):
    at: datetime | None = Field(default=None, description="default: now")


class AllocationOut(BaseModel):
    id: int
    tenant: str
    provider: str
    site: str | None
    node: str | None
    device_index: int | None
    model: str
    milli: int
    purpose: str
    ref: str
    contract_id: int | None
    billable: bool
    pricing_model: str
    tier: str
    start: datetime
    end: datetime | None
    end_reason: str | None = Field(default=None, description="why the platform ended it (its device disappeared)")
    cpu_milli: int = Field(default=0, description="milli-cores held (a CPU/memory hold: no device)")
    memory_mib: int = 0
    metered_until: datetime | None


NO_NUL = r"^[^\x00]+$"


class BulkStrict(Strict):
    """``Strict``'s rules for the bulk ingestion bodies, checked by pydantic-core instead of the Python
    validator ``Strict`` runs on every field (why: that validator walked each batch's 1000 events as
    lists and dicts and cost ~150 µs per event, most of the ingestion CPU). Same rules: unknown fields
    refused, ints strict (``StrictInt``: no bools, floats or strings), no NUL in a string (each string
    field's pattern), bounds as declared."""

    @classmethod
    def strict_scalars_and_no_nul(cls, value: Any, info: ValidationInfo) -> Any:  # type: ignore[override]
        return value  # replaced (same name) by the declarative checks above


class TokenEventIn(BulkStrict):
    event_id: str = Field(pattern=r"^[A-Za-z0-9._:/-]{1,150}$", description="the gateway's idempotency key")
    tenant: str = Field(min_length=1, max_length=64, pattern=NO_NUL)
    provider: str = Field(min_length=1, max_length=64, pattern=NO_NUL)
    model: str = Field(min_length=1, max_length=128, pattern=NO_NUL,
                       description="served model, as named in the price book")
    at: datetime
    input_tokens: StrictInt = Field(ge=0, le=10**12)
    output_tokens: StrictInt = Field(ge=0, le=10**12)
    api_key_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,32}$",
                                   description="public id of the caller's API key (the <id> of zs_<id>_<secret>); "
                                               "it must belong to the event's tenant")
    requests: StrictInt = Field(default=1, ge=1, le=10**9,
                                description="gateway requests this event sums (a roll-up per key, model and "
                                            "second; see gateway.http_sink); 1 for a single request")


class TokenBatch(BulkStrict):
    events: list[TokenEventIn] = Field(min_length=1, max_length=1000)


class IngestResult(BaseModel):
    status: str = Field(description="'accepted', 'replayed' (all already recorded) or 'partly replayed'")
    accepted: list[str]
    replayed: list[str]


class MeterRun(Strict):
    until: datetime | None = Field(default=None, description="meter allocations up to here (default now)")


class MeterResult(BaseModel):
    until: datetime
    allocations: int
    records: int


class UsageOut(BaseModel):
    key: str
    source_kind: str
    source_id: str
    tenant: str
    provider: str
    model: str
    pricing_model: str
    tier: str
    contract_id: int | None
    start: datetime
    end: datetime
    quantity: int
    pflops_seconds: Decimal
    api_key_id: str | None = None
    invoice_line_id: int | None


class UsageSummaryRow(BaseModel):
    """One group of token usage; a dimension not grouped by is null. ``amount`` is null when the price
    book has no price for some of the group's usage (``note`` says why)."""

    tenant: str | None = None
    key: str | None = None
    model: str | None = None
    day: date | None = None
    requests: int
    input_tokens: int
    output_tokens: int
    amount: Decimal | None
    note: str | None = None


class BudgetOut(BaseModel):
    scope: str = Field(description="'tenant' or 'key'")
    ref: str = Field(description="the tenant's name or the key's id")
    budget_period: str = Field(description="'monthly' (resets at each UTC month start) or 'none' (never resets)")
    period: str = Field(description="the current budget period: YYYY-MM, or 'all'")
    start: datetime = Field(description="first instant of the current period counted")
    end: datetime | None = Field(description="when the budget starts again from zero (null: never)")
    token_budget: int | None
    tokens_used: int = Field(description="input + output tokens recorded in the current period")
    money_budget: Decimal | None
    money_used: Decimal | None = Field(description="recorded usage priced by the default book (null if unpriced)")


class UsageSummaryOut(BaseModel):
    group_by: list[str]
    start: datetime = Field(description="first instant counted (UTC)")
    end: datetime = Field(description="first instant not counted (UTC)")
    book: str | None = Field(description="the price book the amounts come from (the default book)")
    currency: str | None
    rows: list[UsageSummaryRow]
    totals: UsageSummaryRow = Field(description="all rows together, priced as the invoice prices them")
    notes: list[str]
    budgets: list[BudgetOut] = Field(default_factory=list, description=(
        "for a summary about one tenant: its budgets and its keys' (those with one, or the key asked about), "
        "each with its current period and the usage recorded against it"))


class InvoiceRun(Strict):
    period: str = PERIOD
    book: str | None = Field(default=None, description="price book (default: the default book)")


class InvoiceLineOut(BaseModel):
    line_no: int
    kind: str
    provider: str
    model: str
    pricing_model: str
    tier: str
    site: str | None
    region: str | None
    contract_id: int | None
    usage_quantity: int
    billable_quantity: Decimal
    unit: str
    list_price: Decimal
    discount: Decimal
    unit_price: Decimal
    exact_amount: Decimal
    amount: Decimal
    currency: str
    price_source: str
    usage_record_keys: list[str]
    description: str = ""  # what a non-usage line is for (an ETTR credit: measured ETTR, target, tier)


class InvoiceOut(BaseModel):
    id: int
    number: str
    tenant: str
    period: str
    period_start: datetime
    period_end: datetime
    currency: str
    total: Decimal
    book: str
    issued_at: datetime
    lines: list[InvoiceLineOut]


class SettlementRun(Strict):
    period: str = PERIOD


class SettlementOut(BaseModel):
    provider: str
    period: str
    currency: str
    revenue: Decimal
    share: Decimal
    payout: Decimal
    lines: list[list[object]]
    computed_at: datetime | None


class MarginOut(BaseModel):
    period: str
    currency: str
    revenue: Decimal
    payouts: Decimal
    margin: Decimal
    settlements: list[SettlementOut]
