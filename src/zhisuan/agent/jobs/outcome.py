"""How a worker ended, decided from its records alone (pure: no I/O, no clock).

Inputs: the wrapper's exit record (``exit.json``, absent while running or when the wrapper was
killed before writing), whether a stop was requested and when, and whether the wrapper process is
still alive. Precedence, first match wins:

1. alive and no exit record                        → ``running``
2. stop requested before the command ended          → ``cancelled``
3. time limit hit                                   → ``failed``, "killed: time limit N s"
4. the command could not be started (exec error)    → ``failed``, the error, exit 127/126
5. exit code 0                                      → ``succeeded``
6. killed by a signal                               → ``failed``, "killed by signal N (SIGxxx)", exit 128+N
7. other exit code                                  → ``failed``, "exit code N"
8. gone without an exit record                      → ``lost`` (the wrapper itself was killed)
"""

from __future__ import annotations

import signal
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from zhisuan.agent.jobs.launch import WorkerStatus
from zhisuan.drivers.base import EngineJobState


@dataclass(frozen=True)
class Outcome:
    state: str
    exit_code: int | None
    reason: str


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def decide_outcome(
    exit_record: Mapping[str, Any] | None,
    *,
    alive: bool,
    cancel_requested_at: float | None,
    max_run_s: int,
    started: bool = True,
) -> Outcome:
    if exit_record is None and alive:
        return Outcome("running", None, "running")
    exit_code = exit_record.get("exit_code") if exit_record else None
    ended_at = exit_record.get("ended_at") if exit_record else None
    if cancel_requested_at is not None and (ended_at is None or ended_at >= cancel_requested_at):
        return Outcome("cancelled", exit_code, "cancelled")
    if exit_record is None:
        if not started:
            return Outcome("lost", None, "the agent stopped while starting the worker")
        return Outcome("lost", None, "the worker's process is gone without an exit status")
    if exit_record.get("timed_out"):
        return Outcome("failed", exit_code, f"killed: time limit {max_run_s} s")
    if exit_record.get("error"):
        return Outcome("failed", exit_code, f"{exit_record['error']} (exit code {exit_code})")
    if exit_code == 0:
        return Outcome("succeeded", 0, "exit code 0")
    number = exit_record.get("signal")
    if number:
        return Outcome("failed", exit_code, f"killed by signal {number} ({_signal_name(int(number))})")
    return Outcome("failed", exit_code, f"exit code {exit_code}")


def engine_state(status: WorkerStatus) -> EngineJobState:
    """One worker's status in the Driver's terms. ``lost`` is the platform's fault (the agent or the
    machine lost the process), so it is not billed; every other end — exit codes, a missing command
    (127), the time limit, a stop — follows from what the tenant ran or asked."""
    return EngineJobState(
        state=status.state, reason=status.reason, exit_code=status.exit_code, started_at=status.started_at,
        ended_at=status.ended_at, platform_fault=status.state == "lost", notes=status.notes,
    )
