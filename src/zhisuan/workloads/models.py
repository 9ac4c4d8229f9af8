"""Tables of the workloads domain: jobs, their events, their workers on nodes, and workers' logs.

A job is what a tenant asked to run (command, resources per worker, gang size, class); an *attempt*
is one admission of it (a preempted job is queued again and its next admission is attempt + 1).
While admitted, the job's devices, CPU and memory are held in the allocation ledger (purpose
``job``, ref ``job:<id>``), so metering bills them and nothing else can take them. ``placement``
keeps the admitted workers (node, device indices, share, CPU, memory) for the scheduler's snapshot.

``job_workers`` rows exist for jobs of ``local`` sites: they are the hand-over to node agents (the
control plane writes the launch and the desired state, the agent reports state and log bytes).
Jobs on Slurm and Kubernetes sites have no worker rows: the engine keeps that state.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from zhisuan.store.base import Base, UTCDateTime, utcnow

PRIORITY_CLASSES = ("reserved", "elastic", "spot")
JOB_STATES = ("queued", "admitted", "starting", "running", "succeeded", "failed", "cancelled", "preempted")
# States in which the job holds devices in the ledger (and, from ``starting``, has an engine handle).
HOLDING_STATES = ("admitted", "starting", "running")
ENDED_STATES = ("succeeded", "failed", "cancelled")


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_state", "state"), Index("ix_jobs_tenant_submitted", "tenant_id", "submitted_at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="RESTRICT"))
    name: Mapped[str] = mapped_column(String(64), default="")
    # What to run: argv (``command``) or a shell script; the image is used where a container runtime exists.
    command: Mapped[list[str]] = mapped_column(JSON, default=list)
    script: Mapped[str | None] = mapped_column(Text, nullable=True)
    image: Mapped[str | None] = mapped_column(String(512), nullable=True)
    env: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    workdir: Mapped[str | None] = mapped_column(String(512), nullable=True)
    checkpoint_dir: Mapped[str | None] = mapped_column(String(512), nullable=True)
    # Per worker.
    workers: Mapped[int] = mapped_column(Integer, default=1)
    devices_per_worker: Mapped[int] = mapped_column(Integer, default=0)
    milli_per_device: Mapped[int] = mapped_column(Integer, default=1000)
    models: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    min_device_memory_mib: Mapped[int] = mapped_column(Integer, default=0)
    min_device_tflops: Mapped[float] = mapped_column(default=0.0)
    cpu_milli: Mapped[int] = mapped_column(Integer, default=1000)
    memory_mib: Mapped[int] = mapped_column(Integer, default=1024)
    max_run_s: Mapped[int] = mapped_column(Integer, default=3600)
    priority_class: Mapped[str] = mapped_column(String(16), default="elastic")
    priority: Mapped[int] = mapped_column(Integer, default=0)
    sites: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    regions: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    # Lifecycle.
    state: Mapped[str] = mapped_column(String(16), default="queued")
    reason: Mapped[str] = mapped_column(String(1000), default="")
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    preemptions: Mapped[int] = mapped_column(Integer, default=0)
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id", ondelete="SET NULL"), nullable=True)
    model: Mapped[str | None] = mapped_column(String(64), nullable=True)
    placement: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    within_guarantee: Mapped[bool] = mapped_column(default=False)
    borrowing: Mapped[bool] = mapped_column(default=False)
    engine_handle: Mapped[str | None] = mapped_column(String(128), nullable=True)
    # Set by a tenant's cancel, the scheduler's preemption, a fault or a hang; the loop stops the engine job.
    stop_requested: Mapped[str | None] = mapped_column(String(16), nullable=True)  # cancel|preempt|fault|hang
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    platform_fault: Mapped[bool] = mapped_column(default=False)
    # Fault tolerance (issue 10): restarts after faults, bounded; a hang is no progress for hang_timeout_s.
    max_restarts: Mapped[int | None] = mapped_column(Integer, nullable=True)  # None: the platform's policy
    hang_timeout_s: Mapped[int | None] = mapped_column(Integer, nullable=True)
    restarts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Earlier failed attempts, oldest first: {"kind", "nodes", "signature", "at"} (core.goodput.restart.Failure).
    failures: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list, server_default="[]")
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)  # restart backoff
    # The newest progress line of the current attempt (ZHISUAN_PROGRESS_FILE) and when it arrived.
    progress: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    progress_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    submitted_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    admitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class JobEvent(Base):
    """One transition or fact of a job, with its reason: the tenant's "why is my job pending"."""

    __tablename__ = "job_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(1000), default="")


class JobWorker(Base):
    """A worker of a job on a ``local`` site's node: the hand-over between control plane and agent."""

    __tablename__ = "job_workers"
    __table_args__ = (UniqueConstraint("key"), Index("ix_job_workers_node", "node_id", "desired"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    handle: Mapped[str] = mapped_column(String(128), index=True)  # the job attempt's key, zs-<id>-<attempt>
    key: Mapped[str] = mapped_column(String(140))  # <handle>-r<rank>
    rank: Mapped[int] = mapped_column(Integer)
    node_id: Mapped[int | None] = mapped_column(ForeignKey("nodes.id", ondelete="SET NULL"), nullable=True)
    launch: Mapped[dict[str, Any]] = mapped_column(JSON)
    desired: Mapped[str] = mapped_column(String(8), default="run")  # "run" | "stop" | "done" (stopped, ended)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    reason: Mapped[str] = mapped_column(String(1000), default="")
    notes: Mapped[list[str]] = mapped_column(JSON, default=list)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    stdout_bytes: Mapped[int] = mapped_column(Integer, default=0)
    stderr_bytes: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class JobLogChunk(Base):
    """Bytes ``[offset, offset + len(data))`` of a worker's stdout or stderr, as the agent sent them."""

    __tablename__ = "job_log_chunks"
    __table_args__ = (UniqueConstraint("worker_id", "stream", "offset"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    worker_id: Mapped[int] = mapped_column(ForeignKey("job_workers.id", ondelete="CASCADE"))
    stream: Mapped[str] = mapped_column(String(8))
    offset: Mapped[int] = mapped_column(Integer)
    data: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(Integer)  # bytes of data as UTF-8 (offsets count bytes)


class JobProgress(Base):
    """Progress facts the meter needs, not every line: an attempt's first report and each new complete
    checkpoint (``checkpoint_step`` changed), with the control plane's arrival time ``at``."""

    __tablename__ = "job_progress"
    __table_args__ = (Index("ix_job_progress_job", "job_id", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    attempt: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    step: Mapped[int] = mapped_column(BigInteger)
    tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    checkpoint_step: Mapped[int | None] = mapped_column(Integer, nullable=True)
    checkpoint_s: Mapped[float | None] = mapped_column(nullable=True)
