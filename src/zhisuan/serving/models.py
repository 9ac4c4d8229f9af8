"""Tables of the serving domain: the model registry, deployments and their replicas, quotas.

A deployment's replicas are placed on the pool by the placement engine; each placed replica holds
its devices through allocation rows in the ledger (purpose ``service``, ref ``deployment:<id>/<i>``),
so metering and "why is this device busy" see model services like any other work. Each replica
row keeps the CPU and memory it holds on its node (sized by ``engines.sizing``), for the ledger.

Deployment names are unique per owner (a tenant, or the platform's public MaaS): one tenant's
choice of name never collides with, nor reveals, another tenant's deployment.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, Float, ForeignKey, Index, Integer, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from zhisuan.store.base import Base, UTCDateTime, utcnow

ENGINES = ("llama.cpp", "vllm", "vllm-ascend", "mindie")
DEPLOYMENT_STATES = ("deploying", "running", "degraded", "draining", "stopped", "failed")
# "lost": its node became unreachable (its agent stopped beating); its holds ended, it is replaced elsewhere.
REPLICA_STATES = ("pending", "starting", "healthy", "unhealthy", "draining", "stopped", "failed", "lost")
# Replica states that are over: nothing runs or holds anything for them any more.
ENDED_REPLICA = ("stopped", "failed", "lost")
# Replica states in which a runtime has an engine process for it (it must drain it to stop it).
RUNNING_REPLICA = ("starting", "healthy", "unhealthy", "draining")
# Replica states that hold CPU, memory and devices on their node.
HOLDING_REPLICA = ("pending", *RUNNING_REPLICA)


class ServedModel(Base):
    """A registry entry: one servable model, by the name clients send as ``model``."""

    __tablename__ = "served_models"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    source: Mapped[str] = mapped_column(String(1000))
    engine: Mapped[str] = mapped_column(String(32))
    context_length: Mapped[int] = mapped_column(Integer, default=4096)
    # Accelerator software stacks it can run on: "cpu", "CUDA", "CANN"…
    stacks: Mapped[list[str]] = mapped_column(JSON, default=list)
    embeddings: Mapped[bool] = mapped_column(default=False)
    # Size of the weights (file or directory) when the platform could measure it, for sizing replicas.
    weights_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    extra_args: Mapped[list[str]] = mapped_column(JSON, default=list)
    description: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ModelDeployment(Base):
    """N replicas of a registered model. ``tenant_id`` None = the platform's public MaaS."""

    __tablename__ = "model_deployments"
    __table_args__ = (
        UniqueConstraint("tenant_id", "name"),
        # NULLs are distinct in the constraint above: the public MaaS's names need their own index.
        Index("ix_model_deployments_public_name", "name", unique=True,
              sqlite_where=text("tenant_id IS NULL"), postgresql_where=text("tenant_id IS NULL")),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    model_id: Mapped[int] = mapped_column(ForeignKey("served_models.id", ondelete="RESTRICT"), index=True)
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id", ondelete="RESTRICT"), nullable=True)
    replicas: Mapped[int] = mapped_column(Integer)
    # What one replica asks placement for.
    devices_per_replica: Mapped[int] = mapped_column(Integer, default=0)
    milli_per_device: Mapped[int] = mapped_column(Integer, default=1000)
    cpu_milli: Mapped[int] = mapped_column(Integer, default=1000)
    memory_mib: Mapped[int] = mapped_column(Integer, default=1024)
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id", ondelete="SET NULL"), nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="deploying")
    message: Mapped[str] = mapped_column(String(1000), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # Autoscaling (serving.autoscaler; None: a fixed size of ``replicas``): bounds, the target load in
    # in-flight requests per engine slot, and the cool-downs between changes.
    autoscale_min: Mapped[int | None] = mapped_column(Integer, nullable=True)
    autoscale_max: Mapped[int | None] = mapped_column(Integer, nullable=True)
    autoscale_target: Mapped[float | None] = mapped_column(Float, nullable=True)
    # What ``autoscale_target`` measures (core.autoscaling.TARGET_KINDS): in-flight requests per slot,
    # or seconds of queue wait as the gateways measure it.
    autoscale_target_kind: Mapped[str] = mapped_column(String(24), default="in_flight_per_slot",
                                                       server_default="in_flight_per_slot")
    scale_out_cooldown_s: Mapped[int] = mapped_column(Integer, default=30)
    scale_in_cooldown_s: Mapped[int] = mapped_column(Integer, default=300)
    last_scale_out_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_scale_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # Requests gateways could not route (no replica) since the autoscaler last looked: a cold start.
    demand: Mapped[int] = mapped_column(Integer, default=0)

    model: Mapped[ServedModel] = relationship()
    replica_rows: Mapped[list[DeploymentReplica]] = relationship(
        back_populates="deployment", cascade="all, delete-orphan", order_by="DeploymentReplica.index")


class DeploymentReplica(Base):
    """One replica: where placement put it and what its supervisor last reported."""

    __tablename__ = "deployment_replicas"
    __table_args__ = (UniqueConstraint("deployment_id", "index"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    deployment_id: Mapped[int] = mapped_column(ForeignKey("model_deployments.id", ondelete="CASCADE"))
    index: Mapped[int] = mapped_column(Integer)
    node_id: Mapped[int | None] = mapped_column(ForeignKey("nodes.id", ondelete="SET NULL"), nullable=True)
    device_indices: Mapped[list[int]] = mapped_column(JSON, default=list)
    # What this replica holds on its node (engines.sizing: never below the engine's floor).
    cpu_milli: Mapped[int] = mapped_column(Integer, default=0)
    memory_mib: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    port: Mapped[int | None] = mapped_column(Integer, nullable=True)
    restarts: Mapped[int] = mapped_column(Integer, default=0)
    # Load as the runtime last sampled it: requests in flight over the engine's parallel slots.
    in_flight: Mapped[int] = mapped_column(Integer, default=0)
    slots: Mapped[int] = mapped_column(Integer, default=1)
    message: Mapped[str] = mapped_column(String(1000), default="")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # The address gateways reach the replica at (its node agent's advertised address; None: the
    # control plane's own loopback), and when its runtime last reported it: gateways follow only
    # replicas reported recently (serving.fleet.endpoints), so a dead agent's replicas drop out.
    host: Mapped[str | None] = mapped_column(String(255), nullable=True)
    reported_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    deployment: Mapped[ModelDeployment] = relationship(back_populates="replica_rows")


class GatewayReplicaLoad(Base):
    """What one gateway last reported of one replica (``POST /serving/demand``'s ``load``): requests it
    sent there and has not had answered, how many of those still await the first response byte, and
    the mean queue wait of its requests since its previous report. One row per (gateway, replica),
    replaced on each report; the autoscaler sums the gateways' rows reported within ``STALE_AFTER_S``."""

    __tablename__ = "gateway_replica_loads"

    gateway: Mapped[str] = mapped_column(String(64), primary_key=True)
    deployment_id: Mapped[int] = mapped_column(ForeignKey("model_deployments.id", ondelete="CASCADE"),
                                               primary_key=True, index=True)
    index: Mapped[int] = mapped_column(Integer, primary_key=True)
    in_flight: Mapped[int] = mapped_column(Integer, default=0)
    queued: Mapped[int] = mapped_column(Integer, default=0)
    queue_wait_s: Mapped[float] = mapped_column(Float, default=0.0)
    waits: Mapped[int] = mapped_column(Integer, default=0)
    reported_at: Mapped[datetime] = mapped_column(UTCDateTime())


class DeploymentEvent(Base):
    """One change of a deployment's replicas, with its reason: scaled out or in (by hand or by the
    autoscaler), a replica lost with its node, a replacement placed, autoscaling set or cleared."""

    __tablename__ = "deployment_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    deployment_id: Mapped[int] = mapped_column(ForeignKey("model_deployments.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    kind: Mapped[str] = mapped_column(String(32))
    replicas_from: Mapped[int] = mapped_column(Integer)
    replicas_to: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(1000), default="")


class ServingQuota(Base):
    """The most replicas a tenant's active deployments may hold. ``tenant_id`` None: the
    platform-wide default (without one, ``service.DEFAULT_MAX_REPLICAS``)."""

    __tablename__ = "serving_quotas"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), nullable=True,
                                                  unique=True)
    max_replicas: Mapped[int] = mapped_column(Integer)
