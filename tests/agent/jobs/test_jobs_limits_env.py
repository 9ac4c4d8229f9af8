"""Limits applied to real workers (rlimits here; cgroup files on a fake cgroupfs) and the environment
a worker sees: minimal, the caller's variables and visible devices, nothing of the agent's own."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from tests.agent.jobs.conftest import launch, script, wait_ended

from zhisuan.agent.jobs import WorkerRunner
from zhisuan.agent.jobs.limits import cgroup_v2_usable, cpu_max, memory_max
from zhisuan.drivers.base import LaunchSpec, WorkerAssignment, rendezvous_env, visible_devices

CGROUP = Path("/sys/fs/cgroup")


def limit_line(limits: str, name: str) -> list[str]:
    line = next(line for line in limits.splitlines() if line.startswith(name))
    return re.split(r"\s{2,}", line.strip())


@pytest.mark.skipif(cgroup_v2_usable(CGROUP), reason="this host limits by cgroup v2, not rlimits")
def test_without_cgroup_v2_memory_is_an_address_space_rlimit(runner: WorkerRunner) -> None:
    status = runner.ensure(launch("zs-40-1-r0", "cat", "/proc/self/limits", memory_mib=300))
    assert any("RLIMIT_AS 300 MiB" in note and "CPU not limited" in note for note in status.notes)
    wait_ended(runner, "zs-40-1-r0")
    fields = limit_line(runner.read_log("zs-40-1-r0", "stdout", 0)[0], "Max address space")
    assert fields[1:3] == [str(300 * 2**20)] * 2


@pytest.mark.skipif(cgroup_v2_usable(CGROUP), reason="this host limits by cgroup v2, not rlimits")
def test_the_memory_rlimit_is_enforced(runner: WorkerRunner) -> None:
    allocate = "import sys; b = bytearray(int(sys.argv[1]) * 2**20); print('allocated')"
    for key, mib, state in (("zs-41-1-r0", 400, "failed"), ("zs-41-1-r1", 50, "succeeded")):
        runner.ensure(launch(key, "/usr/bin/python3", "-c", allocate, str(mib), memory_mib=300))
        assert wait_ended(runner, key).state == state
    assert "MemoryError" in runner.read_log("zs-41-1-r0", "stderr", 0)[0]


def fake_cgroup_v2(root: Path) -> Path:
    """A FAKE cgroup v2 mount (plain files in a directory): this host has no writable cgroup v2 with
    the cpu and memory controllers, so only the runner's side of the protocol can be checked here."""
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (root / "cgroup.subtree_control").write_text("")
    return root


def test_with_cgroup_v2_a_cgroup_per_worker_gets_cpu_and_memory_max(jobs_root: Path) -> None:
    cgroups = fake_cgroup_v2(jobs_root.parent / "fake-cgroupfs")
    (cgroups / "zhisuan").mkdir()  # a real mount would make the parent's control files itself
    (cgroups / "zhisuan" / "cgroup.subtree_control").write_text("")
    runner = WorkerRunner(jobs_root, cgroup_root=cgroups)
    status = runner.ensure(script("zs-42-1-r0", "echo $$; cat /proc/self/limits", cpu_milli=1500, memory_mib=300))
    assert status.notes[1] == f"cgroup v2 {cgroups}/zhisuan/zs-42-1-r0: cpu.max 150000 100000, memory.max 300 MiB"
    wait_ended(runner, "zs-42-1-r0")
    worker = cgroups / "zhisuan" / "zs-42-1-r0"
    assert (worker / "cpu.max").read_text() == "150000 100000"
    assert (worker / "memory.max").read_text() == str(300 * 2**20)
    output = runner.read_log("zs-42-1-r0", "stdout", 0)[0]
    assert (worker / "cgroup.procs").read_text() == output.split()[0]  # the worker itself joined
    assert limit_line(output, "Max address space")[1] == "unlimited"  # no rlimit when the cgroup limits
    assert (cgroups / "cgroup.subtree_control").read_text() == "+cpu +memory"


@pytest.mark.parametrize(("milli", "expected"), [(1000, "100000 100000"), (250, "25000 100000"),
                                                 (8000, "800000 100000"), (1, "1000 100000")])
def test_cpu_max(milli: int, expected: str) -> None:
    assert cpu_max(milli) == expected


def test_memory_max() -> None:
    assert memory_max(1) == "1048576"


def test_env_is_minimal_and_carries_rendezvous_and_visible_devices(runner: WorkerRunner,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZHISUAN_AGENT_TOKEN", "agent-secret")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "agent-cloud-secret")
    worker = WorkerAssignment(rank=1, node="n2", device_indices=(2, 3), visible_devices_env="ASCEND_RT_VISIBLE_DEVICES")
    spec = LaunchSpec(key="zs-43-1", job_id=43, attempt=1, tenant="acme", command=("env",),
                      workers=(WorkerAssignment(rank=0, node="n1"), worker), max_run_s=60)
    env = {"JOB_VAR": "x y", **rendezvous_env(spec, worker, "n1"), **visible_devices(worker)}
    runner.ensure(launch("zs-43-1-r1", "env", env=env))
    wait_ended(runner, "zs-43-1-r1")
    seen = dict(line.split("=", 1) for line in runner.read_log("zs-43-1-r1", "stdout", 0)[0].splitlines())
    user = "zs-acme" if os.geteuid() == 0 else seen["USER"]
    assert seen == {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": str(runner.root / "tenants" / "acme"), "USER": user, "LOGNAME": user, "LANG": "C.UTF-8",
        "JOB_VAR": "x y", "MASTER_ADDR": "n1", "MASTER_PORT": "29500", "WORLD_SIZE": "2", "RANK": "1",
        "NODE_RANK": "1", "ZHISUAN_JOB_ID": "43", "ZHISUAN_JOB_ATTEMPT": "1", "ASCEND_RT_VISIBLE_DEVICES": "2,3",
        # The progress file is in the tenant's own directory: the worker (as the tenant) may write it.
        "ZHISUAN_PROGRESS_FILE": str(runner.root / "tenants" / "acme" / ".progress-zs-43-1-r1.jsonl"),
    }


def test_the_agents_token_is_refused_in_a_launch(runner: WorkerRunner) -> None:
    with pytest.raises(ValueError, match="^env: ZHISUAN_AGENT_TOKEN"):
        runner.ensure(launch("zs-44-1-r0", "env", env={"ZHISUAN_AGENT_TOKEN": "t"}))
