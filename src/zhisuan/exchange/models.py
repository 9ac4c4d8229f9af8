"""Tables of the exchange: offers (supply), requests (demand), clearing rounds and their matches.

Prices are canonical decimal text (``DecimalText``) as in the market domain. An offer keeps its floor
as given (in its pricing model) and, next to it, the floor in CNY per device-hour that the matcher
compares (``exchange.pricing``). Remaining amounts are not stored: they are the offered (requested)
amount less what live matches (proposed or accepted) take, so a lapsed match returns its capacity to
the book without any bookkeeping.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from zhisuan.store.base import Base, DecimalText, UTCDateTime, utcnow

OFFER_STATES = ("open", "matched", "withdrawn", "expired")
REQUEST_STATES = ("open", "matched", "withdrawn", "expired")
# proposed: cleared, waiting for both sides; accepted: both accepted, contract active; lapsed: the
# acceptance deadline passed first (its capacity went back to the book).
MATCH_STATES = ("proposed", "accepted", "lapsed")
LIVE_MATCH_STATES = ("proposed", "accepted")


class ExchangeOffer(Base):
    """Supply: whole nodes, or a count of devices of one model, at one site of the provider."""

    __tablename__ = "exchange_offers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("providers.id", ondelete="RESTRICT"), index=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="RESTRICT"))
    region: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(64))
    capacity_kind: Mapped[str] = mapped_column(String(8))  # nodes | devices
    node_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    devices: Mapped[int] = mapped_column(Integer)
    start: Mapped[datetime] = mapped_column(UTCDateTime())
    end: Mapped[datetime] = mapped_column(UTCDateTime())
    min_term_h: Mapped[int] = mapped_column(Integer)
    pricing_model: Mapped[str] = mapped_column(String(16))
    floor_price: Mapped[Decimal] = mapped_column(DecimalText())
    floor_device_hour: Mapped[Decimal] = mapped_column(DecimalText())
    closed_months: Mapped[int | None] = mapped_column(Integer, nullable=True)
    open_months: Mapped[int] = mapped_column(Integer, default=0)
    penalty_rate: Mapped[Decimal] = mapped_column(DecimalText(), default=Decimal("0.20"))
    state: Mapped[str] = mapped_column(String(16), default="open")
    # Bumped on every change of state: a clearing round writes only against the revision it read.
    revision: Mapped[int] = mapped_column(Integer, default=0)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ExchangeRequest(Base):
    """Demand: an amount (devices, or H100-equivalents when ``normalised``) of acceptable models."""

    __tablename__ = "exchange_requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="RESTRICT"), index=True)
    amount: Mapped[int] = mapped_column(Integer)
    unit: Mapped[str] = mapped_column(String(8))  # devices | servers | h100_eq
    devices: Mapped[int] = mapped_column(Integer)  # devices, or H100-equivalents when normalised
    normalised: Mapped[bool] = mapped_column(default=False)
    # catalog key -> throughput factor vs H100 (decimal text); constraints as given
    models: Mapped[dict[str, str]] = mapped_column(JSON)
    constraints: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    earliest_start: Mapped[datetime] = mapped_column(UTCDateTime())
    latest_start: Mapped[datetime] = mapped_column(UTCDateTime())
    duration_h: Mapped[int] = mapped_column(Integer)
    max_price: Mapped[Decimal] = mapped_column(DecimalText())
    regions: Mapped[list[str]] = mapped_column(JSON, default=list)
    gang: Mapped[bool] = mapped_column(default=False)
    allow_partial: Mapped[bool] = mapped_column(default=False)
    min_fill: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[str] = mapped_column(String(16), default="open")
    unmatched_reason: Mapped[str] = mapped_column(String(500), default="")
    revision: Mapped[int] = mapped_column(Integer, default=0)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ExchangeClearing(Base):
    """One clearing round: how it was asked and what the solver said."""

    __tablename__ = "exchange_clearings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    method: Mapped[str] = mapped_column(String(16))
    objective: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(32))
    value: Mapped[Decimal] = mapped_column(DecimalText())
    bound: Mapped[Decimal | None] = mapped_column(DecimalText(), nullable=True)
    solve_s: Mapped[float] = mapped_column(default=0.0)
    offers: Mapped[int] = mapped_column(Integer, default=0)
    requests: Mapped[int] = mapped_column(Integer, default=0)
    actor: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime())


class ExchangeMatch(Base):
    """A cleared trade, and the market-cleared price the index may use (``price``, CNY per
    device-hour, over ``devices`` × ``[start, end)``). Its contract is a draft until both sides accept."""

    __tablename__ = "exchange_matches"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    clearing_id: Mapped[int] = mapped_column(ForeignKey("exchange_clearings.id", ondelete="RESTRICT"), index=True)
    offer_id: Mapped[int] = mapped_column(ForeignKey("exchange_offers.id", ondelete="RESTRICT"), index=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("exchange_requests.id", ondelete="RESTRICT"), index=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="RESTRICT"), index=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("providers.id", ondelete="RESTRICT"), index=True)
    model: Mapped[str] = mapped_column(String(64))
    region: Mapped[str] = mapped_column(String(64))
    devices: Mapped[int] = mapped_column(Integer)
    node_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    start: Mapped[datetime] = mapped_column(UTCDateTime())
    end: Mapped[datetime] = mapped_column(UTCDateTime())
    price: Mapped[Decimal] = mapped_column(DecimalText())
    state: Mapped[str] = mapped_column(String(16), default="proposed")
    deadline: Mapped[datetime] = mapped_column(UTCDateTime())
    tenant_accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    provider_accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    contract_id: Mapped[int | None] = mapped_column(ForeignKey("contracts.id", ondelete="RESTRICT"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
