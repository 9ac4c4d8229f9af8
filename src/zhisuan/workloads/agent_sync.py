"""The agent's side of the ``local`` engine, as the control plane serves it.

``assignments``: the workers a node's agent should have (launch + desired state + how many log
bytes the control plane already has). ``report``: what the agent saw — state, exit code, notes and
the next log bytes of each stream, appended only at the offset the control plane expects (a resent
report is a no-op; a gap is refused), at most ``MAX_LOG_BYTES`` per stream.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from zhisuan.errors import Forbidden, NotFound
from zhisuan.identity.access import Principal
from zhisuan.identity.schemas import Strict
from zhisuan.inventory.models import Node
from zhisuan.inventory.service import bind_key_to_node, find_node
from zhisuan.store.base import utcnow
from zhisuan.workloads.local_driver import WORKER_ENDED
from zhisuan.workloads.models import Job, JobLogChunk, JobProgress, JobWorker

MAX_LOG_BYTES = 16 * 1024 * 1024  # per worker and stream kept by the control plane
WORKER_STATES = ("running", "succeeded", "failed", "cancelled", "lost")


class Assignment(BaseModel):
    key: str
    desired: str
    launch: dict[str, object]
    stdout_offset: int
    stderr_offset: int


class LogPiece(Strict):
    # Log bytes as the worker wrote them: trimming whitespace would lose bytes and shift every offset.
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    offset: int = Field(ge=0, le=2**40)
    data: str = Field(max_length=1_048_576)


class Progress(Strict):
    """The newest line of the worker's ``ZHISUAN_PROGRESS_FILE`` (see ``agent.jobs.progress``)."""

    step: int = Field(ge=0, le=2**62)
    tokens: int = Field(default=0, ge=0, le=2**62)
    checkpoint_step: int | None = Field(default=None, ge=0, le=2**31 - 1)
    checkpoint_s: float | None = Field(default=None, ge=0, le=10**7)
    at: float = Field(ge=0, le=10**11)


class WorkerReport(Strict):
    key: str = Field(min_length=1, max_length=140)
    state: str = Field(pattern=r"^(running|succeeded|failed|cancelled|lost)$")
    exit_code: int | None = Field(default=None, ge=-255, le=255)
    reason: str = Field(default="", max_length=1000)
    notes: list[str] = Field(default_factory=list, max_length=16)
    started_at: datetime | None = None
    ended_at: datetime | None = None
    stdout: LogPiece | None = None
    stderr: LogPiece | None = None
    progress: Progress | None = None


class Reports(Strict):
    node: str = Field(min_length=1, max_length=128)
    workers: list[WorkerReport] = Field(default_factory=list, max_length=512)


def agent_node(session: Session, principal: Principal, name: str) -> Node:
    if principal.site_id is None:
        raise Forbidden("only an agent key bound to a site can fetch or report job workers")
    node = find_node(session, principal.site_id, name)
    if node is None or not bind_key_to_node(session, principal, name):
        raise NotFound(f"node '{name}' is not registered in this site; register it first", field="node")
    return node


def assignments(session: Session, principal: Principal, node_name: str) -> list[Assignment]:
    node = agent_node(session, principal, node_name)
    # Ended workers still marked "stop" are assigned once more: a worker declared lost while its agent was
    # away may still run there, and the returning agent must stop it (it answers with an ended state).
    rows = session.execute(select(JobWorker).where(
        JobWorker.node_id == node.id, or_(JobWorker.state.not_in(WORKER_ENDED), JobWorker.desired == "stop"))
        .order_by(JobWorker.id)).scalars()
    return [Assignment(key=w.key, desired=w.desired, launch=dict(w.launch), stdout_offset=w.stdout_bytes,
                       stderr_offset=w.stderr_bytes) for w in rows]


def append_log(session: Session, worker: JobWorker, stream: str, piece: LogPiece | None) -> None:
    if piece is None or not piece.data:
        return
    have = worker.stdout_bytes if stream == "stdout" else worker.stderr_bytes
    size = len(piece.data.encode())
    if piece.offset != have or have + size > MAX_LOG_BYTES:
        return  # a resend (offset < have), a gap the agent will resend from ``have``, or over the cap
    session.add(JobLogChunk(worker_id=worker.id, stream=stream, offset=have, data=piece.data, size=size))
    if stream == "stdout":
        worker.stdout_bytes = have + size
    else:
        worker.stderr_bytes = have + size


def report(session: Session, principal: Principal, body: Reports, now: datetime | None = None) -> list[Assignment]:
    """Apply the agent's reports; answer with the node's assignments (saves the agent a round trip)."""
    node = agent_node(session, principal, body.node)
    keys = [r.key for r in body.workers]
    workers = {w.key: w for w in session.execute(select(JobWorker).where(
        JobWorker.key.in_(keys), JobWorker.node_id == node.id)).scalars()}
    for position, item in enumerate(body.workers):
        worker = workers.get(item.key)
        if worker is None:  # another node's worker answers like an unknown one
            raise NotFound(f"no worker '{item.key[:140]}' on this node", field=f"workers.{position}.key")
        append_log(session, worker, "stdout", item.stdout)
        append_log(session, worker, "stderr", item.stderr)
        apply_progress(session, worker, item.progress, now or utcnow())
        if worker.state in WORKER_ENDED:
            if item.state in WORKER_ENDED and worker.desired == "stop":
                worker.desired = "done"  # the agent has stopped it: no need to assign it again
            continue  # an ended worker's state is final
        worker.state, worker.exit_code, worker.reason = item.state, item.exit_code, item.reason
        worker.notes = list(dict.fromkeys([*worker.notes, *item.notes]))[:16]
        worker.started_at = worker.started_at or item.started_at
        worker.ended_at = item.ended_at if item.state in WORKER_ENDED else None
    session.flush()
    return assignments(session, principal, body.node)


def apply_progress(session: Session, worker: JobWorker, progress: Progress | None, now: datetime) -> None:
    """Rank 0's newest progress line of the job's current attempt becomes the job's progress (an old
    attempt's or another rank's line is ignored). ``progress_at`` moves only when the line changes: it is
    what the hang rule watches. The meter's facts (``JobProgress``) are kept for the attempt's first line
    and each new complete checkpoint."""
    if progress is None or worker.rank != 0:
        return
    job = session.get(Job, worker.job_id)
    if job is not None and job.engine_handle == worker.handle:
        record_progress(session, job, progress.model_dump(), now)


def record_progress(session: Session, job: Job, line: dict[str, Any], now: datetime) -> None:
    """The newest progress line of the job's current attempt (from its agent, or its engine's driver)."""
    if job.state not in ("starting", "running"):
        return
    try:
        progress = Progress.model_validate(line)  # a driver's line is checked like an agent's
    except ValidationError:
        return
    line = progress.model_dump()
    if job.progress == line:
        return
    first = job.progress is None  # reset when an attempt ends
    newer_checkpoint = (progress.checkpoint_step is not None
                        and (job.progress or {}).get("checkpoint_step") != progress.checkpoint_step)
    job.progress, job.progress_at = line, now
    if first or newer_checkpoint:
        session.add(JobProgress(job_id=job.id, attempt=job.attempt, at=now, step=progress.step,
                                tokens=progress.tokens, checkpoint_step=progress.checkpoint_step,
                                checkpoint_s=progress.checkpoint_s))
