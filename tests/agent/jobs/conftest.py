"""Fixtures for the job runner's tests: a runner root tenant users can traverse, launches, waiting.

pytest's own tmp_path sits below a 0700 directory that tenant users cannot enter, so roots live in
their own ``/tmp/zs-jobs-*`` (0711). Every worker a test started is stopped and forgotten afterwards.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from zhisuan.agent.jobs import WorkerLaunch, WorkerRunner, WorkerStatus

IS_ROOT = os.geteuid() == 0
HANG_GUARD_S = 30.0  # a worker that should end in well under a second; only a broken runner waits this long


def launch(key: str, *command: str, **overrides: Any) -> WorkerLaunch:
    fields: dict[str, Any] = {
        "key": key, "tenant": "acme", "command": tuple(command), "script": None, "env": {},
        "workdir": None, "cpu_milli": 1000, "memory_mib": 512, "max_run_s": 60,
    }
    fields.update(overrides)
    return WorkerLaunch(**fields)


def script(key: str, text: str, **overrides: Any) -> WorkerLaunch:
    return launch(key, script=text, **overrides)


def wait_ended(runner: WorkerRunner, key: str) -> WorkerStatus:
    deadline = time.monotonic() + HANG_GUARD_S
    while True:
        status = runner.status(key)
        if status.ended:
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"worker {key} still {status.state} after {HANG_GUARD_S} s")
        time.sleep(0.02)


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + HANG_GUARD_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.02)


@pytest.fixture
def jobs_root() -> Iterator[Path]:
    parent = Path(tempfile.mkdtemp(prefix="zs-jobs-", dir="/tmp"))
    os.chmod(parent, 0o711)
    root = parent / "jobs"
    yield root
    if (root / "state").exists():
        cleaner = WorkerRunner(root, run_as_tenant_users=False)
        for status in cleaner.statuses():
            cleaner.stop(status.key, grace_s=0.5)
    shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture
def runner(jobs_root: Path) -> WorkerRunner:
    return WorkerRunner(jobs_root, kill_grace_s=0.5)
