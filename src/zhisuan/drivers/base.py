"""The one small interface every workload engine is driven through.

A driver translates a placed job (``LaunchSpec``: which nodes, which device indices, what to run) into
its engine's own terms and back. Five calls, all idempotent and quick (seconds, not minutes), all
called by the control plane *outside* any database transaction:

- ``import_inventory()`` — the site's nodes and devices as the engine knows them;
- ``submit(spec)``       — start the job; a second call with the same ``spec.key`` returns the same
  handle and starts nothing new (so a control plane that restarts mid-submit never duplicates work);
- ``poll(handles)``      — the engine's view of many jobs at once; a handle the engine no longer knows
  is ``lost`` (never an exception);
- ``logs(handle, rank, stream, offset, limit)`` — stdout or stderr of one worker, from a byte offset;
- ``cancel(handle)``     — stop it; cancelling an ended or unknown job is a no-op.

Errors: ``EngineUnavailable`` means "cannot reach the engine now, nothing was changed, try again"
(the job stays queued with that reason, never lost); ``SubmitRejected`` means the engine refused this
job for good (it fails with the engine's words). Translate and parse functions of each driver are pure
and tested with golden files; ``tests/drivers/conformance.py`` is the suite every driver passes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Protocol, runtime_checkable

# Engine-side states, coarser than the job's own: the control plane maps them onto its lifecycle.
ENGINE_STATES = ("pending", "running", "succeeded", "failed", "cancelled", "lost")
ENDED_STATES = frozenset({"succeeded", "failed", "cancelled", "lost"})
STREAMS = ("stdout", "stderr")


class EngineUnavailable(Exception):
    """The engine cannot be reached now (daemon down, socket refused, timeout): retry later."""


class SubmitRejected(Exception):
    """The engine refused the job for good (e.g. Slurm: "Requested node configuration is not available")."""


@dataclass(frozen=True)
class WorkerAssignment:
    """One worker (rank) of a job, as placed: a node and device indices on it.

    ``node`` is the node's name inside its site (``inventory.Node.name``, which for engine-managed sites
    is the engine's own node name). ``visible_devices_env`` is the vendor's variable from the catalog
    (``CUDA_VISIBLE_DEVICES``, ``ASCEND_RT_VISIBLE_DEVICES``, ``MLU_VISIBLE_DEVICES`` …) and
    ``device_plugin_resource`` the Kubernetes device-plugin name (``nvidia.com/gpu``,
    ``huawei.com/Ascend910`` …); both None for a CPU-only worker.
    """

    rank: int
    node: str
    device_indices: tuple[int, ...] = ()
    milli_per_device: int = 1000
    model: str | None = None
    visible_devices_env: str | None = None
    device_plugin_resource: str | None = None
    cpu_milli: int = 1000
    memory_mib: int = 1024


@dataclass(frozen=True)
class LaunchSpec:
    """What to run, where. ``key`` (``zs-<job id>-<attempt>``) is the idempotency key and the job's
    name inside the engine. ``workdir`` is relative to the tenant's own directory; ``script`` (if set)
    is run with ``/bin/sh`` instead of ``command``. Every worker gets the rendezvous variables
    (``MASTER_ADDR`` = rank 0's node, ``MASTER_PORT`` = ``rendezvous_port``, ``WORLD_SIZE``, ``RANK``,
    ``NODE_RANK``) and ``ZHISUAN_JOB_ID`` / ``ZHISUAN_CHECKPOINT_DIR`` when a checkpoint dir is set."""

    key: str
    job_id: int
    attempt: int
    tenant: str
    command: tuple[str, ...]
    workers: tuple[WorkerAssignment, ...]
    max_run_s: int
    script: str | None = None
    image: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    workdir: str | None = None
    checkpoint_dir: str | None = None
    rendezvous_port: int = 29500


@dataclass(frozen=True)
class EngineJobState:
    """The engine's view of one job. ``platform_fault`` marks an end the tenant did not cause (node
    failure, engine lost the job, preempted by the engine) — such time is not billed. ``notes`` are
    facts worth an event (e.g. "no container runtime on this site: the command ran on the host")."""

    state: str
    reason: str = ""
    exit_code: int | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    platform_fault: bool = False
    notes: tuple[str, ...] = ()
    # Rank 0's newest ZHISUAN_PROGRESS_FILE line, for engines whose driver reads it (Slurm); local sites'
    # agents send it with their worker reports instead.
    progress: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.state not in ENGINE_STATES:
            raise ValueError(f"unknown engine state {self.state!r}")

    @property
    def ended(self) -> bool:
        return self.state in ENDED_STATES


@dataclass(frozen=True)
class LogChunk:
    """Bytes ``[offset, next_offset)`` of one worker's stream, decoded as UTF-8 (errors replaced)."""

    data: str
    next_offset: int
    complete: bool = False  # the worker has ended and there is nothing after next_offset


@dataclass(frozen=True)
class ImportedDevice:
    index: int
    model: str  # a catalog key, or the engine's own name when the catalog cannot resolve it
    memory_mib: int = 0


@dataclass(frozen=True)
class ImportedNode:
    """A node as its engine reports it; ``state`` is ``ready``, ``drained`` or ``down``."""

    name: str
    cpu_cores: int
    memory_mib: int
    devices: tuple[ImportedDevice, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    state: str = "ready"


@runtime_checkable
class Driver(Protocol):
    kind: ClassVar[str]

    def import_inventory(self) -> list[ImportedNode]: ...

    def submit(self, spec: LaunchSpec) -> str: ...

    def poll(self, handles: Sequence[str]) -> dict[str, EngineJobState]: ...

    def logs(self, handle: str, rank: int, stream: str, offset: int = 0, limit: int = 65536) -> LogChunk: ...

    def cancel(self, handle: str) -> None: ...


def rendezvous_env(spec: LaunchSpec, worker: WorkerAssignment, master_addr: str) -> dict[str, str]:
    """The variables every framework reads (torchrun, DeepSpeed, Megatron, MindSpore via its own names)."""
    env = {
        "MASTER_ADDR": master_addr,
        "MASTER_PORT": str(spec.rendezvous_port),
        "WORLD_SIZE": str(len(spec.workers)),
        "RANK": str(worker.rank),
        "NODE_RANK": str(worker.rank),
        "ZHISUAN_JOB_ID": str(spec.job_id),
        "ZHISUAN_JOB_ATTEMPT": str(spec.attempt),
    }
    if spec.checkpoint_dir:
        env["ZHISUAN_CHECKPOINT_DIR"] = spec.checkpoint_dir
    return env


def visible_devices(worker: WorkerAssignment) -> dict[str, str]:
    """``{CUDA_VISIBLE_DEVICES: "0,1"}``-style variable for the worker's devices (empty if CPU-only)."""
    if not worker.visible_devices_env or not worker.device_indices:
        return {}
    return {worker.visible_devices_env: ",".join(str(i) for i in worker.device_indices)}
