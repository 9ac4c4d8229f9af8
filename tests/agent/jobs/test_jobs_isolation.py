"""Tenants as separate unprivileged users (the agent runs as root here): a worker cannot read another
tenant's files or the agent's logs and records; working directories cannot escape the tenant's own."""

from __future__ import annotations

import os
import pwd
import stat
import string
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.agent.jobs.conftest import IS_ROOT, launch, script, wait_ended

from zhisuan.agent.jobs import WorkerRunner
from zhisuan.agent.jobs.tenancy import tenant_user_name

needs_root = pytest.mark.skipif(not IS_ROOT, reason="tenant users need the agent to run as root")


@needs_root
def test_a_tenant_cannot_read_another_tenants_files_or_the_agents(runner: WorkerRunner) -> None:
    runner.ensure(script("zs-30-1-r0", "echo s3cret > secret.txt; chmod 644 secret.txt; whoami", tenant="acme"))
    assert wait_ended(runner, "zs-30-1-r0").state == "succeeded"
    acme_dir = runner.root / "tenants" / "acme"
    assert (acme_dir / "secret.txt").read_text() == "s3cret\n"
    for suffix in ("out", "err"):
        assert stat.S_IMODE((runner.root / "logs" / f"zs-30-1-r0.{suffix}").stat().st_mode) == 0o600
    assert stat.S_IMODE((runner.root / "logs").stat().st_mode) == 0o700
    targets = [acme_dir / "secret.txt", runner.root / "logs" / "zs-30-1-r0.out",
               runner.root / "state" / "zs-30-1-r0" / "spec.json"]
    for number, target in enumerate(targets):
        key = f"zs-31-1-r{number}"
        runner.ensure(launch(key, "cat", str(target), tenant="beta"))
        status = wait_ended(runner, key)
        assert (status.state, status.exit_code) == ("failed", 1)
        assert "Permission denied" in runner.read_log(key, "stderr", 0)[0]


@needs_root
def test_each_tenant_runs_as_its_own_user_in_its_own_0700_directory(runner: WorkerRunner) -> None:
    for tenant in ("acme", "beta"):
        key = f"zs-32-1-{tenant}"
        status = runner.ensure(launch(key, "id", "-un", tenant=tenant))
        assert f"runs as user zs-{tenant}" in status.notes
        wait_ended(runner, key)
        assert runner.read_log(key, "stdout", 0)[0] == f"zs-{tenant}\n"
        info = (runner.root / "tenants" / tenant).stat()
        assert stat.S_IMODE(info.st_mode) == 0o700
        assert info.st_uid == pwd.getpwnam(f"zs-{tenant}").pw_uid != 0
        assert pwd.getpwnam(f"zs-{tenant}").pw_shell == "/usr/sbin/nologin"


@needs_root
def test_a_long_tenant_name_gets_a_32_character_user(runner: WorkerRunner) -> None:
    tenant = "t" * 40 + "-long-tenant-name"
    runner.ensure(launch("zs-33-1-r0", "id", "-un", tenant=tenant))
    wait_ended(runner, "zs-33-1-r0")
    user = runner.read_log("zs-33-1-r0", "stdout", 0)[0].strip()
    assert user == tenant_user_name(tenant) and len(user) == 32


def test_without_tenant_users_workers_run_as_the_agent(jobs_root: Path) -> None:
    runner = WorkerRunner(jobs_root, run_as_tenant_users=False)
    status = runner.ensure(launch("zs-34-1-r0", "id", "-u"))
    assert any("the agent's own user" in note for note in status.notes)
    wait_ended(runner, "zs-34-1-r0")
    assert runner.read_log("zs-34-1-r0", "stdout", 0)[0] == f"{os.geteuid()}\n"


@pytest.mark.parametrize("workdir", ["../x", "../../etc", "/etc", "a/../../b"])
def test_workdir_escaping_lexically_is_refused(runner: WorkerRunner, workdir: str) -> None:
    with pytest.raises(ValueError, match="^workdir:"):
        runner.ensure(launch("zs-35-1-r0", "true", workdir=workdir))
    assert runner.status("zs-35-1-r0").state == "lost"  # nothing was started


@pytest.mark.parametrize("workdir", ["out", "out/sub", "in/out"])
def test_workdir_escaping_through_a_symlink_is_refused(runner: WorkerRunner, workdir: str) -> None:
    # The tenant's own job plants the symlinks; a later launch must not follow them out.
    runner.ensure(script("zs-36-1-r0", "ln -s /etc out; mkdir in; ln -s /root in/out"))
    assert wait_ended(runner, "zs-36-1-r0").state == "succeeded"
    with pytest.raises(ValueError, match="^workdir:.*outside"):
        runner.ensure(launch("zs-36-1-r1", "true", workdir=workdir))
    assert runner.status("zs-36-1-r1").state == "lost"


@needs_root
def test_a_root_tenant_users_cannot_traverse_is_refused(tmp_path: Path) -> None:
    hidden = tmp_path / "private"
    hidden.mkdir(mode=0o700)
    with pytest.raises(ValueError, match="^root:"):
        WorkerRunner(hidden / "jobs")


@given(st.lists(st.from_regex(r"[a-z0-9-]{1,63}", fullmatch=True), min_size=2, max_size=2, unique=True))
def test_user_names_fit_and_never_collide(tenants: list[str]) -> None:
    names = [tenant_user_name(tenant) for tenant in tenants]
    assert names[0] != names[1]
    for name in names:
        assert len(name) <= 32 and name.startswith("zs-")
        assert set(name) <= set(string.ascii_lowercase + string.digits + "-")
