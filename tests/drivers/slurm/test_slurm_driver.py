"""The Slurm driver against a real Slurm 22.05 (the session's throw-away cluster: 2 nodes × 8 fake GPUs)."""

from __future__ import annotations

import dataclasses
import pwd
import re
import subprocess
import time
from dataclasses import dataclass

import pytest

from tests.drivers.conformance import check_driver, read_all, unique_key, wait_for
from tests.drivers.slurm.specs import make_spec
from zhisuan.drivers.base import EngineUnavailable, SubmitRejected
from zhisuan.drivers.slurm import testcluster
from zhisuan.drivers.slurm.driver import SlurmDriver

pytestmark = pytest.mark.slow


def test_conformance_with_a_two_node_gang(driver: SlurmDriver) -> None:
    check_driver(driver, make_spec, expect_nodes=2, expect_devices_per_node=8, gang_workers=2)


def test_two_node_gang_with_eight_gpus_per_node_sees_its_devices_and_rendezvous(driver: SlurmDriver) -> None:
    command = ["sh", "-c", 'echo "rank=$RANK node_rank=$NODE_RANK world=$WORLD_SIZE master=$MASTER_ADDR:$MASTER_PORT '
               'cvd=$CUDA_VISIBLE_DEVICES host=$SLURMD_NODENAME pwd=$(pwd) greeting=$GREETING"']
    spec = make_spec(unique_key(), command, 2, gpus=8, env={"GREETING": "hello 'world' $HOME"}, workdir="runs/a")
    handle = driver.submit(spec)
    state = wait_for(driver, handle, {"succeeded", "failed", "lost"})
    assert state.state == "succeeded", (state, read_all(driver, handle, 0, "stderr"))
    hosts = set()
    for rank in (0, 1):
        out = read_all(driver, handle, rank, "stdout")
        fields = dict(re.findall(r"(\w+)=(\S+)", out))
        assert fields["rank"] == fields["node_rank"] == str(rank)
        assert fields["world"] == "2"
        assert fields["master"] == "127.0.0.1:29500"  # the first node's NodeAddr
        assert fields["cvd"].split(",") == [str(i) for i in range(8)]
        assert fields["pwd"].endswith("/tenants/acme/runs/a")
        assert "greeting=hello 'world' $HOME" in out  # the value arrives verbatim, not shell-expanded
        hosts.add(fields["host"])
    assert hosts == {"sn1", "sn2"}


def test_impossible_requests_are_rejected(driver: SlurmDriver) -> None:
    with pytest.raises(SubmitRejected, match="node configuration is not available"):
        driver.submit(make_spec(unique_key(), ["true"], 1, gpus=9))
    with pytest.raises(SubmitRejected, match="no GPU gres type on this Slurm site holds a100"):
        driver.submit(make_spec(unique_key(), ["true"], 1, model="a100-sxm4-80gb"))
    with pytest.raises(SubmitRejected, match="BAD-NAME"):
        driver.submit(make_spec(unique_key(), ["true"], 1, env={"BAD-NAME": "x"}))
    with pytest.raises(SubmitRejected, match="workdir"):
        driver.submit(make_spec(unique_key(), ["true"], 1, workdir="../other-tenant"))


def test_a_rejected_key_is_rejected_again_not_adopted(driver: SlurmDriver) -> None:
    spec = make_spec(unique_key(), ["true"], 1, gpus=9)
    for _ in range(2):  # Slurm keeps a FAILED stub of the refused job: the second submit must not return it
        with pytest.raises(SubmitRejected):
            driver.submit(spec)


def test_image_is_ignored_with_a_note_and_script_runs(driver: SlurmDriver) -> None:
    spec = make_spec(unique_key(), [], 1, image="nvcr.io/nvidia/pytorch:24.05", script="echo from-script $RANK\n")
    handle = driver.submit(spec)
    state = wait_for(driver, handle, {"succeeded", "failed", "lost"})
    assert state.state == "succeeded", state
    assert state.notes == ("no container plugin on this Slurm site: the command ran on the host, "
                           "image nvcr.io/nvidia/pytorch:24.05 ignored",)
    assert read_all(driver, handle, 0, "stdout") == "from-script 0\n"
    assert driver.logs(handle, 0, "stdout", 0).complete


def test_controller_down_is_engine_unavailable_and_work_resumes_after_restart(
        driver: SlurmDriver, slurm_cluster: testcluster.TestCluster) -> None:
    # A step that ends while the controller is away cannot report its end, and srun then fails the job
    # (Slurm's behaviour, not the driver's): the job sleeps far longer than any outage here, is seen still
    # running once the controller is back, then cancelled — no wait on the outage's length (which a
    # loaded machine stretched past a 15 s job). "running" in squeue is the batch script; its srun still asks
    # the controller for the step, and an srun that finds the controller gone fails the job — so the outage
    # starts only once the task has printed, i.e. the step exists.
    handle = driver.submit(make_spec(unique_key(), ["sh", "-c", "echo step-up; exec sleep 600"], 1))
    wait_for(driver, handle, {"running"})
    deadline = time.monotonic() + 60
    while "step-up" not in read_all(driver, handle, 0, "stdout"):
        assert time.monotonic() < deadline, "the task never started"
        time.sleep(0.2)
    testcluster.stop_controller(slurm_cluster)
    try:
        for call in (lambda: driver.poll([handle]), driver.import_inventory,
                     lambda: driver.submit(make_spec(unique_key(), ["true"], 1)), lambda: driver.cancel(handle)):
            with pytest.raises(EngineUnavailable):
                call()
        assert not driver.logs(handle, 0, "stdout").complete  # log files stay readable meanwhile
        assert read_all(driver, handle, 0, "stdout") == "step-up\n"
    finally:
        testcluster.start_controller(slurm_cluster)
    # the job kept running on its node while the controller was away, and is still the same job
    state = wait_for(driver, handle, {"running", "succeeded", "failed", "lost"})
    assert state.state == "running", (state, read_all(driver, handle, 0, "stderr"))
    assert len(driver.import_inventory()) == 2
    driver.cancel(handle)  # the driver works again after the restart
    assert wait_for(driver, handle, {"cancelled", "succeeded", "failed", "lost"}, timeout_s=60).state == "cancelled"


def test_drain_and_resume_show_in_inventory(driver: SlurmDriver) -> None:
    driver.drain("sn2", "zhisuan test: disk check")
    try:
        nodes = {n.name: n for n in driver.import_inventory()}
        assert nodes["sn2"].state == "drained"
        assert nodes["sn2"].labels["slurm.reason"] == "zhisuan test: disk check"
        assert nodes["sn1"].state == "ready"
    finally:
        driver.resume("sn2")
    # Slurm marks a resumed node "not responding" (→ down) until its slurmd answers the next ping
    deadline = time.monotonic() + 30
    states = {n.name: n.state for n in driver.import_inventory()}
    while states["sn2"] == "down" and time.monotonic() < deadline:
        time.sleep(0.2)
        states = {n.name: n.state for n in driver.import_inventory()}
    assert states == {"sn1": "ready", "sn2": "ready"}


def test_logs_of_an_unknown_handle_are_empty_and_complete(driver: SlurmDriver) -> None:
    chunk = driver.logs("999999999", 0, "stdout", 0)
    assert (chunk.data, chunk.next_offset, chunk.complete) == ("", 0, True)


@dataclass(frozen=True)
class TenantUser:
    """A real unprivileged system user per tenant (``zs-<tenant>``, as the local driver names them)."""

    user: str
    uid: int
    gid: int


def tenant_user(tenant: str) -> TenantUser:
    name = f"zs-{tenant}"
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
                        "--shell", "/usr/sbin/nologin", name], capture_output=True, check=False)
        entry = pwd.getpwnam(name)
    return TenantUser(name, entry.pw_uid, entry.pw_gid)


def test_jobs_run_as_their_tenant_and_cannot_read_another_tenants_files(
        slurm_cluster: testcluster.TestCluster) -> None:
    driver = SlurmDriver(str(slurm_cluster.conf_path), partition=slurm_cluster.partition,
                         root=slurm_cluster.workdir_root, run_as=tenant_user)
    owner = dataclasses.replace(make_spec(unique_key(), ["sh", "-c", "echo secret > mine.txt; id -u"], 1),
                                tenant="slurm-a", workdir="w")
    handle = driver.submit(owner)
    assert wait_for(driver, handle, {"succeeded", "failed", "lost"}).state == "succeeded"
    assert read_all(driver, handle, 0, "stdout").strip() == str(tenant_user("slurm-a").uid)
    secret = slurm_cluster.workdir_root / "tenants" / "slurm-a" / "w" / "mine.txt"
    assert secret.read_text() == "secret\n"

    intruder = dataclasses.replace(make_spec(unique_key(), ["sh", "-c", f"id -u; cat {secret}"], 1),
                                   tenant="slurm-b")
    handle = driver.submit(intruder)
    state = wait_for(driver, handle, {"succeeded", "failed", "lost"})
    assert state.state == "failed", state
    assert read_all(driver, handle, 0, "stdout").strip() == str(tenant_user("slurm-b").uid)
    assert "Permission denied" in read_all(driver, handle, 0, "stderr")
