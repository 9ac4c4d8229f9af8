"""``squeue --json`` / ``sinfo --json`` (Slurm 22.05, OpenAPI v0.0.38) → the driver interface's types. Pure.

Job states (Slurm's ``job_state``) onto the engine states of ``drivers.base``:

==========================================================  ===========  ==============
Slurm                                                       engine       platform fault
==========================================================  ===========  ==============
PENDING, CONFIGURING, REQUEUED, REQUEUE_*, SUSPENDED, …     pending
RUNNING, COMPLETING, STAGE_OUT, SIGNALING, RESIZING         running
COMPLETED                                                   succeeded
FAILED, TIMEOUT, DEADLINE, OUT_OF_MEMORY                    failed       no
NODE_FAIL, BOOT_FAIL, PREEMPTED, REVOKED                    failed       yes
CANCELLED                                                   cancelled
==========================================================  ===========  ==============

``exit_code`` in squeue's JSON is the raw wait status: ``status >> 8`` for a normal exit, ``128 + signal``
when the batch script was killed by a signal (the shell's convention).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from zhisuan.catalog.loader import Catalog
from zhisuan.drivers.base import EngineJobState, ImportedDevice, ImportedNode
from zhisuan.drivers.slurm.gres import model_for_gres_type
from zhisuan.drivers.slurm.translate import IMAGE_COMMENT_PREFIX

PENDING = frozenset({"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD",
                     "SUSPENDED", "STOPPED", "SPECIAL_EXIT"})
RUNNING = frozenset({"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING", "RESIZING", "UPDATE_DB", "POWER_UP_NODE"})
TENANT_FAILURES = {"FAILED": "exited with a non-zero code", "TIMEOUT": "reached its time limit",
                   "DEADLINE": "reached its deadline", "OUT_OF_MEMORY": "ran out of memory"}
PLATFORM_FAILURES = {"NODE_FAIL": "a node of the job failed", "BOOT_FAIL": "a node failed to boot",
                     "PREEMPTED": "preempted by Slurm", "REVOKED": "revoked by the federation"}
# Rejected at submit: Slurm keeps a FAILED record that never ran (not a job to adopt on resubmit).
NEVER_RAN_REASONS = frozenset({"BadConstraints", "PartitionConfig", "InvalidAccount", "InvalidQOS"})
DOWN_NODE_STATES = frozenset({"down", "fail", "failing", "unknown", "future", "inval", "invalid", "error"})
DOWN_NODE_FLAGS = frozenset({"NOT_RESPONDING", "FAIL", "INVALID_REG", "POWERED_DOWN", "POWER_DOWN"})
DRAINED_NODE_FLAGS = frozenset({"DRAIN", "DRAINING", "DRAINED", "MAINTENANCE", "REBOOT_REQUESTED"})
GRES_ENTRY = re.compile(r"(?P<name>[^:(,]+)(?::(?P<type>[^:(,]+))?:(?P<count>\d+)(?:\([^)]*\))?")
NO_CONTAINER_NOTE = "no container plugin on this Slurm site: the command ran on the host, image {image} ignored"


class SlurmOutputError(ValueError):
    """The JSON carries errors, or is not the shape this parser knows."""


@dataclass(frozen=True)
class SlurmJob:
    job_id: str
    name: str
    state: str
    reason: str
    exit_status: int  # raw wait status
    submit_time: int
    start_time: int
    end_time: int
    comment: str
    batch_host: str = ""  # empty until the job was started on a node

    @property
    def never_ran(self) -> bool:
        return self.state == "FAILED" and self.reason in NEVER_RAN_REASONS


def checked(document: Mapping[str, Any]) -> Mapping[str, Any]:
    errors = document.get("errors") or []
    if errors:
        words = "; ".join(str(e.get("description") or e.get("error") or e) for e in errors)
        raise SlurmOutputError(words)
    return document


def parse_jobs(squeue: Mapping[str, Any]) -> list[SlurmJob]:
    """Every job squeue reports (finished ones too while MinJobAge keeps them)."""
    return [
        SlurmJob(job_id=str(j["job_id"]), name=str(j.get("name") or ""), state=str(j.get("job_state") or ""),
                 reason=str(j.get("state_reason") or ""), exit_status=int(j.get("exit_code") or 0),
                 submit_time=int(j.get("submit_time") or 0), start_time=int(j.get("start_time") or 0),
                 end_time=int(j.get("end_time") or 0), comment=str(j.get("comment") or ""),
                 batch_host=str(j.get("batch_host") or ""))
        for j in checked(squeue).get("jobs", [])
    ]


def job_named(jobs: Sequence[SlurmJob], name: str) -> SlurmJob | None:
    """The newest job with this name that was accepted (rejected submissions leave FAILED stubs)."""
    candidates = [j for j in jobs if j.name == name and not j.never_ran]
    return max(candidates, key=lambda j: (j.submit_time, int(j.job_id)), default=None)


def exit_code_of(status: int) -> int:
    """Raw wait status → shell-style exit code (``128 + signal`` for a signal)."""
    signal = status & 0x7F
    return 128 + signal if signal else (status >> 8) & 0xFF


def _utc(epoch: int) -> datetime | None:
    return datetime.fromtimestamp(epoch, UTC) if epoch > 0 else None


def engine_state(job: SlurmJob) -> EngineJobState:
    """One Slurm job → ``EngineJobState`` (table in the module docstring)."""
    notes: tuple[str, ...] = ()
    if job.comment.startswith(IMAGE_COMMENT_PREFIX):
        notes = (NO_CONTAINER_NOTE.format(image=job.comment.removeprefix(IMAGE_COMMENT_PREFIX)),)
    reason = "" if job.reason in ("", "None") else job.reason
    if job.state in PENDING:
        return EngineJobState("pending", reason=reason or job.state.lower(), notes=notes)
    if job.never_ran:
        return EngineJobState("failed", reason=f"{job.reason}: refused by Slurm, never ran", notes=notes)
    # Slurm stamps start_time on a job cancelled while pending too: only a job given a node has started
    started = _utc(job.start_time) if job.batch_host else None
    if job.state in RUNNING:
        return EngineJobState("running", reason=reason, started_at=started, notes=notes)
    ended = _utc(job.end_time)
    code = exit_code_of(job.exit_status)
    if job.state == "COMPLETED":
        return EngineJobState("succeeded", exit_code=code, started_at=started, ended_at=ended, notes=notes)
    if job.state == "CANCELLED":
        return EngineJobState("cancelled", reason="cancelled", exit_code=code, started_at=started, ended_at=ended,
                              notes=notes)
    if job.state in TENANT_FAILURES or job.state in PLATFORM_FAILURES:
        words = TENANT_FAILURES.get(job.state) or PLATFORM_FAILURES[job.state]
        return EngineJobState("failed", reason=f"{job.state}: {words}", exit_code=code, started_at=started,
                              ended_at=ended, platform_fault=job.state in PLATFORM_FAILURES, notes=notes)
    # A state this table does not know yet: still the engine's job, so never "lost" (that would rerun it).
    return EngineJobState("pending", reason=f"unrecognised Slurm state {job.state}", notes=notes)


def gres_devices(gres: str) -> list[tuple[str, int]]:
    """``"gpu:h100:8(S:0-1),gpu:a100:2"`` → ``[("h100", 8), ("a100", 2)]`` (GPUs only; typeless → "gpu")."""
    out = []
    for match in GRES_ENTRY.finditer(gres or ""):
        if match["name"].strip(", ") == "gpu":
            out.append((match["type"] or "gpu", int(match["count"])))
    return out


def node_state(state: str, flags: Sequence[str]) -> str:
    """Slurm's node state and flags → ``ready`` / ``drained`` / ``down`` (down wins over drained)."""
    words = {w.lower() for w in re.split(r"[+ ]", state or "") if w}
    flag_set = {f.upper() for f in flags} | {w.upper() for w in words}
    if words & DOWN_NODE_STATES or flag_set & DOWN_NODE_FLAGS:
        return "down"
    if words & {"drain", "drained", "draining"} or flag_set & DRAINED_NODE_FLAGS:
        return "drained"
    return "ready"


def imported_nodes(sinfo: Mapping[str, Any], catalog: Catalog,
                   gres_models: Mapping[str, str] | None = None) -> list[ImportedNode]:
    """``sinfo --json`` → ``ImportedNode`` per node, devices indexed 0..n-1 in Slurm's gres order."""
    nodes = []
    for raw in checked(sinfo).get("nodes", []):
        devices: list[ImportedDevice] = []
        for gres_type, count in gres_devices(str(raw.get("gres") or "")):
            model_key = model_for_gres_type(gres_type, catalog, gres_models)
            model = catalog.resolve(model_key) if model_key in catalog else None
            # usable MiB per device as the tools report it (a package of 2 dies is 2 devices), not nominal GiB
            memory = (model.per_device_memory_mib() or 0) if model is not None else 0
            devices += [ImportedDevice(len(devices) + i, model_key, memory) for i in range(count)]
        labels = {"slurm.partitions": ",".join(raw.get("partitions") or [])}
        if raw.get("features"):
            labels["slurm.features"] = str(raw["features"])
        if raw.get("reason"):
            labels["slurm.reason"] = str(raw["reason"])
        nodes.append(ImportedNode(name=str(raw["name"]), cpu_cores=int(raw.get("cpus") or 0),
                                  memory_mib=int(raw.get("real_memory") or 0), devices=tuple(devices),
                                  labels=labels, state=node_state(str(raw.get("state") or ""),
                                                                  raw.get("state_flags") or [])))
    return sorted(nodes, key=lambda n: n.name)
