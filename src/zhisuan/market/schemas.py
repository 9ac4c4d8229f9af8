"""Request and response bodies of the market API. Money is Decimal, serialised as a JSON string."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel, Field

from zhisuan.core.economics.pricebook import PricingModel, Tier
from zhisuan.identity.schemas import NAME_PATTERN, Strict

CURRENCY = Field(default="CNY", pattern=r"^[A-Z]{3}$", description="ISO 4217 code")
PRICE = Field(gt=0, max_digits=24, decimal_places=8)
CAPACITY_PRICING = r"^(device_hour|server_month|pflops_year)$"


class TermDiscountIn(Strict):
    min_months: int = Field(ge=1, le=600)
    discount: Decimal = Field(ge=0, lt=1, max_digits=6, decimal_places=4)


class RateIn(Strict):
    model: str = Field(min_length=1, max_length=128,
                       description="accelerator model (catalog name) for capacity pricing; served model for tokens")
    pricing_model: PricingModel
    unit_price: Decimal = PRICE
    tenant: str | None = Field(default=None, max_length=64, description="tenant override (name or id)")
    site: str | None = Field(default=None, max_length=64, description="site override (name or id)")
    region: str | None = Field(default=None, min_length=1, max_length=64)
    spot_discount: Decimal = Field(default=Decimal(0), ge=0, lt=1, max_digits=6, decimal_places=4)
    reserved_discounts: list[TermDiscountIn] = Field(default_factory=list, max_length=20)


class VersionCreate(Strict):
    effective_from: datetime | None = Field(default=None, description="default: now; never in the past")
    currency: str = CURRENCY
    devices_per_server: int = Field(default=8, ge=1, le=64)
    pflops_precision: str = Field(default="bf16", pattern=r"^(bf16|fp16|fp8|int8|tf32|fp32)$",
                                  description="precision PFLOPS capacity is normalised at (catalog dense figure)")
    note: str = Field(default="", max_length=500)
    rates: list[RateIn] = Field(min_length=1, max_length=2000)


class PriceBookCreate(VersionCreate):
    name: str = Field(pattern=NAME_PATTERN)
    default: bool = Field(default=False, description="price usage with this book (the first book is the default)")


class RateOut(BaseModel):
    model: str
    pricing_model: str
    unit_price: Decimal
    tenant: str | None
    site: str | None
    region: str | None
    spot_discount: Decimal
    reserved_discounts: list[TermDiscountIn]


class VersionOut(BaseModel):
    version: int
    effective_from: datetime
    devices_per_server: int
    pflops_precision: str
    note: str
    rates: list[RateOut]


class PriceBookOut(BaseModel):
    id: int
    name: str
    currency: str
    default: bool
    versions: list[VersionOut]


class CapacityIn(Strict):
    kind: str = Field(pattern=r"^(nodes|quota|pflops)$")
    nodes: list[str] = Field(default_factory=list, max_length=512, description="node refs (site/name or id)")
    model: str | None = Field(default=None, max_length=128, description="accelerator model (quota/pflops)")
    quota: int = Field(default=0, ge=0, le=1_000_000)
    pflops: Decimal | None = Field(default=None, gt=0, max_digits=20, decimal_places=6)


class CreditTierIn(Strict):
    below: Decimal = Field(gt=0, le=1, max_digits=6, decimal_places=4,
                           description="the tier applies when the period's ETTR is below this")
    percent: Decimal = Field(ge=0, le=100, max_digits=6, decimal_places=2,
                             description="credit: percent of the period's contract charge")


class EttrSlaIn(Strict):
    """ETTR service level (docs/goodput.md, "Service level and credits")."""

    target: Decimal = Field(gt=0, le=1, max_digits=6, decimal_places=4, description="e.g. 0.95")
    tiers: list[CreditTierIn] = Field(min_length=1, max_length=10,
                                      description="descending; the first starts at the target")
    cap_percent: Decimal = Field(ge=0, le=100, max_digits=6, decimal_places=2,
                                 description="most a period's credit may be, percent of its contract charge")


class ContractCreate(Strict):
    tenant: str = Field(min_length=1, max_length=64)
    providers: list[str] = Field(default_factory=list, max_length=16,
                                 description="providers (derived from the nodes for node capacity)")
    capacity: CapacityIn
    pricing_model: str = Field(pattern=CAPACITY_PRICING)
    unit_price: Decimal = PRICE
    currency: str = CURRENCY
    start: datetime
    closed_months: int = Field(ge=0, le=240)
    open_months: int = Field(default=0, ge=0, le=240)
    notice_days: int = Field(default=30, ge=0, le=3650)
    deposit: Decimal = Field(default=Decimal(0), ge=0, max_digits=24, decimal_places=2)
    penalty_rate: Decimal = Field(default=Decimal("0.20"), ge=0, le=1, max_digits=6, decimal_places=4)
    devices_per_server: int = Field(default=8, ge=1, le=64)
    ettr_sla: EttrSlaIn | None = Field(default=None, description="ETTR service level (node leases)")
    note: str = Field(default="", max_length=500)


class ActivateBody(Strict):
    at: datetime | None = Field(default=None, description="when signed (default now)")
    reason: str = Field(default="signed", max_length=500)


class TerminateBody(Strict):
    notice_at: datetime | None = Field(default=None, description="when notice was given (default now)")
    effective_at: datetime | None = Field(default=None, description="default: notice_at + notice_days")
    reason: str = Field(default="terminated by tenant", max_length=500)


class BreachBody(Strict):
    at: datetime | None = None
    reason: str = Field(default="tenant breach", max_length=500)


class ExpireBody(Strict):
    at: datetime | None = None


class AmendmentCreate(Strict):
    effective_at: datetime
    unit_price: Decimal | None = Field(default=None, gt=0, max_digits=24, decimal_places=8)
    quota: int | None = Field(default=None, ge=1, le=1_000_000)
    pflops: Decimal | None = Field(default=None, gt=0, max_digits=20, decimal_places=6)
    open_months: int | None = Field(default=None, ge=0, le=240)
    ettr_sla: EttrSlaIn | None = Field(default=None, description="a new ETTR service level from effective_at on")
    note: str = Field(default="", max_length=500)


class TransitionOut(BaseModel):
    from_state: str
    to_state: str
    at: datetime
    recorded_at: datetime
    actor: str
    reason: str
    penalty: Decimal
    deposit_applied: Decimal
    amount_due: Decimal
    deposit_refund: Decimal


class AmendmentOut(BaseModel):
    id: int
    effective_at: datetime
    unit_price: Decimal | None
    quota: int | None
    pflops: Decimal | None
    open_months: int | None
    ettr_sla: EttrSlaIn | None = None
    note: str
    actor: str


class EttrMeasured(BaseModel):
    """The period's ETTR under the contract's service level, measured so far (docs/goodput.md)."""

    period: str
    measured: Decimal | None  # None: no attempt under the contract ended in the period yet
    target: Decimal
    met: bool
    tier: int | None
    credit_percent: Decimal
    attempts: int
    counted_s: float
    platform_loss_s: float


class ContractOut(BaseModel):
    id: int
    tenant: str
    providers: list[str]
    capacity_kind: str
    model: str
    nodes: list[str]
    devices: int
    quota: int
    pflops: Decimal | None
    pricing_model: str
    unit_price: Decimal
    currency: str
    start: datetime
    closed_end: datetime
    end: datetime
    closed_months: int
    open_months: int
    notice_days: int
    deposit: Decimal
    penalty_rate: Decimal
    devices_per_server: int
    state: str
    ended_at: datetime | None
    committed_value: Decimal
    note: str
    ettr_sla: EttrSlaIn | None = None
    ettr: EttrMeasured | None = None
    transitions: list[TransitionOut]
    amendments: list[AmendmentOut]


class PenaltyQuote(BaseModel):
    contract_id: int
    at: datetime
    contract_month: int
    in_closed_period: bool
    remaining_closed_value: Decimal
    penalty_rate: Decimal
    penalty: Decimal
    deposit: Decimal
    amount_due: Decimal
    deposit_refund: Decimal


class IndexEntryOut(BaseModel):
    model: str
    pricing_model: str
    price: Decimal
    low: Decimal
    high: Decimal
    points: int
    weight: Decimal


class BreachRiskOut(BaseModel):
    contract_id: int
    tenant: str
    providers: list[str]
    model: str
    pricing_model: str
    contract_price: Decimal
    index_price: Decimal
    premium: Decimal
    penalty_rate: Decimal
    remaining_value: Decimal
    replacement_value: Decimal
    penalty: Decimal
    tenant_saving: Decimal
    provider_exposure: Decimal


__all__ = ["Tier"]
