"""Tables of the market domain: versioned price books, contracts, transitions and amendments.

Money and prices are stored as canonical decimal *text* (``DecimalText``): SQLite has no exact
decimal type (SQLAlchemy's ``Numeric`` goes through a float there), and an invoice must not
depend on the backend. Nothing sums money in SQL; the economics core does it in Python.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from zhisuan.store.base import Base, DecimalText, UTCDateTime, utcnow

CONTRACT_STATES = ("draft", "active", "expired", "terminated", "breached", "cancelled")


class PriceBook(Base):
    """A named, versioned price book; the default book prices usage nobody else claims."""

    __tablename__ = "price_books"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    currency: Mapped[str] = mapped_column(String(3), default="CNY")
    is_default: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    versions: Mapped[list[PriceBookVersion]] = relationship(
        back_populates="book", cascade="all, delete-orphan", order_by="PriceBookVersion.version")


class PriceBookVersion(Base):
    """An immutable set of rates, in force from ``effective_from`` until the next version."""

    __tablename__ = "price_book_versions"
    __table_args__ = (UniqueConstraint("book_id", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    book_id: Mapped[int] = mapped_column(ForeignKey("price_books.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    effective_from: Mapped[datetime] = mapped_column(UTCDateTime())
    devices_per_server: Mapped[int] = mapped_column(Integer, default=8)
    pflops_precision: Mapped[str] = mapped_column(String(8), default="bf16")
    note: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    book: Mapped[PriceBook] = relationship(back_populates="versions")
    rates: Mapped[list[PriceRate]] = relationship(back_populates="version", cascade="all, delete-orphan",
                                                  order_by="PriceRate.id")


class PriceRate(Base):
    """One rate of a version; tenant/site/region set make it an override for that scope."""

    __tablename__ = "price_rates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("price_book_versions.id", ondelete="CASCADE"))
    model: Mapped[str] = mapped_column(String(128))
    pricing_model: Mapped[str] = mapped_column(String(16))
    unit_price: Mapped[Decimal] = mapped_column(DecimalText())
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id", ondelete="RESTRICT"), nullable=True)
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id", ondelete="RESTRICT"), nullable=True)
    region: Mapped[str | None] = mapped_column(String(64), nullable=True)
    spot_discount: Mapped[Decimal] = mapped_column(DecimalText(), default=Decimal(0))
    # [{"min_months": 12, "discount": "0.15"}, …]
    reserved_discounts: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)

    version: Mapped[PriceBookVersion] = relationship(back_populates="rates")


class Contract(Base):
    """A lease: who, whose capacity, how priced, for how long, at what penalty."""

    __tablename__ = "contracts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="RESTRICT"), index=True)
    provider_ids: Mapped[list[int]] = mapped_column(JSON)
    capacity_kind: Mapped[str] = mapped_column(String(8))
    model: Mapped[str] = mapped_column(String(64))
    node_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    devices_per_node: Mapped[int] = mapped_column(Integer, default=8)
    quota: Mapped[int] = mapped_column(Integer, default=0)
    pflops: Mapped[Decimal | None] = mapped_column(DecimalText(), nullable=True)
    pricing_model: Mapped[str] = mapped_column(String(16))
    unit_price: Mapped[Decimal] = mapped_column(DecimalText())
    currency: Mapped[str] = mapped_column(String(3), default="CNY")
    start: Mapped[datetime] = mapped_column(UTCDateTime())
    closed_months: Mapped[int] = mapped_column(Integer)
    open_months: Mapped[int] = mapped_column(Integer, default=0)
    notice_days: Mapped[int] = mapped_column(Integer, default=30)
    deposit: Mapped[Decimal] = mapped_column(DecimalText(), default=Decimal(0))
    penalty_rate: Mapped[Decimal] = mapped_column(DecimalText(), default=Decimal("0.20"))
    devices_per_server: Mapped[int] = mapped_column(Integer, default=8)
    # ETTR service level (``core.economics.ettr_credit``): {"target", "tiers": [{"below", "percent"}],
    # "cap_percent"} as decimal strings; null: none. Amendments may replace it.
    ettr_sla: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    state: Mapped[str] = mapped_column(String(16), default="draft")
    # When billing stops: the instant of the ending transition (null while draft/active).
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    note: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    transitions: Mapped[list[ContractTransition]] = relationship(
        back_populates="contract", cascade="all, delete-orphan", order_by="ContractTransition.id")
    amendments: Mapped[list[ContractAmendment]] = relationship(
        back_populates="contract", cascade="all, delete-orphan", order_by="ContractAmendment.id")


class ContractTransition(Base):
    """One recorded lifecycle step (append-only), with the money it moved."""

    __tablename__ = "contract_transitions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    contract_id: Mapped[int] = mapped_column(ForeignKey("contracts.id", ondelete="CASCADE"), index=True)
    from_state: Mapped[str] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(500), default="")
    penalty: Mapped[Decimal] = mapped_column(DecimalText(), default=Decimal(0))
    deposit_applied: Mapped[Decimal] = mapped_column(DecimalText(), default=Decimal(0))
    amount_due: Mapped[Decimal] = mapped_column(DecimalText(), default=Decimal(0))
    deposit_refund: Mapped[Decimal] = mapped_column(DecimalText(), default=Decimal(0))

    contract: Mapped[Contract] = relationship(back_populates="transitions")


class ContractAmendment(Base):
    """A change of terms from ``effective_at`` on; null fields are unchanged."""

    __tablename__ = "contract_amendments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    contract_id: Mapped[int] = mapped_column(ForeignKey("contracts.id", ondelete="CASCADE"), index=True)
    effective_at: Mapped[datetime] = mapped_column(UTCDateTime())
    unit_price: Mapped[Decimal | None] = mapped_column(DecimalText(), nullable=True)
    quota: Mapped[int | None] = mapped_column(Integer, nullable=True)
    pflops: Mapped[Decimal | None] = mapped_column(DecimalText(), nullable=True)
    open_months: Mapped[int | None] = mapped_column(Integer, nullable=True)
    ettr_sla: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)  # the SLA from effective_at on
    note: Mapped[str] = mapped_column(String(500), default="")
    actor: Mapped[str] = mapped_column(String(64))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime())

    contract: Mapped[Contract] = relationship(back_populates="amendments")
