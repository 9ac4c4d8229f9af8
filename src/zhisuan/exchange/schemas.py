"""Request and response bodies of the exchange API. Money is Decimal, serialised as a JSON string."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, Field

from zhisuan.identity.schemas import Strict

# Bounds that refuse nonsense at the edge (a negative or absurd price is an input error; a cap below
# every floor is not — it clears unmatched, saying why).
MAX_FLOOR = Field(gt=0, le=Decimal("1e9"), max_digits=18, decimal_places=6)
MAX_CAP = Field(gt=0, le=Decimal(100_000), max_digits=18, decimal_places=6,
                description="CNY per device-hour (per H100-equivalent-hour when the amount is h100_eq)")


class OfferCreate(Strict):
    provider: str | None = Field(default=None, max_length=64, description="operators: the provider offering")
    site: str = Field(min_length=1, max_length=64)
    nodes: list[str] = Field(default_factory=list, max_length=512,
                             description="whole servers (site/name or id); or leave empty and give model + devices")
    model: str | None = Field(default=None, max_length=128, description="accelerator model (catalog name)")
    devices: int = Field(default=0, ge=0, le=1_000_000)
    start: datetime
    end: datetime
    min_term_h: int = Field(default=1, ge=1, le=87_600)
    pricing_model: Literal["device_hour", "server_month", "pflops_year"]
    floor_price: Decimal = MAX_FLOOR
    closed_months: int | None = Field(default=None, ge=0, le=240,
                                      description="closed (penalised) months of the contract; default: the whole term")
    open_months: int = Field(default=0, ge=0, le=240)
    penalty_rate: Decimal = Field(default=Decimal("0.20"), ge=0, le=1, max_digits=6, decimal_places=4)


class RequestConstraints(Strict):
    min_memory_gib: Decimal | None = Field(default=None, gt=0, le=100_000)
    interconnect: str | None = Field(default=None, min_length=1, max_length=64,
                                     description="substring of the catalog's interconnect, e.g. nvlink, hccs")
    stack: str | None = Field(default=None, min_length=1, max_length=32, description="cuda, cann, rocm…")


class RequestCreate(Strict):
    tenant: str | None = Field(default=None, max_length=64, description="operators: the tenant requesting")
    amount: int = Field(ge=1, le=1_000_000)
    unit: Literal["devices", "servers", "h100_eq"] = "devices"
    models: list[str] = Field(default_factory=list, max_length=64, description="acceptable models (catalog names)")
    constraints: RequestConstraints | None = None
    earliest_start: datetime
    latest_start: datetime
    duration_h: int = Field(ge=1, le=87_600)
    max_price: Decimal = MAX_CAP
    regions: list[str] = Field(default_factory=list, max_length=32, description="acceptable regions (empty: any)")
    gang: bool = Field(default=False, description="all devices at one site")
    allow_partial: bool = False
    min_fill: int = Field(default=0, ge=0, le=1_000_000, description="least acceptable amount when partial")


class ClearBody(Strict):
    objective: Literal["surplus", "pflops_hours"] = "surplus"
    method: Literal["optimal", "fcfs", "greedy"] = "optimal"
    time_limit_s: float = Field(default=5.0, gt=0, le=120)


class OfferOut(BaseModel):
    id: int
    provider: str
    site: str
    region: str
    model: str
    capacity_kind: str
    nodes: list[str]
    devices: int
    remaining: int
    start: datetime
    end: datetime
    min_term_h: int
    pricing_model: str
    floor_price: Decimal
    floor_device_hour: Decimal
    closed_months: int | None
    open_months: int
    penalty_rate: Decimal
    state: str
    created_at: datetime


class RequestOut(BaseModel):
    id: int
    tenant: str
    amount: int
    unit: str
    devices: int
    normalised: bool
    models: dict[str, Decimal]
    constraints: dict[str, str]
    earliest_start: datetime
    latest_start: datetime
    duration_h: int
    max_price: Decimal
    regions: list[str]
    gang: bool
    allow_partial: bool
    min_fill: int
    remaining: int
    state: str
    unmatched_reason: str
    created_at: datetime


class MatchOut(BaseModel):
    id: int
    clearing_id: int
    offer_id: int | None
    request_id: int | None
    model: str
    region: str
    devices: int
    start: datetime
    end: datetime
    price: Decimal
    state: str
    deadline: datetime
    tenant_accepted: bool
    provider_accepted: bool
    contract_id: int | None


class BookLevel(BaseModel):
    model: str
    region: str
    devices_offered: int
    best_floor: Decimal | None
    devices_requested: int
    best_cap: Decimal | None


class UnmatchedOut(BaseModel):
    request_id: int
    reason: str


class ClearingOut(BaseModel):
    id: int
    method: str
    objective: str
    status: str
    value: Decimal
    bound: Decimal | None
    solve_s: float
    offers: int
    requests: int
    matches: list[MatchOut]
    unmatched: list[UnmatchedOut]
    skipped: list[str]
