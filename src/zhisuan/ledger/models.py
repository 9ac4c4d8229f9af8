"""The ledger's table: every hold of devices, quota or node CPU/memory, with its billing terms."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from zhisuan.store.base import Base, UTCDateTime, utcnow

PURPOSES = ("contract", "job", "instance", "service", "manual")
# The model name of a CPU/memory hold (a row holding no device); price books may rate it.
CPU_MODEL = "cpu"


class Allocation(Base):
    """The ledger row: ``milli`` thousandths of a device (or of a quota) held from ``start`` to ``end``.

    ``device_id`` is null for a quota/PFLOPS entitlement, which holds capacity of a model rather
    than particular devices, and for a CPU/memory hold (``model`` = ``cpu``, ``node_id`` set,
    ``cpu_milli``/``memory_mib`` > 0, ``milli`` = 0). Only ``billable`` rows are metered: a workload
    running inside a contract's entitlement records its devices with ``billable=False`` (the
    contract bills). ``metered_until`` is the metering watermark: usage records exist for
    ``[start, metered_until)``. ``end_reason`` says why the platform ended a hold by itself (its
    device disappeared), so that operator and tenant see it.

    On PostgreSQL, migration 0005 adds two exclusion constraints (the database holds them whatever
    the code does): contract rows of one device never overlap in time (an exclusive lease is
    exclusive), and whole-device workload rows of one device never overlap either.
    """

    __tablename__ = "allocations"
    __table_args__ = (Index("ix_allocations_device_window", "device_id", "start", "end"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="RESTRICT"), index=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("providers.id", ondelete="RESTRICT"))
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id", ondelete="SET NULL"), nullable=True)
    region: Mapped[str | None] = mapped_column(String(64), nullable=True)
    node_id: Mapped[int | None] = mapped_column(ForeignKey("nodes.id", ondelete="SET NULL"), nullable=True)
    device_id: Mapped[int | None] = mapped_column(ForeignKey("devices.id", ondelete="SET NULL"), nullable=True)
    model: Mapped[str] = mapped_column(String(64))
    milli: Mapped[int] = mapped_column(Integer)
    cpu_milli: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    memory_mib: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    purpose: Mapped[str] = mapped_column(String(16))
    ref: Mapped[str] = mapped_column(String(200), default="")
    contract_id: Mapped[int | None] = mapped_column(ForeignKey("contracts.id", ondelete="RESTRICT"),
                                                    nullable=True, index=True)
    billable: Mapped[bool] = mapped_column(default=True)
    pricing_model: Mapped[str] = mapped_column(String(16), default="device_hour")
    tier: Mapped[str] = mapped_column(String(16), default="on_demand")
    term_months: Mapped[int] = mapped_column(Integer, default=0)
    start: Mapped[datetime] = mapped_column(UTCDateTime())
    end: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    end_reason: Mapped[str | None] = mapped_column(String(200), nullable=True)
    metered_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
