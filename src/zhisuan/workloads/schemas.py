"""Request and response bodies of the jobs API."""

from __future__ import annotations

import re
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from zhisuan.identity.schemas import NAME_PATTERN, Strict

ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
MAX_ENV_BYTES = 32 * 1024
MAX_SCRIPT_BYTES = 64 * 1024
MAX_RUN_S = 30 * 86400  # a month: anything longer is a lease, not a job
# Variables the platform sets for every worker: a job may not set them itself.
RESERVED_ENV_PREFIXES = ("ZHISUAN_", "SLURM_")
RESERVED_ENV = frozenset({"MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK", "NODE_RANK", "LOCAL_RANK",
                          "CUDA_VISIBLE_DEVICES", "ASCEND_RT_VISIBLE_DEVICES", "MLU_VISIBLE_DEVICES",
                          "HIP_VISIBLE_DEVICES", "MUSA_VISIBLE_DEVICES", "XPU_VISIBLE_DEVICES",
                          "MACA_VISIBLE_DEVICES", "TOPS_VISIBLE_DEVICES", "HOME", "USER", "LOGNAME"})
RELATIVE_PATH_PATTERN = r"^[A-Za-z0-9._-][A-Za-z0-9._/-]{0,511}$"


class JobSubmit(Strict):
    """A job: what to run, with what per worker, how many workers (a gang), for how long, in which class."""

    # Arguments, scripts and environment values are the tenant's bytes: never trim their whitespace.
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    name: str | None = Field(default=None, pattern=NAME_PATTERN)
    command: list[str] | None = Field(default=None, min_length=1, max_length=256,
                                      description="argv, e.g. [\"python\", \"train.py\"]; or give `script`")
    script: str | None = Field(default=None, min_length=1, description="a shell script run with /bin/sh")
    image: str | None = Field(default=None, min_length=1, max_length=512, description=(
        "container image (Kubernetes sites; on local and Slurm sites without a container runtime the "
        "command runs on the host and the job's events say so)"))
    env: dict[str, str] = Field(default_factory=dict, max_length=128)
    workdir: str | None = Field(default=None, pattern=RELATIVE_PATH_PATTERN,
                                description="relative to the tenant's own working directory on the site")
    checkpoint_dir: str | None = Field(default=None, pattern=RELATIVE_PATH_PATTERN,
                                       description="relative; given to the job as ZHISUAN_CHECKPOINT_DIR")
    max_restarts: int | None = Field(default=None, ge=0, le=100, description=(
        "restarts after faults (default: the platform's policy, 5, when checkpoint_dir is set; 0 otherwise)"))
    hang_timeout_s: int | None = Field(default=None, ge=10, le=MAX_RUN_S, description=(
        "no progress line in ZHISUAN_PROGRESS_FILE for this long → the job is hung: stopped and restarted"))
    workers: int = Field(default=1, ge=1, le=256, description="nodes of a gang: all start together or none")
    devices_per_worker: int = Field(default=0, ge=0, le=16)
    milli_per_device: int = Field(default=1000, ge=1, le=1000,
                                  description="share of each device; below 1000 only with one device")
    models: list[str] | None = Field(default=None, min_length=1, max_length=16,
                                     description="accelerator models allowed (catalog names); default any")
    min_device_memory_gib: float = Field(default=0, ge=0, le=4096)
    min_device_tflops: float = Field(default=0, ge=0, le=100_000)
    cpu_cores: float = Field(default=1.0, gt=0, le=1024, description="per worker")
    memory_gib: float = Field(default=1.0, gt=0, le=65536, description="per worker")
    max_run_seconds: int = Field(default=3600, ge=1, le=MAX_RUN_S, description="the engine stops it after this")
    priority_class: str = Field(default="elastic", pattern=r"^(reserved|elastic|spot)$", description=(
        "reserved: only inside the tenant's guaranteed quota, never preempted; elastic: may borrow idle "
        "capacity (then preemptible); spot: anything idle, preempted first"))
    priority: int = Field(default=0, ge=-1000, le=1000, description="order among the tenant's own jobs")
    sites: list[str] | None = Field(default=None, min_length=1, max_length=32)
    regions: list[str] | None = Field(default=None, min_length=1, max_length=32)
    tenant: str | None = Field(default=None, max_length=64, description="operators: submit for this tenant")

    @field_validator("command")
    @classmethod
    def command_items(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and any(len(arg) > 4096 for arg in value):
            raise ValueError("each argument is at most 4096 characters")
        return value

    @field_validator("workdir", "checkpoint_dir")
    @classmethod
    def stays_inside(cls, value: str | None) -> str | None:
        if value is not None and ".." in value.split("/"):
            raise ValueError("must stay inside the tenant's directory: no '..' parts")
        return value

    @field_validator("script")
    @classmethod
    def script_size(cls, value: str | None) -> str | None:
        if value is not None and len(value.encode()) > MAX_SCRIPT_BYTES:
            raise ValueError(f"the script is at most {MAX_SCRIPT_BYTES // 1024} KiB")
        return value

    @field_validator("env")
    @classmethod
    def env_names(cls, value: dict[str, str]) -> dict[str, str]:
        total = 0
        for name, item in value.items():
            if not re.match(ENV_NAME_PATTERN, name):
                raise ValueError(f"'{name[:64]}' is not a variable name (letters, digits, _; not first a digit)")
            if name in RESERVED_ENV or name.startswith(RESERVED_ENV_PREFIXES):
                raise ValueError(f"{name} is set by the platform for every worker")
            total += len(name.encode()) + len(item.encode()) + 2
        if total > MAX_ENV_BYTES:
            raise ValueError(f"the environment is {total} bytes; at most {MAX_ENV_BYTES} bytes")
        return value

    @model_validator(mode="after")
    def one_program(self) -> JobSubmit:
        if (self.command is None) == (self.script is None):
            raise ValueError("give exactly one of `command` or `script`")
        if self.devices_per_worker > 1 and self.milli_per_device < 1000:
            raise ValueError("a share of a device (milli_per_device < 1000) is only possible with one device")
        return self


class JobEventOut(BaseModel):
    at: datetime
    attempt: int
    state: str
    reason: str


class WorkerOut(BaseModel):
    rank: int
    node: str | None = Field(description="site/node (hidden from tenants: only the site is shown)")
    site: str
    device_indices: list[int]
    milli_per_device: int
    state: str | None = None
    exit_code: int | None = None


class JobOut(BaseModel):
    id: int
    name: str
    tenant: str
    state: str
    reason: str
    priority_class: str
    priority: int
    workers: int
    devices_per_worker: int
    milli_per_device: int
    models: list[str] | None
    cpu_cores: float
    memory_gib: float
    max_run_seconds: int
    command: list[str]
    script: str | None
    image: str | None
    workdir: str | None
    checkpoint_dir: str | None
    max_restarts: int | None = None
    hang_timeout_s: int | None = None
    restarts: int = 0
    progress: dict[str, float | int | None] | None = Field(default=None, description="the newest progress line")
    progress_at: datetime | None = None
    env: dict[str, str]
    sites: list[str] | None
    regions: list[str] | None
    site: str | None
    model: str | None
    attempt: int
    preemptions: int
    within_guarantee: bool
    borrowing: bool
    exit_code: int | None
    platform_fault: bool
    submitted_at: datetime
    admitted_at: datetime | None
    started_at: datetime | None
    ended_at: datetime | None
    placement: list[WorkerOut]


class LogOut(BaseModel):
    job_id: int
    rank: int
    stream: str
    offset: int
    next_offset: int
    data: str
    complete: bool = Field(description="the worker has ended and every byte up to next_offset was returned")


class QueueRow(BaseModel):
    tenant: str
    state: str
    priority_class: str
    reason: str
    jobs: int


class QueueOut(BaseModel):
    """The operator's queue view: pending work by tenant and reason, borrowing and preemptions."""

    pending: list[QueueRow]
    running: list[QueueRow]
    borrowed_devices: float = Field(description="devices held now by jobs running on borrowed capacity")
    preemptions_total: int
    guarantees: dict[str, dict[str, float]] = Field(description="tenant → model → guaranteed devices")
    in_use: dict[str, dict[str, float]] = Field(description="tenant → model → devices held by running jobs")


class SiteEngineConfig(Strict):
    """How the control plane reaches a site's engine (operators)."""

    slurm_conf: str | None = Field(default=None, max_length=1000, description="path of the site's slurm.conf")
    partition: str | None = Field(default=None, max_length=64)
    log_dir: str | None = Field(default=None, max_length=1000, description="shared directory for job output")
    api_url: str | None = Field(default=None, max_length=1000, description="Kubernetes API server URL")
    token_file: str | None = Field(default=None, max_length=1000, description="file holding a bearer token")
