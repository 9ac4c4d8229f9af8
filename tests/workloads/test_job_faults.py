"""Faults on a local site, for real: processes run the reference trainer (``python -m zhisuan.trainer``);
a worker is SIGKILLed, an agent stops, a device reports an XID, a job hangs. The job is requeued (whole
gang, attempt + 1, an event with the reason) away from cordoned nodes, resumes from its last complete
checkpoint, and ends with the same final state (sha256) as an undisturbed run.

The nodes' shared file system is modelled by one directory both nodes' tenant directories link to
(``shared``): a local site needs one for a job to resume on another node (the platform keeps
``ZHISUAN_CHECKPOINT_DIR`` the same across attempts; the trainer reads the newest valid checkpoint).
Workers run as the agent's own user here: tenant users cannot enter this test's Python (under /root).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.workloads.conftest import LocalSite, add_local_node
from zhisuan.agent.job_sync import JobSync
from zhisuan.agent.jobs import WorkerRunner
from zhisuan.agent.jobs.runner import DEFAULT_PATH
from zhisuan.core.goodput.restart import RestartPolicy
from zhisuan.loops.heartbeat_monitor import monitor_pass

STEPS, EVERY = 80, 10
TRAINER = [sys.executable, "-m", "zhisuan.trainer", "--steps", str(STEPS), "--checkpoint-every", str(EVERY),
           "--seed", "7", "--step-seconds", "0.05", "--out", "shared/result.json"]


@pytest.fixture(scope="module")
def undisturbed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("undisturbed") / "result.json"
    # In the environment a worker gets (the runner passes no OPENBLAS_* etc.): BLAS settings such as
    # OPENBLAS_CORETYPE pick other kernels, and the last bits of the floats differ with them.
    subprocess.run([*TRAINER[:-2], "--step-seconds", "0", "--out", str(out)], check=True, capture_output=True,
                   env={"PATH": DEFAULT_PATH, "HOME": str(out.parent)})
    return json.loads(out.read_text())  # type: ignore[no-any-return]


def own_user_node(site: LocalSite, name: str, root: Path, shared: Path) -> JobSync:
    """A node whose agent runs workers as its own user, its tenant directory linking ``shared``."""
    sync = add_local_node(site.world, name, root) if name not in site.agents else site.agents[name]
    tenant_dir = root / name / "tenants" / "acme"
    tenant_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not (tenant_dir / "shared").exists():
        (tenant_dir / "shared").symlink_to(shared)
    sync.runner = WorkerRunner(root / name, run_as_tenant_users=False)
    site.agents[name] = sync
    return sync


@pytest.fixture
def two_nodes(local_site: LocalSite, jobs_root: Path) -> tuple[LocalSite, Path]:
    shared = jobs_root / "shared-fs"
    shared.mkdir(mode=0o777)
    own_user_node(local_site, "n1", jobs_root, shared)
    own_user_node(local_site, "n2", jobs_root, shared)
    local_site.scheduler.restart_policy = RestartPolicy(max_restarts=3, backoff_base_s=1, backoff_max_s=2)
    return local_site, shared


def submit_trainer(site: LocalSite, **extra: Any) -> dict[str, Any]:
    return site.submit("acme", command=TRAINER, devices_per_worker=8, checkpoint_dir="shared/ckpt", **extra)


def wait_for_checkpoint(site: LocalSite, job_id: int, at_least: int) -> dict[str, Any]:
    # 60 s: under a loaded CI machine the first attempt's start (placement, worker spawn, numpy import) took > 30 s.
    site.until(lambda: ((site.job(job_id).get("progress") or {}).get("checkpoint_step") or 0) >= at_least,
               timeout_s=60)
    return site.job(job_id)


def heartbeat(site: LocalSite, name: str, devices: list[dict[str, Any]] | None = None) -> None:
    site.world.ok("POST", "/agent/heartbeat", f"agent-{name}", {"node": name, "devices": devices or []})


def events(site: LocalSite, job_id: int) -> list[dict[str, Any]]:
    return site.world.ok("GET", f"/jobs/{job_id}/events", "acme")  # type: ignore[no-any-return]


def trainer_pids(sync: JobSync) -> list[int]:
    """The trainer processes under this agent's wrappers (children of each worker's wrapper)."""
    pids = []
    for status in sync.runner.statuses():
        if status.state == "running" and status.pid:
            children = Path(f"/proc/{status.pid}/task/{status.pid}/children").read_text().split()
            pids += [int(p) for p in children]
    return pids


def gone_with_the_machine(pids: list[int]) -> None:
    """The processes of a machine that died are gone: killed outright if the stop has not reaped them
    yet (on a loaded machine one once outlived it and overwrote the resumed run's result.json)."""
    deadline = time.monotonic() + 10
    for pid in pids:
        while "zombie" not in _state_of(pid) and time.monotonic() < deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)
        assert "zombie" in _state_of(pid), f"trainer {pid} still running"


def _state_of(pid: int) -> str:
    """The process's state from /proc ("zombie" also when it is gone altogether)."""
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split("\n")[0].lower()
    except (FileNotFoundError, IndexError):
        return "zombie"


def finish(site: LocalSite, job_id: int, shared: Path, undisturbed: dict[str, Any]) -> dict[str, Any]:
    done = site.until_state(job_id, "succeeded", "failed", timeout_s=90)
    assert done["state"] == "succeeded", (done, events(site, job_id))
    result = json.loads((shared / "result.json").read_text())
    assert result["sha256"] == undisturbed["sha256"]  # the same final state as an undisturbed run
    assert result["resumed_from"] is not None and result["resumed_from"] >= EVERY  # it did resume
    measured = site.world.ok("GET", f"/jobs/{job_id}/goodput", "acme")
    b = measured["breakdown"]
    wall = (datetime.fromisoformat(done["ended_at"]) - datetime.fromisoformat(done["submitted_at"])).total_seconds()
    parts = b["queueing"] + b["productive"] + b["checkpoint"] + b["lost"] + b["restart"]
    assert abs(parts - wall) < 1e-6 and abs(b["wall"] - wall) < 1e-6, b  # the breakdown adds up to wall time
    assert b["productive"] > 0 and b["restart"] > 0 and 0 < b["ettr"] < 1, b  # a fault cost something
    assert measured["attempts"] == 2 and measured["restarts"] == 1
    tenant = site.world.ok("GET", "/goodput", "acme")
    assert tenant["tenant"] == "acme" and tenant["jobs"] >= 1 and tenant["breakdown"]["wall"] >= b["wall"]
    return done


def test_a_sigkilled_worker_is_restarted_and_resumes_from_its_checkpoint(
        two_nodes: tuple[LocalSite, Path], undisturbed: dict[str, Any]) -> None:
    site, shared = two_nodes
    job = submit_trainer(site)
    running = wait_for_checkpoint(site, job["id"], 20)
    node = running["placement"][0]["node"].split("/")[1]
    for pid in trainer_pids(site.agents[node]):
        os.kill(pid, signal.SIGKILL)
    done = finish(site, job["id"], shared, undisturbed)
    assert done["attempt"] == 2 and done["restarts"] == 1
    requeued = [e for e in events(site, job["id"]) if e["state"] == "requeued"]
    assert len(requeued) == 1 and "restart 1" in requeued[0]["reason"] and "exit code" in requeued[0]["reason"]


def test_a_lost_agent_fails_its_jobs_as_agent_lost_and_they_resume_on_another_node(
        two_nodes: tuple[LocalSite, Path], undisturbed: dict[str, Any]) -> None:
    site, shared = two_nodes
    job = submit_trainer(site)
    running = wait_for_checkpoint(site, job["id"], 20)
    lost = running["placement"][0]["node"].split("/")[1]
    other = "n2" if lost == "n1" else "n1"
    dead = site.agents.pop(lost)  # the agent stops (and its machine with it: its worker dies too)
    orphans = trainer_pids(dead)
    for status in dead.runner.statuses():
        dead.runner.stop(status.key, 0)
    gone_with_the_machine(orphans)
    clock = site.world.client.app.state.ctx.clock  # type: ignore[attr-defined]
    clock.advance(seconds=31)
    heartbeat(site, other)
    marked = monitor_pass(site.world.client.app.state.ctx.sessions, clock(), timedelta(seconds=30))  # type: ignore[attr-defined]
    assert len(marked) == 1
    node = site.world.ok("GET", f"/nodes/loc/{lost}", "operator")
    assert node["status"] == "unreachable" and node["cordon_reason"] == "agent lost: no heartbeat"
    done = finish(site, job["id"], shared, undisturbed)
    assert done["attempt"] == 2 and done["placement"][0]["node"] == f"loc/{other}"
    reasons = [e["reason"] for e in events(site, job["id"])]
    assert any("rank 0: agent_lost: node" in r for r in reasons), reasons
    assert any("agent lost on loc/" in r and "at once on healthy nodes" in r for r in reasons), reasons


def test_a_device_fault_cordons_the_node_and_moves_the_gang(
        two_nodes: tuple[LocalSite, Path], undisturbed: dict[str, Any]) -> None:
    site, shared = two_nodes
    job = submit_trainer(site)
    running = wait_for_checkpoint(site, job["id"], 20)
    faulty = running["placement"][0]["node"].split("/")[1]
    heartbeat(site, faulty, [{"index": 2, "healthy": False, "health_detail": "XID 79 (GPU has fallen off the bus)"}])
    node = site.world.ok("GET", f"/nodes/loc/{faulty}", "operator")
    assert node["cordon_reason"] == "device 2: XID 79 (GPU has fallen off the bus)"
    done = finish(site, job["id"], shared, undisturbed)
    assert done["attempt"] == 2 and done["placement"][0]["node"] != f"loc/{faulty}"
    reasons = [e["reason"] for e in events(site, job["id"])]
    assert any(f"node loc/{faulty} cordoned (device 2: XID 79" in r for r in reasons), reasons
    assert any(r.startswith("restart 1 at once on healthy nodes after device fault") for r in reasons), reasons


def test_a_device_scoped_fault_stops_only_the_job_holding_that_device(two_nodes: tuple[LocalSite, Path]) -> None:
    """XID 48 (double-bit ECC) on one device of n1: that device is cordoned, n1 is not. The job holding
    it is stopped and requeued (it restarts on n2, as n1 has 3 healthy devices free); the job on n1's
    other four devices keeps running its first attempt."""
    site, _ = two_nodes
    site.world.ok("PATCH", "/nodes/loc/n2", "operator", {"drained": True})  # both jobs land on n1
    struck = site.submit("acme", command=["sh", "-c", 'if [ "$ZHISUAN_JOB_ATTEMPT" = 1 ]; then sleep 60; fi'],
                         devices_per_worker=4, max_restarts=2)
    spared = site.submit("acme", command=["sleep", "60"], devices_per_worker=4)
    first = site.until_state(struck["id"], "running")
    other = site.until_state(spared["id"], "running")
    assert first["placement"][0]["node"] == other["placement"][0]["node"] == "loc/n1"
    held = first["placement"][0]["device_indices"]
    assert not set(held) & set(other["placement"][0]["device_indices"])
    bad = held[0]
    heartbeat(site, "n1", [{"index": bad, "healthy": False, "health_detail": "XID 48 (DBE)"}])
    node = site.world.ok("GET", "/nodes/loc/n1", "operator")
    assert node["cordon_reason"] is None and node["devices"][bad]["cordon_reason"] == f"device {bad}: XID 48 (DBE)"
    site.world.ok("PATCH", "/nodes/loc/n2", "operator", {"drained": False})
    done = site.until_state(struck["id"], "succeeded", "failed", timeout_s=60)
    assert done["state"] == "succeeded" and done["attempt"] == 2 and done["placement"][0]["node"] == "loc/n2"
    reasons = [e["reason"] for e in events(site, struck["id"])]
    assert any(f"a device it holds on loc/n1 cordoned (device {bad}: XID 48" in r for r in reasons), reasons
    assert any(r.startswith("restart 1 at once on healthy nodes after device fault") for r in reasons), reasons
    kept = site.job(spared["id"])
    assert kept["state"] == "running" and kept["attempt"] == 1 and kept["restarts"] == 0, kept
    assert [e["state"] for e in events(site, spared["id"])] == ["queued", "admitted", "starting", "running"]
    site.world.ok("POST", f"/jobs/{spared['id']}/cancel", "acme", {})


def test_restarts_are_bounded(two_nodes: tuple[LocalSite, Path]) -> None:
    site, _ = two_nodes
    # a different exit code on each attempt: never "the same failure on different nodes" (a user error)
    job = site.submit("acme", command=["sh", "-c", 'exit "$ZHISUAN_JOB_ATTEMPT"'], max_restarts=2)
    done = site.until_state(job["id"], "failed", timeout_s=60)
    assert done["attempt"] == 3 and done["restarts"] == 2
    assert "gave up after 2 restarts (max_restarts 2)" in done["reason"], done["reason"]


def test_a_hung_job_is_stopped_with_the_reason(two_nodes: tuple[LocalSite, Path]) -> None:
    site, _ = two_nodes
    job = site.submit("acme", command=["sleep", "60"], hang_timeout_s=10)
    done = site.until_state(job["id"], "failed", timeout_s=60)
    assert done["reason"].startswith("hang: no progress report within the job's hang_timeout_s")
    assert any("hang: no progress report for 10 s" in e["reason"] for e in events(site, job["id"]))


def test_a_progress_report_for_another_nodes_job_is_refused(two_nodes: tuple[LocalSite, Path]) -> None:
    site, _ = two_nodes
    job = site.submit("acme", command=["sleep", "30"])
    running = site.until_state(job["id"], "running")
    node = running["placement"][0]["node"].split("/")[1]
    other = "n2" if node == "n1" else "n1"
    key = f"zs-{job['id']}-1-r0"
    answer = site.world.call("POST", "/agent/workers", f"agent-{other}", {"node": other, "workers": [
        {"key": key, "state": "running", "progress": {"step": 10**6, "at": time.time()}}]})
    assert answer.status_code == 404 and answer.json()["error"]["field"] == "workers.0.key"
    assert (site.job(job["id"]).get("progress") or {}).get("step") != 10**6
    site.world.ok("POST", f"/jobs/{job['id']}/cancel", "acme")


def test_a_restart_takes_its_tenants_hot_spare_first(two_nodes: tuple[LocalSite, Path], jobs_root: Path) -> None:
    site, shared = two_nodes
    own_user_node(site, "n3", jobs_root, shared)
    site.world.ok("PATCH", "/nodes/loc/n3", "operator", {"labels": {
        **site.world.ok("GET", "/nodes/loc/n3", "operator")["labels"], "zhisuan.io/spare-for": "acme"}})
    job = site.submit("acme", command=["sh", "-c", 'if [ "$ZHISUAN_JOB_ATTEMPT" = 1 ]; then sleep 60; fi'],
                      devices_per_worker=8, checkpoint_dir="ckpt")
    running = site.until_state(job["id"], "running")
    first = running["placement"][0]["node"]
    assert first != "loc/n3"  # a spare is not used for a first attempt
    other = site.submit("beta", command=["sleep", "60"], devices_per_worker=8)  # takes the last ordinary node
    assert site.until_state(other["id"], "running")["placement"][0]["node"] != "loc/n3"
    waiting = site.submit("beta", command=["true"], devices_per_worker=8)
    for _ in range(5):
        site.step()
    assert site.job(waiting["id"])["state"] == "queued"  # the free spare is acme's, for restarts only
    heartbeat(site, first.split("/")[1], [{"index": 0, "healthy": False, "health_detail": "XID 48 (DBE)"}])
    done = site.until_state(job["id"], "succeeded", "failed", timeout_s=60)
    assert done["state"] == "succeeded" and done["attempt"] == 2 and done["placement"][0]["node"] == "loc/n3"
    for leftover in (other, waiting):
        site.world.ok("POST", f"/jobs/{leftover['id']}/cancel", "beta")


def test_a_command_the_tenants_user_cannot_execute_fails_at_once_as_a_user_error(
        local_site: LocalSite, tmp_path: Path) -> None:
    """The README demo's trap, as root: jobs run as the tenant's own user (zs-acme), which cannot enter a
    0700 directory such as /root — where uv and pyenv keep Python. The worker cannot exec (126); that is
    the command's fault, not the node's, so the job fails at once with the reason instead of being retried
    on other nodes with backoff (``checkpoint_dir`` opts it in to restarts)."""
    if os.geteuid() != 0:
        pytest.skip("workers run as the tenant's own user only when the agent is root")
    private = tmp_path / "private"  # like /root: only its owner may enter
    private.mkdir(mode=0o700)
    program = private / "train"
    program.write_text("#!/bin/sh\necho trained\n")
    program.chmod(0o755)
    job = local_site.submit("acme", command=[str(program)], checkpoint_dir="ckpt")
    done = local_site.until_state(job["id"], "failed", "succeeded", timeout_s=60)
    assert done["state"] == "failed" and done["attempt"] == 1 and done["restarts"] == 0, events(local_site, job["id"])
    assert done["reason"].startswith("user error: the command could not be started (rank 0: cannot exec"), done
    assert "Permission denied" in done["reason"] and "zs-<tenant>" in done["reason"], done["reason"]


def test_a_program_failure_restarts_on_other_hardware_and_failing_there_too_is_a_user_error(
        two_nodes: tuple[LocalSite, Path]) -> None:
    """The job's avoid set (nodes it failed on) steers the restart to the other node, so the second
    identical failure is on different hardware: a user error after two attempts, not a retry loop."""
    site, _ = two_nodes
    job = site.submit("acme", command=["sh", "-c", "exit 3"], devices_per_worker=8, max_restarts=5)
    done = site.until_state(job["id"], "failed", timeout_s=60)
    history = events(site, job["id"])
    assert done["attempt"] == 2 and done["restarts"] == 1, history
    assert done["reason"].startswith("user error: exit nonzero (exit code 3) on loc/n") and \
        "on 2 attempts on different nodes" in done["reason"], done["reason"]
    admitted = [e["reason"] for e in history if e["state"] == "admitted"]
    assert "away from the 1 node(s) it failed on" in admitted[1], admitted
