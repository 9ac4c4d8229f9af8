"""Tables of the billing domain: usage records, invoices and settlements.

The allocation ledger's table lives in ``zhisuan.ledger.models``; ``Allocation`` and ``PURPOSES`` are
re-exported here for the code that reads them as billing models.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from zhisuan.ledger.models import PURPOSES, Allocation
from zhisuan.store.base import Base, DecimalText, UTCDateTime, utcnow

__all__ = ["PURPOSES", "Allocation", "Invoice", "InvoiceLine", "Settlement", "UsageRecord"]

class UsageRecord(Base):
    """An append-only metered quantity; ``key`` is its idempotency key (unique)."""

    __tablename__ = "usage_records"
    __table_args__ = (Index("ix_usage_records_tenant_start", "tenant_id", "start"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    source_kind: Mapped[str] = mapped_column(String(16))  # allocation | tokens
    source_id: Mapped[str] = mapped_column(String(200))
    allocation_id: Mapped[int | None] = mapped_column(ForeignKey("allocations.id", ondelete="RESTRICT"),
                                                      nullable=True, index=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="RESTRICT"))
    provider_id: Mapped[int] = mapped_column(ForeignKey("providers.id", ondelete="RESTRICT"))
    site_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    region: Mapped[str | None] = mapped_column(String(64), nullable=True)
    model: Mapped[str] = mapped_column(String(128))
    pricing_model: Mapped[str] = mapped_column(String(16))
    tier: Mapped[str] = mapped_column(String(16), default="on_demand")
    term_months: Mapped[int] = mapped_column(Integer, default=0)
    contract_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    start: Mapped[datetime] = mapped_column(UTCDateTime())
    end: Mapped[datetime] = mapped_column(UTCDateTime())
    quantity: Mapped[int] = mapped_column(BigInteger)
    pflops_seconds: Mapped[Decimal] = mapped_column(DecimalText(), default=Decimal(0))
    # The public id of the API key behind a token record (the gateway's caller); None otherwise.
    api_key_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    # Gateway requests behind a token event, held by one of its records (the ':in' one, else ':out'),
    # so Σ requests counts each request once; a roll-up event (``TokenEventIn.requests``) holds many.
    requests: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    invoice_line_id: Mapped[int | None] = mapped_column(ForeignKey("invoice_lines.id", ondelete="RESTRICT"),
                                                        nullable=True, index=True)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Invoice(Base):
    """A tenant's bill for one calendar month (a later run for late usage adds a supplement ``-2``…)."""

    __tablename__ = "invoices"
    __table_args__ = (UniqueConstraint("number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[str] = mapped_column(String(100))
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="RESTRICT"), index=True)
    period: Mapped[str] = mapped_column(String(7), index=True)
    period_start: Mapped[datetime] = mapped_column(UTCDateTime())
    period_end: Mapped[datetime] = mapped_column(UTCDateTime())
    currency: Mapped[str] = mapped_column(String(3))
    total: Mapped[Decimal] = mapped_column(DecimalText())
    book_id: Mapped[int] = mapped_column(ForeignKey("price_books.id", ondelete="RESTRICT"))
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime())

    lines: Mapped[list[InvoiceLine]] = relationship(back_populates="invoice", cascade="all, delete-orphan",
                                                    order_by="InvoiceLine.line_no")


class InvoiceLine(Base):
    """One priced line; ``usage_record_keys`` and ``price_source`` are its trace."""

    __tablename__ = "invoice_lines"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoices.id", ondelete="CASCADE"), index=True)
    line_no: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16), default="usage")  # usage | penalty | ettr_credit
    # What a non-usage line is for (an ETTR credit: the measured ETTR, the target, the tier).
    description: Mapped[str] = mapped_column(String(500), default="", server_default="")
    provider_id: Mapped[int] = mapped_column(ForeignKey("providers.id", ondelete="RESTRICT"))
    model: Mapped[str] = mapped_column(String(128))
    pricing_model: Mapped[str] = mapped_column(String(16))
    tier: Mapped[str] = mapped_column(String(16))
    site_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    region: Mapped[str | None] = mapped_column(String(64), nullable=True)
    contract_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    term_months: Mapped[int] = mapped_column(Integer, default=0)
    usage_quantity: Mapped[int] = mapped_column(BigInteger)
    billable_quantity: Mapped[Decimal] = mapped_column(DecimalText())
    unit: Mapped[str] = mapped_column(String(32))
    list_price: Mapped[Decimal] = mapped_column(DecimalText())
    discount: Mapped[Decimal] = mapped_column(DecimalText())
    unit_price: Mapped[Decimal] = mapped_column(DecimalText())
    exact_amount: Mapped[Decimal] = mapped_column(DecimalText())
    amount: Mapped[Decimal] = mapped_column(DecimalText())
    currency: Mapped[str] = mapped_column(String(3))
    price_source: Mapped[str] = mapped_column(String(100))
    usage_record_keys: Mapped[list[str]] = mapped_column(JSON, default=list)

    invoice: Mapped[Invoice] = relationship(back_populates="lines")


class Settlement(Base):
    """A provider's payout for a period, recomputed from that period's invoices on every run."""

    __tablename__ = "settlements"
    __table_args__ = (UniqueConstraint("provider_id", "period"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("providers.id", ondelete="RESTRICT"))
    period: Mapped[str] = mapped_column(String(7), index=True)
    currency: Mapped[str] = mapped_column(String(3))
    revenue: Mapped[Decimal] = mapped_column(DecimalText())
    share: Mapped[Decimal] = mapped_column(DecimalText())
    payout: Mapped[Decimal] = mapped_column(DecimalText())
    # [[invoice number, line_no], …]
    lines: Mapped[list[list[object]]] = mapped_column(JSON, default=list)
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime())
