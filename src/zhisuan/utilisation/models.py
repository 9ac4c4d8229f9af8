"""The utilisation history's table: one row per (resolution, window start, site, accelerator model)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from zhisuan.store.base import Base, UTCDateTime


class UtilisationBucket(Base):
    """Sums of the minute readings in one window (``core.utilisation``: samples, device-samples,
    milli-device-samples allocated, peak milli allocated). A site's history goes with the site."""

    __tablename__ = "utilisation_buckets"
    __table_args__ = (
        UniqueConstraint("resolution", "start", "site_id", "model"),
        Index("ix_utilisation_buckets_resolution_start", "resolution", "start"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    resolution: Mapped[str] = mapped_column(String(8))
    start: Mapped[datetime] = mapped_column(UTCDateTime())
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"))
    model: Mapped[str] = mapped_column(String(64))
    samples: Mapped[int] = mapped_column(Integer)
    devices: Mapped[int] = mapped_column(BigInteger)
    allocated: Mapped[int] = mapped_column(BigInteger)
    peak: Mapped[int] = mapped_column(BigInteger)
