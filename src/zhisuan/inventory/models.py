"""Tables of the inventory domain."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, Numeric, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from zhisuan.store.base import Base, UTCDateTime, utcnow

ENGINES = ("local", "slurm", "kubernetes", "ray", "simulated")
NODE_STATUSES = ("ready", "unreachable")


class Provider(Base):
    """An owner of sites (算力资产方), paid ``revenue_share`` of what its capacity earns."""

    __tablename__ = "providers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    revenue_share: Mapped[Decimal] = mapped_column(Numeric(5, 4))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    sites: Mapped[list[Site]] = relationship(back_populates="provider")


class Site(Base):
    """One cluster under one engine, in one region."""

    __tablename__ = "sites"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    engine: Mapped[str] = mapped_column(String(16))
    region: Mapped[str] = mapped_column(String(64))
    provider_id: Mapped[int] = mapped_column(ForeignKey("providers.id", ondelete="RESTRICT"))
    # How the control plane reaches the site's engine (Slurm: ``slurm_conf``, ``partition``;
    # Kubernetes: ``api_url``, ``token_file``); operators only, never shown to tenants.
    engine_config: Mapped[dict[str, str]] = mapped_column(JSON, default=dict, server_default="{}")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    provider: Mapped[Provider] = relationship(back_populates="sites")
    nodes: Mapped[list[Node]] = relationship(back_populates="site", cascade="all, delete-orphan")


class Node(Base):
    __tablename__ = "nodes"
    __table_args__ = (UniqueConstraint("site_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(128))
    # ready / unreachable comes from heartbeats; drained is the operator's separate choice.
    status: Mapped[str] = mapped_column(String(16), default="ready")
    drained: Mapped[bool] = mapped_column(default=False)
    cpu_cores: Mapped[int] = mapped_column(Integer, default=0)
    memory_mib: Mapped[int] = mapped_column(Integer, default=0)
    labels: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    agent_version: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # How the node came in: through ``zhisuan agent`` or declared by hand (an engine's own inventory).
    managed_by: Mapped[str] = mapped_column(String(16), default="agent")
    registered_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # Cordoned for a fault (core.health.cordon): out of placement with its reason until a check passes.
    cordon_reason: Mapped[str | None] = mapped_column(String(500), nullable=True)
    cordoned_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    cordon_clean_since: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    cordon_manual: Mapped[bool] = mapped_column(default=False, server_default="0")
    # Digest of the last health report applied from a heartbeat (``inventory.beats``): a beat with the
    # same report changes nothing and skips loading the devices. None after anything else that may
    # change device rows (a registration), so the next beat is applied in full.
    health_digest: Mapped[str | None] = mapped_column(String(64), nullable=True)

    site: Mapped[Site] = relationship(back_populates="nodes")
    devices: Mapped[list[Device]] = relationship(
        back_populates="node", cascade="all, delete-orphan", order_by="Device.index"
    )


class Device(Base):
    """One accelerator. ``health`` is what the node's tool reported; ``available`` is what the
    platform may schedule on (false while the node is unreachable, drained or cordoned, or the device
    itself is cordoned)."""

    __tablename__ = "devices"
    # By model: node pages filtered by model find their devices' nodes in order (migration 0023).
    __table_args__ = (UniqueConstraint("node_id", "index"), Index("ix_devices_model_node_id", "model", "node_id"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    node_id: Mapped[int] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"))
    index: Mapped[int] = mapped_column(Integer)
    uuid: Mapped[str] = mapped_column(String(128), default="")
    model: Mapped[str] = mapped_column(String(64))
    reported_name: Mapped[str] = mapped_column(String(128), default="")
    memory_mib: Mapped[int] = mapped_column(Integer)
    health: Mapped[str] = mapped_column(String(16), default="healthy")
    health_detail: Mapped[str] = mapped_column(String(255), default="")
    available: Mapped[bool] = mapped_column(default=True)
    # Cordoned for a device-scoped fault (core.health.scope; migration 0024): out of placement with its
    # reason while its node stays schedulable, until a check passes (the node cordon's rule).
    cordon_reason: Mapped[str | None] = mapped_column(String(500), nullable=True)
    cordoned_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    cordon_clean_since: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    extra: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    node: Mapped[Node] = relationship(back_populates="devices")


class BeatFlush(Base):
    """How far one API process has written its buffered heartbeat times (``inventory.beats``): every
    beat it received before ``flushed_through`` is in ``nodes.last_heartbeat_at``. The heartbeat
    monitor decides only up to the oldest of these (of live processes), so a beat still in some
    process's buffer never makes its node look quiet."""

    __tablename__ = "beat_flushes"

    holder: Mapped[str] = mapped_column(String(100), primary_key=True)
    flushed_through: Mapped[datetime] = mapped_column(UTCDateTime())
