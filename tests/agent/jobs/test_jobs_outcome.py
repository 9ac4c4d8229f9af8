"""decide_outcome: the worker's state from its records, one row per rule of the precedence."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from zhisuan.agent.jobs import WorkerStatus
from zhisuan.agent.jobs.outcome import Outcome, decide_outcome, engine_state
from zhisuan.drivers.base import EngineJobState

ENDED = 1000.0
ROWS: list[tuple[str, dict[str, Any] | None, bool, float | None, bool, Outcome]] = [
    ("running", None, True, None, True, Outcome("running", None, "running")),
    ("exit 0", {"exit_code": 0, "ended_at": ENDED}, False, None, True, Outcome("succeeded", 0, "exit code 0")),
    ("exit 3", {"exit_code": 3, "ended_at": ENDED}, False, None, True, Outcome("failed", 3, "exit code 3")),
    ("record written, wrapper not yet gone", {"exit_code": 0, "ended_at": ENDED}, True, None, True,
     Outcome("succeeded", 0, "exit code 0")),
    ("signal", {"exit_code": 137, "signal": 9, "ended_at": ENDED}, False, None, True,
     Outcome("failed", 137, "killed by signal 9 (SIGKILL)")),
    ("time limit", {"exit_code": 143, "signal": 15, "timed_out": True, "ended_at": ENDED}, False, None, True,
     Outcome("failed", 143, "killed: time limit 60 s")),
    ("time limit, killed hard", {"exit_code": None, "signal": 9, "timed_out": True, "ended_at": ENDED}, False, None,
     True, Outcome("failed", None, "killed: time limit 60 s")),
    ("not found", {"exit_code": 127, "error": "command not found: nope", "ended_at": ENDED}, False, None, True,
     Outcome("failed", 127, "command not found: nope (exit code 127)")),
    ("stopped, exit record", {"exit_code": 143, "signal": 15, "ended_at": ENDED}, False, ENDED - 1, True,
     Outcome("cancelled", 143, "cancelled")),
    ("stopped, killed hard", None, False, ENDED, True, Outcome("cancelled", None, "cancelled")),
    ("stop came after it ended", {"exit_code": 0, "ended_at": ENDED}, False, ENDED + 1, True,
     Outcome("succeeded", 0, "exit code 0")),
    ("gone without record", None, False, None, True,
     Outcome("lost", None, "the worker's process is gone without an exit status")),
    ("never started", None, False, None, False, Outcome("lost", None, "the agent stopped while starting the worker")),
]


@pytest.mark.parametrize(("record", "alive", "cancel_at", "started", "expected"),
                         [row[1:] for row in ROWS], ids=[row[0] for row in ROWS])
def test_outcome(record: dict[str, Any] | None, alive: bool, cancel_at: float | None, started: bool,
                 expected: Outcome) -> None:
    assert decide_outcome(record, alive=alive, cancel_requested_at=cancel_at, max_run_s=60, started=started) == expected


@pytest.mark.parametrize(("state", "fault"), [("running", False), ("succeeded", False), ("failed", False),
                                              ("cancelled", False), ("lost", True)])
def test_engine_state_blames_the_platform_only_for_lost_workers(state: str, fault: bool) -> None:
    started = datetime(2026, 1, 1, tzinfo=UTC)
    status = WorkerStatus("zs-1-1-r0", state, 3, 42, started, None, "why", ("note",))
    assert engine_state(status) == EngineJobState(state, "why", 3, started, None, fault, ("note",))
