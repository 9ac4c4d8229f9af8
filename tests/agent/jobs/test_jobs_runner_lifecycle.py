"""Real workers through WorkerRunner: exit codes, scripts, missing commands, logs, stop, time limit, forget."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from tests.agent.jobs.conftest import launch, script, wait_ended, wait_for

from zhisuan.agent.jobs import WorkerRunner
from zhisuan.agent.jobs.records import process_start_ticks
from zhisuan.agent.jobs.runner import _group_alive


@pytest.mark.parametrize(("command", "state", "exit_code", "reason"), [
    (("true",), "succeeded", 0, "exit code 0"),
    (("sh", "-c", "exit 3"), "failed", 3, "exit code 3"),
    (("sh", "-c", "kill -KILL $$"), "failed", 137, "killed by signal 9 (SIGKILL)"),
    (("no-such-command-zs",), "failed", 127, "command not found: no-such-command-zs (exit code 127)"),
    (("/nonexistent/bin/tool",), "failed", 127, "command not found: /nonexistent/bin/tool (exit code 127)"),
    (("/etc/hostname",), "failed", 126, None),  # not executable
])
def test_exit_codes(runner: WorkerRunner, command: tuple[str, ...], state: str, exit_code: int,
                    reason: str | None) -> None:
    first = runner.ensure(launch("zs-1-1-r0", *command))
    assert first.state in ("running", state) and first.started_at is not None
    status = wait_ended(runner, "zs-1-1-r0")
    assert (status.state, status.exit_code) == (state, exit_code)
    if reason is not None:
        assert status.reason == reason
    assert status.ended_at is not None and status.started_at is not None and status.ended_at >= status.started_at


def test_missing_command_explains_itself_in_stderr(runner: WorkerRunner) -> None:
    runner.ensure(launch("zs-1-1-r0", "no-such-command-zs"))
    wait_ended(runner, "zs-1-1-r0")
    text, _, complete = runner.read_log("zs-1-1-r0", "stderr", 0)
    assert "command not found: no-such-command-zs" in text and complete


def test_script_runs_with_sh_in_the_workdir(runner: WorkerRunner) -> None:
    runner.ensure(script("zs-2-1-r0", 'echo "in $(pwd)"; echo oops >&2; exit 4', workdir="runs/a"))
    status = wait_ended(runner, "zs-2-1-r0")
    assert (status.state, status.exit_code) == ("failed", 4)
    out, _, _ = runner.read_log("zs-2-1-r0", "stdout", 0)
    assert out == f"in {runner.root / 'tenants' / 'acme' / 'runs' / 'a'}\n"
    assert runner.read_log("zs-2-1-r0", "stderr", 0) == ("oops\n", 5, True)
    tenant_dir = runner.root / "tenants" / "acme"
    # created by the worker itself, as the tenant's user
    assert (tenant_dir / "runs" / "a").stat().st_uid == (tenant_dir / "runs").stat().st_uid == tenant_dir.stat().st_uid


def test_a_workdir_that_is_a_file_is_refused(runner: WorkerRunner) -> None:
    runner.ensure(launch("zs-2-2-r0", "touch", "notes"))
    wait_ended(runner, "zs-2-2-r0")
    with pytest.raises(ValueError, match="^workdir:.*not a directory"):
        runner.ensure(launch("zs-2-2-r1", "true", workdir="notes"))


def test_logs_page_by_byte_offset_while_and_after_running(runner: WorkerRunner) -> None:
    runner.ensure(script("zs-3-1-r0", "printf 'héllo wörld\\n'; sleep 0.3; printf '日本\\n'"))
    wait_for(lambda: runner.read_log("zs-3-1-r0", "stdout", 0)[1] > 0, "first output")
    wait_ended(runner, "zs-3-1-r0")
    text, offset, pages = "", 0, 0
    while True:
        chunk, offset, complete = runner.read_log("zs-3-1-r0", "stdout", offset, limit=2)
        text, pages = text + chunk, pages + 1
        if complete:
            break
    assert text == "héllo wörld\n日本\n"
    assert offset == len(text.encode()) and pages > 5


def test_ensure_is_idempotent_and_never_starts_twice(runner: WorkerRunner, jobs_root: Path) -> None:
    work = launch("zs-4-1-r0", "sh", "-c", "echo started; sleep 30")
    first = runner.ensure(work)
    other = WorkerRunner(jobs_root)
    results = []
    threads = [threading.Thread(target=lambda r=r: results.append(r.ensure(work))) for r in (runner, other) * 3]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {status.pid for status in results} == {first.pid}
    wait_for(lambda: runner.read_log("zs-4-1-r0", "stdout", 0)[0] != "", "output")
    assert runner.read_log("zs-4-1-r0", "stdout", 0)[0] == "started\n"


def test_stop_terminates_the_group_and_cancels(runner: WorkerRunner) -> None:
    runner.ensure(script("zs-5-1-r0", "sleep 30 & echo child $!; wait"))
    wait_for(lambda: "child" in runner.read_log("zs-5-1-r0", "stdout", 0)[0], "child started")
    child = int(runner.read_log("zs-5-1-r0", "stdout", 0)[0].split()[1])
    runner.stop("zs-5-1-r0", grace_s=5)
    status = runner.status("zs-5-1-r0")
    assert (status.state, status.reason) == ("cancelled", "cancelled")
    # the background child got the group's SIGTERM too; on a loaded machine it may take a moment to go
    wait_for(lambda: process_start_ticks(child) is None, "the background child went with the group")


def test_stop_kills_a_worker_that_ignores_sigterm(runner: WorkerRunner) -> None:
    runner.ensure(script("zs-6-1-r0", "trap '' TERM; echo ready; sleep 30"))
    wait_for(lambda: runner.read_log("zs-6-1-r0", "stdout", 0)[0] == "ready\n", "ready")
    pid = runner.status("zs-6-1-r0").pid
    assert pid is not None
    runner.stop("zs-6-1-r0", grace_s=0.2)
    assert runner.status("zs-6-1-r0").state == "cancelled"
    assert process_start_ticks(pid) is None


def test_stop_right_after_ensure_cancels_before_or_while_it_starts(runner: WorkerRunner) -> None:
    for number in range(3):
        key = f"zs-6-2-r{number}"
        status = runner.ensure(script(key, "echo ran; sleep 30"))
        runner.stop(key, grace_s=5)
        assert runner.status(key).state == "cancelled"
        assert status.pid is not None and process_start_ticks(status.pid) is None


def test_stop_of_an_ended_or_unknown_worker_changes_nothing(runner: WorkerRunner) -> None:
    runner.ensure(launch("zs-7-1-r0", "true"))
    ended = wait_ended(runner, "zs-7-1-r0")
    runner.stop("zs-7-1-r0")
    runner.stop("zs-nobody")
    assert runner.status("zs-7-1-r0") == ended


def test_time_limit_fails_the_worker(runner: WorkerRunner) -> None:
    runner.ensure(launch("zs-8-1-r0", "sleep", "30", max_run_s=1))
    status = wait_ended(runner, "zs-8-1-r0")
    assert (status.state, status.reason, status.exit_code) == ("failed", "killed: time limit 1 s", 143)


def test_time_limit_kills_after_the_grace_when_sigterm_is_ignored(runner: WorkerRunner) -> None:
    runner.ensure(script("zs-9-1-r0", "trap '' TERM; sleep 30", max_run_s=1))
    status = wait_ended(runner, "zs-9-1-r0")
    assert (status.state, status.reason) == ("failed", "killed: time limit 1 s")


def test_unknown_key_is_lost_and_has_no_log(runner: WorkerRunner) -> None:
    status = runner.status("zs-404-1-r0")
    assert (status.state, status.reason, status.pid) == ("lost", "unknown worker", None)
    assert runner.read_log("zs-404-1-r0", "stdout", 0) == ("", 0, True)
    with pytest.raises(ValueError, match="^stream:"):
        runner.read_log("zs-404-1-r0", "stdlog", 0)


def test_statuses_and_forget(runner: WorkerRunner) -> None:
    runner.ensure(launch("zs-10-1-r0", "true"))
    runner.ensure(launch("zs-10-1-r1", "sleep", "30"))
    wait_ended(runner, "zs-10-1-r0")
    assert {(s.key, s.state) for s in runner.statuses()} == {("zs-10-1-r0", "succeeded"), ("zs-10-1-r1", "running")}
    with pytest.raises(ValueError, match="^key:"):
        runner.forget("zs-10-1-r1")
    runner.forget("zs-10-1-r0")
    runner.forget("zs-unknown")
    assert [s.key for s in runner.statuses()] == ["zs-10-1-r1"]
    assert not (runner.root / "logs" / "zs-10-1-r0.out").exists()
    assert runner.status("zs-10-1-r0").state == "lost"


def test_stop_returns_only_once_no_process_of_the_group_runs(runner: WorkerRunner) -> None:
    """A stopped worker's processes must not run on after ``stop`` (a dead node's trainer that outlived
    its stop once overwrote the resumed run's result). Here a background child ignores SIGTERM; when
    ``stop`` returns, nothing of the group may still run — not "soon", at once. (The load that once made a
    member outlive the 1 s wait after SIGKILL cannot be reproduced on demand; this pins the guarantee.)"""
    runner.ensure(script("zs-8-1-r0", "trap '' TERM; sleep 30 & echo child $!; wait"))
    wait_for(lambda: "child" in runner.read_log("zs-8-1-r0", "stdout", 0)[0], "child started")
    child = int(runner.read_log("zs-8-1-r0", "stdout", 0)[0].split()[1])
    group = os.getpgid(child)
    runner.stop("zs-8-1-r0", grace_s=0.2)
    assert not _group_alive(group)
