"""CPU and memory limits of one worker: a cgroup v2 per worker where the machine allows it, rlimits else.

cgroup v2 (``<cgroup root>/zhisuan/<key>``): ``cpu.max = "<quota> <period>"`` with period 100 000 µs and
quota = cpu_milli × period / 1000 (1000 milli-CPU = one core's worth of time per period);
``memory.max = memory_mib × 2^20`` bytes and ``memory.swap.max = 0`` (a limit swap cannot dodge).
Without a writable cgroup v2 that has both the ``cpu`` and ``memory`` controllers (e.g. a hybrid
v1/v2 host, a container), memory is limited by ``RLIMIT_AS`` (the address space, which over-counts
memory mapped but never touched: CUDA runtimes reserve large ranges) and CPU is not limited;
the worker's notes say so.
"""

from __future__ import annotations

import errno
import resource
from dataclasses import dataclass
from pathlib import Path

CPU_PERIOD_US = 100_000
PARENT_CGROUP = "zhisuan"
MIB = 1024 * 1024


@dataclass(frozen=True)
class LimitPlan:
    """What the wrapper applies in the worker before exec: join ``cgroup_dir`` (if any), set ``rlimits``."""

    cgroup_dir: Path | None
    rlimits: tuple[tuple[int, int, int], ...]
    notes: tuple[str, ...]


def cpu_max(cpu_milli: int) -> str:
    """``cpu.max`` content: quota = cpu_milli × 100 000 / 1000 µs per 100 000 µs (at least 1 000 µs)."""
    quota = max(1000, cpu_milli * CPU_PERIOD_US // 1000)
    return f"{quota} {CPU_PERIOD_US}"


def memory_max(memory_mib: int) -> str:
    return str(memory_mib * MIB)


def cgroup_v2_usable(cgroup_root: Path) -> bool:
    """A cgroup v2 hierarchy is mounted at ``cgroup_root`` with cpu and memory controllers available."""
    try:
        controllers = (cgroup_root / "cgroup.controllers").read_text().split()
    except OSError:
        return False
    return {"cpu", "memory"} <= set(controllers)


def _enable_controllers(directory: Path) -> None:
    subtree = directory / "cgroup.subtree_control"
    enabled = set(subtree.read_text().split())
    missing = {"cpu", "memory"} - enabled
    if missing:
        subtree.write_text(" ".join(f"+{name}" for name in sorted(missing)))


def plan_limits(cgroup_root: Path | None, key: str, cpu_milli: int, memory_mib: int) -> LimitPlan:
    """Create and configure the worker's cgroup, or fall back to rlimits (with a note saying why)."""
    if cgroup_root is not None and cgroup_v2_usable(cgroup_root):
        try:
            return _cgroup_plan(cgroup_root, key, cpu_milli, memory_mib)
        except OSError as exc:
            reason = f"cgroup v2 at {cgroup_root} not writable ({exc.strerror or exc})"
    else:
        reason = f"no cgroup v2 with cpu and memory controllers at {cgroup_root}"
    memory = memory_mib * MIB
    return LimitPlan(
        cgroup_dir=None,
        rlimits=((resource.RLIMIT_AS, memory, memory),),
        notes=(f"{reason}: memory limited by prlimit (RLIMIT_AS {memory_mib} MiB), CPU not limited",),
    )


def _cgroup_plan(cgroup_root: Path, key: str, cpu_milli: int, memory_mib: int) -> LimitPlan:
    _enable_controllers(cgroup_root)
    parent = cgroup_root / PARENT_CGROUP
    parent.mkdir(exist_ok=True)
    _enable_controllers(parent)
    directory = parent / key
    directory.mkdir(exist_ok=True)
    (directory / "cpu.max").write_text(cpu_max(cpu_milli))
    (directory / "memory.max").write_text(memory_max(memory_mib))
    swap = directory / "memory.swap.max"
    if swap.exists():
        swap.write_text("0")
    return LimitPlan(
        cgroup_dir=directory,
        rlimits=(),
        notes=(f"cgroup v2 {directory}: cpu.max {cpu_max(cpu_milli)}, memory.max {memory_mib} MiB",),
    )


def remove_cgroup(directory: Path | None) -> bool:
    """Remove an ended worker's cgroup; False while processes are still in it (try again later)."""
    if directory is None:
        return True
    try:
        directory.rmdir()
    except FileNotFoundError:
        return True
    except OSError as exc:
        if exc.errno in (errno.EBUSY, errno.ENOTEMPTY):
            return False
        raise
    return True
