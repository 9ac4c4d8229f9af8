"""Engine processes must not outlive the control plane that started them.

Two rules, both Linux (``prctl`` and ``/proc``; elsewhere only the pid files help):
- at spawn, each engine asks the kernel for SIGKILL when its parent dies (``PR_SET_PDEATHSIG``) and
  leads its own process group, so the supervisor can signal the engine with every worker it forked;
- each running engine has a pid file (``<replica>.pid``: pid, process group, the kernel's start time
  of the process); at start the runtime kills whatever those files name that is still ours — the
  same pid *and* the same start time, so a pid the kernel has since given to another program is
  left alone — including workers of a dead leader that are still in its group.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """``preexec_fn`` of an engine: SIGKILL when the process that spawned it dies.

    The kernel watches the spawning *thread*: engines must be spawned from a thread that lives as
    long as the control plane (the supervisors spawn from the event loop's thread)."""
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def process_start(pid: int) -> int | None:
    """The kernel's start time of ``pid`` (clock ticks since boot); None if it does not run (no
    such process, or a zombie: dead, waiting for a parent to collect it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 2 (comm) may contain spaces and parentheses: split after its closing parenthesis.
    fields = stat[stat.rindex(")") + 2:].split()
    return None if fields[0] in ("Z", "X") else int(fields[19])


def process_group(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rindex(")") + 2:].split()[2])


@dataclass(frozen=True)
class PidRecord:
    pid: int
    pgid: int
    start: int


def write_pid_file(path: Path, pid: int) -> None:
    start = process_start(pid)
    if start is None:
        return  # already gone
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pid": pid, "pgid": pid, "start": start}))


def read_pid_file(path: Path) -> PidRecord | None:
    try:
        data = json.loads(path.read_text())
        return PidRecord(int(data["pid"]), int(data["pgid"]), int(data["start"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def group_members(record: PidRecord) -> list[int]:
    """Processes still in the recorded group that started no earlier than its leader (so not a
    later group that happens to reuse the number)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        start = process_start(pid)
        if start is not None and start >= record.start and process_group(pid) == record.pgid:
            members.append(pid)
    return members


def reap(path: Path) -> list[int]:
    """Kill what the pid file names that is still ours; remove the file. Returns the pids killed."""
    record = read_pid_file(path)
    killed: list[int] = []
    if record is not None:
        leader_is_ours = process_start(record.pid) == record.start
        members = group_members(record) if leader_is_ours or process_start(record.pid) is None else []
        for pid in members:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
    path.unlink(missing_ok=True)
    return killed


def reap_all(directory: Path) -> list[int]:
    """Every leftover engine of a previous control plane whose pid file is in ``directory``."""
    if not directory.is_dir():
        return []
    return [pid for path in sorted(directory.glob("*.pid")) for pid in reap(path)]
