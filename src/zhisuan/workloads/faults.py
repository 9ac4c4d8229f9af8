"""Faults of running jobs: what the scheduler stops, how an ended attempt's failure is classified, and
whether the job restarts (``core.goodput.restart.decide_restart``, the rules the simulator uses too).

Stops the scheduler asks for (``Job.stop_requested``):

- ``fault``: a node the job runs on was cordoned for a fault (a node-scoped device fault such as
  XID 79 or an NVLink error, the engine reporting the node down), or a device the job holds was
  cordoned for its own fault (XID 48, ECC: ``core.health.scope``). Work on the node's other devices
  keeps running. A cordon an operator set by hand does not stop jobs (it only keeps new ones away).
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
from zhisuan.inventory.models import Device, Node, Site
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


@dataclass(frozen=True)
class Cordons:
    """What is cordoned now: ``site/node`` → its cordon, and ``site/node`` → device index → the
    reason of each device cordoned on its own."""

    nodes: dict[str, Cordon]
    devices: dict[str, dict[int, str]]


def current_cordons(session: Session) -> Cordons:
    rows = session.execute(select(Site.name, Node.name, Node.cordon_reason, Node.cordon_manual)
                           .join(Site, Site.id == Node.site_id).where(Node.cordon_reason.is_not(None)))
    nodes = {f"{site}/{node}": Cordon(str(reason), bool(manual)) for site, node, reason, manual in rows}
    devices: dict[str, dict[int, str]] = {}
    for site, node, index, reason in session.execute(
            select(Site.name, Node.name, Device.index, Device.cordon_reason)
            .join(Node, Node.id == Device.node_id).join(Site, Site.id == Node.site_id)
            .where(Device.cordon_reason.is_not(None))):
        devices.setdefault(f"{site}/{node}", {})[int(index)] = str(reason)
    return Cordons(nodes, devices)


def placed_nodes(job: Job) -> frozenset[str]:
    return frozenset(str(w["node"]) for w in job.placement)


def fault_cordons_hit(job: Job, cordons: Cordons) -> dict[str, str]:
    """``site/node`` → reason, for each node where the job holds something cordoned for a fault: the
    node itself (not by hand, not a lost agent's) or one of the devices its workers hold there."""
    hit: dict[str, str] = {}
    for worker in job.placement:
        node = str(worker["node"])
        cordon = cordons.nodes.get(node)
        if cordon is not None and not cordon.manual:
            hit[node] = cordon.reason
            continue
        held = sorted(set(worker["device_indices"]) & set(cordons.devices.get(node, {})))
        if held and node not in hit:
            hit[node] = "; ".join(cordons.devices[node][index] for index in held)
    return hit


def request_fault_stops(session: Session, now: datetime) -> int:
    """Mark running jobs on fault-cordoned nodes, and hung jobs, to be stopped; returns how many."""
    # A lost agent's workers are already marked lost (heartbeat monitor): the engine reports that itself.
    found = current_cordons(session)
    cordons = Cordons({name: c for name, c in found.nodes.items() if not c.reason.startswith("agent lost")},
                      found.devices)
    jobs = session.execute(select(Job).where(Job.state.in_(("starting", "running")),
                                             Job.stop_requested.is_(None))).scalars().all()
    marked = 0
    for job in jobs:
        hit = fault_cordons_hit(job, cordons)
        if hit:
            node = min(hit)
            whole = node in cordons.nodes and not cordons.nodes[node].manual
            where = f"node {node}" if whole else f"a device it holds on {node}"
            job.stop_requested = "fault"
            add_event(session, job, job.state, f"{where} cordoned ({hit[node]}); stopping the job to restart it "
                      "on healthy devices", now)
            marked += 1
        elif job.state == "running" and job.hang_timeout_s and job.progress_at is not None \
                and now - job.progress_at > timedelta(seconds=job.hang_timeout_s):
            job.stop_requested = "hang"
            add_event(session, job, job.state, f"hang: no progress report for {job.hang_timeout_s} s "
                      "(hang_timeout_s); stopping it", now)
            marked += 1
    return marked


def classify(job: Job, engine: EngineJobState, cordons: Cordons) -> Failure:
    """The failure of an ended attempt, for ``decide_restart``."""
    nodes = placed_nodes(job)
    hit = fault_cordons_hit(job, cordons)
    if job.stop_requested == "hang":
        return Failure("hang", nodes, "no progress")
    if "agent_lost" in engine.reason:
        return Failure("agent_lost", frozenset(hit) or nodes)
    if hit:
        kind = "device_fault" if any(reason.startswith("device") for reason in hit.values()) else "node_fault"
        return Failure(kind, frozenset(hit), next(iter(hit.values()))[:200])
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
