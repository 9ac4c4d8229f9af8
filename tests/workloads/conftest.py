"""A local site with one 8-H100 node run by a real agent job runner (processes on this machine).

The devices are declared (there are no GPUs here): the processes really run, see the
``CUDA_VISIBLE_DEVICES`` the placement chose, write logs, exit; the scheduler really admits, holds
the ledger, launches, follows and releases.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.api import conftest as api_fixtures
from tests.api.conftest import Api, h100_node
from zhisuan.agent.job_sync import JobSync
from zhisuan.agent.jobs import WorkerRunner
from zhisuan.workloads.scheduler import JobScheduler

# The API tests' fixtures (a world of tenants, providers and sites over each database), shared here.
clock, world, world_templates = api_fixtures.clock, api_fixtures.world, api_fixtures.world_templates


@dataclass
class LocalSite:
    world: Api
    scheduler: JobScheduler
    agents: dict[str, JobSync]

    def job(self, job_id: int, who: str = "operator") -> dict[str, Any]:
        return self.world.ok("GET", f"/jobs/{job_id}", who)  # type: ignore[no-any-return]

    def step(self) -> None:
        self.scheduler.run_pass()
        for agent in self.agents.values():
            agent.step()
        self.world.client.app.state.ctx.clock.advance(seconds=1)  # type: ignore[attr-defined]

    def until(self, check: Callable[[], bool], timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while not check():
            assert time.monotonic() < deadline, "condition not reached"
            self.step()
            time.sleep(0.05)

    def until_state(self, job_id: int, *states: str, timeout_s: float = 60) -> dict[str, Any]:
        self.until(lambda: self.job(job_id)["state"] in states, timeout_s)
        return self.job(job_id)

    def submit(self, who: str, **body: Any) -> dict[str, Any]:
        return self.world.ok("POST", "/jobs", who, {"devices_per_worker": 1, "max_run_seconds": 120,
                                                     **body})  # type: ignore[no-any-return]


def add_local_node(world: Api, name: str, root: Path, address: str = "127.0.0.1") -> JobSync:
    key = world.ok("POST", "/sites/loc/agent-keys", "operator", {})["key"]
    world.keys[f"agent-{name}"] = key
    body = h100_node(name)
    body["labels"] = {**body["labels"], "zhisuan.io/address": address, "zhisuan.io/ib-domain": "ib1"}
    world.ok("POST", "/agent/register", f"agent-{name}", body)

    def exchange(report: dict[str, Any]) -> list[dict[str, Any]]:
        return world.ok("POST", "/agent/workers", f"agent-{name}", report)  # type: ignore[no-any-return]

    return JobSync(WorkerRunner(root / name), name, exchange, stop_grace_s=1)


@pytest.fixture
def jobs_root() -> Iterator[Path]:
    """A root tenant users can enter (pytest's own temporary directories are 0700)."""
    root = Path(tempfile.mkdtemp(prefix="zhisuan-jobs-test-"))
    os.chmod(root, 0o711)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def local_site(world: Api, jobs_root: Path) -> Iterator[LocalSite]:
    world.ok("POST", "/sites", "operator", {"name": "loc", "engine": "local", "region": "cn-east-1",
                                             "provider": "p1"})
    agents = {"n1": add_local_node(world, "n1", jobs_root)}
    site = LocalSite(world, world.client.app.state.job_scheduler, agents)  # type: ignore[attr-defined]
    yield site
    for agent in agents.values():  # stop whatever still runs
        for status in agent.runner.statuses():
            if status.state == "running":
                agent.runner.stop(status.key, 0.5)
