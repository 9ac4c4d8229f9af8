"""The one table of the catalog domain: operators' measured relative throughput.

The catalog itself is a packaged data file (``accelerators.yaml``); what an operator measures on the
fleet is not, so it lives here. Rows are history — a new measurement of the same (model, workload
class) is a new row and the latest ``measured_at`` wins (``throughput.latest_measurements``).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from zhisuan.store.base import Base, DecimalText, UTCDateTime


class ThroughputMeasurement(Base):
    """``relative`` = a benchmark's throughput on one device of ``model_key`` / the same on one device
    of ``reference_key`` (the H100 SXM5), for one workload class."""

    __tablename__ = "catalog_throughput_measurements"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_key: Mapped[str] = mapped_column(String(64), index=True)
    workload_class: Mapped[str] = mapped_column(String(32))
    relative: Mapped[Decimal] = mapped_column(DecimalText(64))
    reference_key: Mapped[str] = mapped_column(String(64))
    benchmark: Mapped[str] = mapped_column(String(200))
    note: Mapped[str] = mapped_column(String(500), default="")
    measured_at: Mapped[datetime] = mapped_column(UTCDateTime(timezone=True))
    recorded_by: Mapped[str] = mapped_column(String(64))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime(timezone=True))
