"""A new runner on the same root adopts workers another runner (now gone) started: running ones keep
running and are never started twice; ones that ended while no runner existed report their real end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.agent.jobs.conftest import launch, wait_ended, wait_for

from zhisuan.agent.jobs import WorkerRunner
from zhisuan.agent.jobs.records import process_start_ticks

START_IN_ANOTHER_AGENT = """
import sys
from pathlib import Path
from zhisuan.agent.jobs import WorkerLaunch, WorkerRunner
runner = WorkerRunner(Path(sys.argv[1]))
status = runner.ensure(WorkerLaunch(key=sys.argv[2], tenant="acme", command=("sh", "-c", sys.argv[3]), script=None,
                                    env={}, workdir=None, cpu_milli=500, memory_mib=256,
                                    max_run_s=int(sys.argv[4])))
print(status.pid)
"""


def start_in_a_short_lived_agent(root: Path, key: str, shell: str, max_run_s: int = 60) -> int:
    """Another process plays the agent: it starts the worker and exits, leaving no runner alive."""
    done = subprocess.run([sys.executable, "-c", START_IN_ANOTHER_AGENT, str(root), key, shell, str(max_run_s)],
                          capture_output=True, text=True, check=True, timeout=60)
    return int(done.stdout.strip())


def test_running_worker_outlives_its_agent_and_is_adopted_not_restarted(jobs_root: Path) -> None:
    pid = start_in_a_short_lived_agent(jobs_root, "zs-20-1-r0", "echo ran; sleep 30")
    assert process_start_ticks(pid) is not None  # the agent is gone; the worker is not
    adopter = WorkerRunner(jobs_root)
    status = adopter.status("zs-20-1-r0")
    assert (status.state, status.pid) == ("running", pid)
    again = adopter.ensure(launch("zs-20-1-r0", "sh", "-c", "echo ran; sleep 30"))
    assert (again.state, again.pid) == ("running", pid)
    wait_for(lambda: adopter.read_log("zs-20-1-r0", "stdout", 0)[0] != "", "output")
    assert adopter.read_log("zs-20-1-r0", "stdout", 0)[0] == "ran\n"
    assert [s.key for s in adopter.statuses()] == ["zs-20-1-r0"]
    adopter.stop("zs-20-1-r0", grace_s=2)
    assert adopter.status("zs-20-1-r0").state == "cancelled"
    assert process_start_ticks(pid) is None


def test_worker_that_ended_while_no_runner_existed_reports_its_exit_code(jobs_root: Path) -> None:
    pid = start_in_a_short_lived_agent(jobs_root, "zs-21-1-r0", "echo ran; exit 5")
    wait_for(lambda: process_start_ticks(pid) is None, "worker ended")
    adopter = WorkerRunner(jobs_root)
    status = adopter.status("zs-21-1-r0")
    assert (status.state, status.exit_code, status.reason) == ("failed", 5, "exit code 5")
    assert adopter.ensure(launch("zs-21-1-r0", "sh", "-c", "echo ran; exit 5")) == status
    assert adopter.read_log("zs-21-1-r0", "stdout", 0) == ("ran\n", 4, True)


def test_the_time_limit_holds_while_no_runner_exists(jobs_root: Path) -> None:
    pid = start_in_a_short_lived_agent(jobs_root, "zs-25-1-r0", "sleep 30", max_run_s=1)
    wait_for(lambda: process_start_ticks(pid) is None, "worker ended")
    status = WorkerRunner(jobs_root).status("zs-25-1-r0")
    assert (status.state, status.reason) == ("failed", "killed: time limit 1 s")


def test_a_wrapper_killed_from_outside_is_lost(runner: WorkerRunner) -> None:
    """Fault injection: SIGKILL to the whole group, so nobody records an exit status."""
    status = runner.ensure(launch("zs-22-1-r0", "sleep", "30"))
    assert status.pid is not None
    wait_for(lambda: process_start_ticks(status.pid) is not None, "started")  # type: ignore[arg-type]
    os.killpg(status.pid, signal.SIGKILL)
    ended = wait_ended(runner, "zs-22-1-r0")
    assert (ended.state, ended.reason) == ("lost", "the worker's process is gone without an exit status")
    assert WorkerRunner(runner.root).status("zs-22-1-r0") == ended  # fixed once observed


def test_a_reused_pid_is_not_mistaken_for_the_worker(runner: WorkerRunner) -> None:
    """Fault injection: the launch record claims a live process (this test's) with another start time."""
    import json

    runner.ensure(launch("zs-23-1-r0", "true"))
    wait_ended(runner, "zs-23-1-r0")
    state = runner.root / "state" / "zs-23-1-r0"
    for name in ("final.json", "exit.json"):
        (state / name).unlink()
    record = json.loads((state / "launch.json").read_text())
    record.update(pid=os.getpid(), pid_start=(process_start_ticks(os.getpid()) or 0) + 1)
    (state / "launch.json").write_text(json.dumps(record))
    assert runner.status("zs-23-1-r0").state == "lost"


def test_a_start_cut_short_by_a_crash_is_lost_and_not_repeated(runner: WorkerRunner) -> None:
    """Fault injection: the records a runner leaves when it dies between its launch record and the start."""
    import json

    runner.ensure(launch("zs-24-1-r0", "sh", "-c", "echo ran"))
    wait_ended(runner, "zs-24-1-r0")
    state = runner.root / "state" / "zs-24-1-r0"
    for name in ("final.json", "exit.json"):
        (state / name).unlink()
    (runner.root / "logs" / "zs-24-1-r0.out").unlink()
    record = json.loads((state / "launch.json").read_text())
    (state / "launch.json").write_text(json.dumps({**record, "pid": None, "pid_start": None}))
    adopter = WorkerRunner(runner.root)
    status = adopter.ensure(launch("zs-24-1-r0", "sh", "-c", "echo ran"))
    assert (status.state, status.reason) == ("lost", "the agent stopped while starting the worker")
    assert adopter.read_log("zs-24-1-r0", "stdout", 0) == ("", 0, True)  # nothing ran a second time
