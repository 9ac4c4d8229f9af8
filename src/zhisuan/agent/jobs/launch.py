"""What the agent is asked to run (``WorkerLaunch``) and what it reports back (``WorkerStatus``).

Validation here is pure: names, sizes and the lexical shape of the working directory. Whether the
directory resolves inside the tenant's own (symlinks) is checked by ``tenancy`` on the real file system.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import PurePosixPath

WORKER_STATES = ("running", "succeeded", "failed", "cancelled", "lost")
ENDED_WORKER_STATES = frozenset({"succeeded", "failed", "cancelled", "lost"})

KEY_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
TENANT_PATTERN = re.compile(r"[a-z0-9-]{1,63}")
ENV_NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,255}")

# Linux refuses a single argv/env string over 128 KiB (MAX_ARG_STRLEN) and the whole exec over ARG_MAX;
# these bounds stay well inside both so a launch that validates also execs.
MAX_ENV_BYTES = 64 * 1024
MAX_ENV_VARS = 1024
MAX_COMMAND_BYTES = 64 * 1024
MAX_SCRIPT_BYTES = 100 * 1024
MAX_RUN_S = 366 * 24 * 3600

# The agent's own variables never reach a job; the caller may set only these job-facing ZHISUAN_* ones
# (``drivers.base.rendezvous_env``).
JOB_FACING_ZHISUAN_VARS = frozenset({"ZHISUAN_JOB_ID", "ZHISUAN_JOB_ATTEMPT", "ZHISUAN_CHECKPOINT_DIR",
                                     "ZHISUAN_PROGRESS_FILE"})


@dataclass(frozen=True)
class WorkerLaunch:
    """One worker (rank) of a job on this machine. ``key`` (``zs-<job>-<attempt>-r<rank>``) is unique
    per worker and is the idempotency key of ``WorkerRunner.ensure``. ``script`` (when set) is run with
    ``/bin/sh`` instead of ``command``. ``env`` is complete as built by the caller (job env, rendezvous
    variables, the vendor's visible-devices variable); the runner adds only HOME, PATH, USER defaults."""

    key: str
    tenant: str
    command: tuple[str, ...]
    script: str | None
    env: Mapping[str, str]
    workdir: str | None
    cpu_milli: int
    memory_mib: int
    max_run_s: int


@dataclass(frozen=True)
class WorkerStatus:
    """``pid`` is the worker's process-group leader (the wrapper that records the exit status)."""

    key: str
    state: str
    exit_code: int | None
    pid: int | None
    started_at: datetime | None
    ended_at: datetime | None
    reason: str
    notes: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.state not in WORKER_STATES:
            raise ValueError(f"unknown worker state {self.state!r}")

    @property
    def ended(self) -> bool:
        return self.state in ENDED_WORKER_STATES


def validate_launch(launch: WorkerLaunch) -> None:
    """Raise ``ValueError`` naming the first bad field; accept everything the runner can run safely."""
    if not isinstance(launch.key, str) or not KEY_PATTERN.fullmatch(launch.key):
        raise ValueError(f"key: must match {KEY_PATTERN.pattern}, got {launch.key!r}")
    if not isinstance(launch.tenant, str) or not TENANT_PATTERN.fullmatch(launch.tenant):
        raise ValueError(f"tenant: must match {TENANT_PATTERN.pattern}, got {launch.tenant!r}")
    _validate_program(launch)
    _validate_env(launch.env)
    validate_workdir_shape(launch.workdir)
    for name, value, low, high in (
        ("cpu_milli", launch.cpu_milli, 1, 1024 * 1000),
        ("memory_mib", launch.memory_mib, 1, 64 * 1024 * 1024),
        ("max_run_s", launch.max_run_s, 1, MAX_RUN_S),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"{name}: must be an integer in [{low}, {high}], got {value!r}")


def _validate_program(launch: WorkerLaunch) -> None:
    if launch.script is not None:
        if not isinstance(launch.script, str) or "\0" in launch.script or not launch.script.strip():
            raise ValueError("script: must be non-empty text without NUL")
        if len(launch.script.encode()) > MAX_SCRIPT_BYTES:
            raise ValueError(f"script: larger than {MAX_SCRIPT_BYTES} bytes")
        return
    if not isinstance(launch.command, tuple) or not launch.command or not launch.command[0]:
        raise ValueError("command: must be a non-empty tuple of strings when there is no script")
    if any(not isinstance(arg, str) or "\0" in arg for arg in launch.command):
        raise ValueError("command: every argument must be a string without NUL")
    if sum(len(arg.encode()) + 1 for arg in launch.command) > MAX_COMMAND_BYTES:
        raise ValueError(f"command: larger than {MAX_COMMAND_BYTES} bytes")


def _validate_env(env: Mapping[str, str]) -> None:
    if len(env) > MAX_ENV_VARS:
        raise ValueError(f"env: more than {MAX_ENV_VARS} variables")
    total = 0
    for name, value in env.items():
        if not isinstance(name, str) or not ENV_NAME_PATTERN.fullmatch(name):
            raise ValueError(f"env: bad variable name {name!r}")
        if name.startswith("ZHISUAN_") and name not in JOB_FACING_ZHISUAN_VARS:
            raise ValueError(f"env: {name} is the agent's own variable and never reaches a job")
        if not isinstance(value, str) or "\0" in value:
            raise ValueError(f"env: value of {name} must be a string without NUL")
        total += len(name.encode()) + len(value.encode()) + 2
    if total > MAX_ENV_BYTES:
        raise ValueError(f"env: larger than {MAX_ENV_BYTES} bytes")


def validate_workdir_shape(workdir: str | None) -> None:
    """Relative, no ``..``, no NUL: the lexical half of "stays inside the tenant's directory"."""
    if workdir is None:
        return
    if not isinstance(workdir, str) or "\0" in workdir or len(workdir) > 4096:
        raise ValueError("workdir: must be a relative path without NUL")
    path = PurePosixPath(workdir)
    if path.is_absolute():
        raise ValueError(f"workdir: must be relative to the tenant's directory, got absolute {workdir!r}")
    if ".." in path.parts:
        raise ValueError(f"workdir: must not contain '..' (escapes the tenant's directory): {workdir!r}")
