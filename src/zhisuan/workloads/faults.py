"""Faults of running jobs: what the scheduler stops, how an ended attempt's failure is classified, and
whether the job restarts (``core.goodput.restart.decide_restart``, the rules the simulator uses too).

Stops the scheduler asks for (``Job.stop_requested``):

- ``fault``: a node the job runs on was cordoned for a fault (a device's XID/ECC/NVLink error or
  alarm, the engine reporting the node down). A cordon an operator set by hand does not stop jobs
  (it only keeps new ones away).
- ``hang``: the job set ``hang_timeout_s`` and no new progress line arrived for that long (the clock
  starts when the attempt runs).

A command that could not be started at all (exit 126/127: not executable for the job's user, not
found) is the tenant's error and is not retried: another node would not change it.

An attempt that ended in failure restarts when the job opted in (``checkpoint_dir`` set, or
``max_restarts`` > 0): the whole gang is queued again (``attempt`` + 1 at its next admission, an event
with the reason), after the policy's backoff (``not_before``), away from cordoned nodes. The restarted
attempt gets the same ``ZHISUAN_CHECKPOINT_DIR``: resuming from the last complete checkpoint is the
trainer's part (it reads the newest valid ``step-<N>``), the platform's is to keep that path the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from zhisuan.core.goodput.restart import Failure, RestartDecision, RestartPolicy, decide_restart
from zhisuan.core.job_lifecycle import Transition
from zhisuan.drivers.base import EngineJobState
from zhisuan.inventory.models import Node, Site
from zhisuan.workloads.models import Job
from zhisuan.workloads.service import add_event

# The shells' (and the local agent's) exit codes for a command that could not be started at all:
# 126 found but not executable (permission denied, bad interpreter), 127 not found.
NOT_STARTED_CODES = frozenset({126, 127})
NOT_STARTED = "the command could not be started"
NOT_STARTED_HINT = ("Where the site's agent or Slurm runs as root, jobs run as the tenant's own unix user "
                    "(zs-<tenant>), which must be able to read and execute the program, its interpreter and "
                    "every directory above them (a Python under /root is out of its reach).")


@dataclass(frozen=True)
class Cordon:
    reason: str
    manual: bool


def cordoned_nodes(session: Session) -> dict[str, Cordon]:
    """``site/node`` → its cordon, for every cordoned node."""
    rows = session.execute(select(Site.name, Node.name, Node.cordon_reason, Node.cordon_manual)
                           .join(Site, Site.id == Node.site_id).where(Node.cordon_reason.is_not(None)))
    return {f"{site}/{node}": Cordon(str(reason), bool(manual)) for site, node, reason, manual in rows}


def placed_nodes(job: Job) -> frozenset[str]:
    return frozenset(str(w["node"]) for w in job.placement)


def request_fault_stops(session: Session, now: datetime) -> int:
    """Mark running jobs on fault-cordoned nodes, and hung jobs, to be stopped; returns how many."""
    # A lost agent's workers are already marked lost (heartbeat monitor): the engine reports that itself.
    cordons = {name: c for name, c in cordoned_nodes(session).items()
               if not c.manual and not c.reason.startswith("agent lost")}
    jobs = session.execute(select(Job).where(Job.state.in_(("starting", "running")),
                                             Job.stop_requested.is_(None))).scalars().all()
    marked = 0
    for job in jobs:
        hit = sorted(placed_nodes(job) & set(cordons))
        if hit:
            job.stop_requested = "fault"
            add_event(session, job, job.state, f"node {hit[0]} cordoned ({cordons[hit[0]].reason}); stopping the "
                      "job to restart it on healthy nodes", now)
            marked += 1
        elif job.state == "running" and job.hang_timeout_s and job.progress_at is not None \
                and now - job.progress_at > timedelta(seconds=job.hang_timeout_s):
            job.stop_requested = "hang"
            add_event(session, job, job.state, f"hang: no progress report for {job.hang_timeout_s} s "
                      "(hang_timeout_s); stopping it", now)
            marked += 1
    return marked


def classify(job: Job, engine: EngineJobState, cordons: dict[str, Cordon]) -> Failure:
    """The failure of an ended attempt, for ``decide_restart``."""
    nodes = placed_nodes(job)
    hit = {n: cordons[n] for n in nodes if n in cordons and not cordons[n].manual}
    if job.stop_requested == "hang":
        return Failure("hang", nodes, "no progress")
    if "agent_lost" in engine.reason:
        return Failure("agent_lost", frozenset(hit) or nodes)
    if hit:
        kind = "device_fault" if any(c.reason.startswith("device") for c in hit.values()) else "node_fault"
        return Failure(kind, frozenset(hit), next(iter(hit.values())).reason[:200])
    if engine.platform_fault or engine.state in ("lost", "cancelled"):
        return Failure("node_fault", nodes, engine.reason[:200])
    if engine.exit_code in NOT_STARTED_CODES:
        return Failure("exit_nonzero", nodes, f"{NOT_STARTED} ({engine.reason[:200]})")
    return Failure("exit_nonzero", nodes, f"exit code {engine.exit_code}")


def opted_in(job: Job) -> bool:
    return job.checkpoint_dir is not None or bool(job.max_restarts)


def restart_decision(job: Job, failure: Failure, defaults: RestartPolicy) -> RestartDecision:
    if failure.kind == "exit_nonzero" and failure.signature.startswith(NOT_STARTED):
        return RestartDecision(False, 0.0, f"user error: {failure.signature}; not retried: it is the command, not "
                               f"the node. {NOT_STARTED_HINT}", user_error=True)
    policy = RestartPolicy(max_restarts=defaults.max_restarts if job.max_restarts is None else job.max_restarts,
                           backoff_base_s=defaults.backoff_base_s, backoff_max_s=defaults.backoff_max_s,
                           same_failure_limit=defaults.same_failure_limit)
    earlier = [Failure(f["kind"], frozenset(f["nodes"]), f.get("signature", "")) for f in job.failures]
    return decide_restart(policy, earlier, failure)


def requeue(session: Session, job: Job, failure: Failure, decision: RestartDecision, now: datetime) -> None:
    """The attempt already ended (holds released): record the failure and queue the gang again."""
    job.failures = [*job.failures, {"kind": failure.kind, "nodes": sorted(failure.nodes),
                                    "signature": failure.signature, "at": now.isoformat(),
                                    "attempt": job.attempt}]
    job.restarts += 1
    job.not_before = now + timedelta(seconds=decision.delay_s) if decision.delay_s > 0 else None
    job.progress, job.progress_at, job.engine_handle = None, None, None
    add_event(session, job, "requeued", decision.reason, now)


def failed_transition(step: Transition, decision: RestartDecision | None) -> str:
    """The reason a failed job ends with (a restart refused says why)."""
    if decision is None:
        return step.reason
    return decision.reason if decision.user_error else f"{step.reason}; {decision.reason}"
