"""The control plane's side of the ``local`` engine: job workers handed to node agents through the database.

``submit`` writes one ``job_workers`` row per rank (the launch: argv or script, environment with the
rendezvous and visible-devices variables, limits) on the placed node; the node's agent fetches the
rows of its node, runs them (``agent.jobs.WorkerRunner``), and reports state and log bytes back
(``agent_sync.py``). ``poll`` combines the ranks' reports into the job's state; ``cancel`` sets the
rows' desired state to ``stop``. Each call is one short transaction of its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload, sessionmaker

from zhisuan.drivers.base import (
    EngineJobState,
    ImportedDevice,
    ImportedNode,
    LaunchSpec,
    LogChunk,
    SubmitRejected,
    WorkerAssignment,
    rendezvous_env,
    visible_devices,
)
from zhisuan.inventory.models import Node
from zhisuan.store.base import transaction
from zhisuan.workloads.models import JobLogChunk, JobWorker

WORKER_ENDED = ("succeeded", "failed", "cancelled", "lost")
ADDRESS_LABEL = "zhisuan.io/address"  # a node's address for rendezvous when its name does not resolve


def node_address(node: Node) -> str:
    return node.labels.get(ADDRESS_LABEL) or node.name


def worker_launch(spec: LaunchSpec, worker: WorkerAssignment, master: str) -> dict[str, object]:
    env = {**spec.env, **rendezvous_env(spec, worker, master), **visible_devices(worker)}
    return {"key": f"{spec.key}-r{worker.rank}", "tenant": spec.tenant, "command": list(spec.command),
            "script": spec.script, "env": env, "workdir": spec.workdir, "cpu_milli": worker.cpu_milli,
            "memory_mib": worker.memory_mib, "max_run_s": spec.max_run_s}


def combine(workers: Sequence[JobWorker]) -> EngineJobState:
    """One job state from its ranks: any failure fails the gang; all succeeded succeeds it."""
    if not workers:
        return EngineJobState("lost", "no workers recorded")
    started = [w.started_at for w in workers if w.started_at]
    ended = [w.ended_at for w in workers if w.ended_at]
    notes = tuple(dict.fromkeys(n for w in workers for n in w.notes))
    common = {"started_at": min(started) if started else None, "notes": notes}
    failed = [w for w in workers if w.state == "failed"]
    if failed:
        first = min(failed, key=lambda w: w.rank)
        return EngineJobState("failed", f"rank {first.rank}: {first.reason or 'failed'}", first.exit_code,
                              ended_at=max(ended) if ended else None, **common)  # type: ignore[arg-type]
    lost = [w for w in workers if w.state == "lost"]
    if lost:
        return EngineJobState("lost", f"rank {lost[0].rank}: {lost[0].reason or 'the agent lost the process'}",
                              platform_fault=True, **common)  # type: ignore[arg-type]
    if all(w.state == "succeeded" for w in workers):
        return EngineJobState("succeeded", "exit code 0 on every rank", 0, ended_at=max(ended) if ended else None,
                              **common)  # type: ignore[arg-type]
    if all(w.state in WORKER_ENDED for w in workers):
        return EngineJobState("cancelled", "stopped", ended_at=max(ended) if ended else None,
                              **common)  # type: ignore[arg-type]
    if any(w.state == "running" for w in workers):
        return EngineJobState("running", f"{sum(w.state == 'running' for w in workers)} of {len(workers)} ranks "
                              "running", **common)  # type: ignore[arg-type]
    return EngineJobState("pending", "waiting for the node agents to start the workers", **common)  # type: ignore[arg-type]


class LocalDriver:
    kind: ClassVar[str] = "local"

    def __init__(self, sessions: sessionmaker[Session], site_id: int) -> None:
        self.sessions, self.site_id = sessions, site_id

    def import_inventory(self) -> list[ImportedNode]:
        """Agents register this site's nodes themselves: the inventory is the database's."""
        with self.sessions() as session:
            nodes = session.execute(select(Node).where(Node.site_id == self.site_id)
                                    .options(selectinload(Node.devices)).order_by(Node.id)).scalars().all()
            return [ImportedNode(
                name=n.name, cpu_cores=n.cpu_cores, memory_mib=n.memory_mib, labels=dict(n.labels),
                state="drained" if n.drained else ("ready" if n.status == "ready" else "down"),
                devices=tuple(ImportedDevice(d.index, d.model, d.memory_mib) for d in n.devices)) for n in nodes]

    def submit(self, spec: LaunchSpec) -> str:
        with transaction(self.sessions) as session:
            if session.execute(select(JobWorker.id).where(JobWorker.handle == spec.key).limit(1)).first():
                return spec.key  # already handed over: idempotent
            names = {w.node for w in spec.workers}
            nodes = {n.name: n for n in session.execute(select(Node).where(
                Node.site_id == self.site_id, Node.name.in_(names))).scalars()}
            missing = sorted(names - set(nodes))
            if missing:
                raise SubmitRejected(f"node {missing[0]} is not in this site")
            master = node_address(nodes[spec.workers[0].node])
            for worker in spec.workers:
                launch = worker_launch(spec, worker, master)
                session.add(JobWorker(job_id=spec.job_id, handle=spec.key, key=str(launch["key"]), rank=worker.rank,
                                      node_id=nodes[worker.node].id, launch=launch))
        return spec.key

    def poll(self, handles: Sequence[str]) -> dict[str, EngineJobState]:
        with self.sessions() as session:
            rows = session.execute(select(JobWorker).where(JobWorker.handle.in_(list(handles)))
                                   .order_by(JobWorker.rank)).scalars().all()
            by_handle: dict[str, list[JobWorker]] = {}
            for row in rows:
                by_handle.setdefault(row.handle, []).append(row)
            return {h: combine(by_handle.get(h, [])) for h in handles}

    def logs(self, handle: str, rank: int, stream: str, offset: int = 0, limit: int = 65536) -> LogChunk:
        with self.sessions() as session:
            worker = session.execute(select(JobWorker).where(JobWorker.key == f"{handle}-r{rank}")).scalar_one_or_none()
            if worker is None:
                return LogChunk("", offset, True)
            total = worker.stdout_bytes if stream == "stdout" else worker.stderr_bytes
            chunks = session.execute(select(JobLogChunk).where(
                JobLogChunk.worker_id == worker.id, JobLogChunk.stream == stream,
                JobLogChunk.offset + JobLogChunk.size > offset).order_by(JobLogChunk.offset)).scalars()
            data, start = b"", None
            for chunk in chunks:
                start = chunk.offset if start is None else start
                data += chunk.data.encode()
                if len(data) - (offset - start) >= limit:
                    break
            ended = worker.state in WORKER_ENDED
            if start is None:
                return LogChunk("", offset, ended and offset >= total)
            piece = cut_utf8(data[max(0, offset - start):], limit)
            end = max(offset, start) + len(piece)
            return LogChunk(piece.decode(errors="replace"), end, ended and end >= total)

    def cancel(self, handle: str) -> None:
        with transaction(self.sessions) as session:
            for worker in session.execute(select(JobWorker).where(JobWorker.handle == handle)).scalars():
                if worker.state in WORKER_ENDED:
                    continue
                if worker.state == "pending" and worker.desired == "run":
                    worker.state, worker.reason = "cancelled", "cancelled before the agent started it"
                    worker.desired = "done"  # nothing runs: no agent needs to hear of it
                    continue
                worker.desired = "stop"


def cut_utf8(data: bytes, limit: int) -> bytes:
    """At most ``limit`` bytes, never ending inside a UTF-8 character (unless one character exceeds it)."""
    if len(data) <= limit:
        return data
    end = limit
    while end > 0 and (data[end] & 0xC0) == 0x80:
        end -= 1
    return data[:end] if end > 0 else data[:limit]
