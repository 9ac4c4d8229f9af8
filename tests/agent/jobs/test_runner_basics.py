"""A runner whose root's parents do not exist yet creates them passable for tenant users, whatever the umask."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from pathlib import Path

import pytest
from tests.agent.jobs.conftest import IS_ROOT, launch, wait_ended

from zhisuan.agent.jobs import WorkerRunner


@pytest.mark.skipif(not IS_ROOT, reason="tenant users exist only when the agent runs as root")
def test_missing_parents_are_created_passable_under_a_private_umask() -> None:
    base = Path(tempfile.mkdtemp(prefix="zs-jobs-parents-"))
    os.chmod(base, 0o711)
    old = os.umask(0o077)
    try:
        runner = WorkerRunner(base / "var" / "lib" / "jobs-x")
    finally:
        os.umask(old)
    try:
        for directory in (base / "var", base / "var" / "lib"):
            assert stat.S_IMODE(directory.stat().st_mode) == 0o711, directory
        runner.ensure(launch("parents-1", "sh", "-c", "echo ok"))
        assert wait_ended(runner, "parents-1").state == "succeeded"
    finally:
        shutil.rmtree(base, ignore_errors=True)
