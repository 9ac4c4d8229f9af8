"""Node faults on the real Slurm site (issue 10, item 5): a 2-node gang of the reference trainer loses a
machine mid-run, and a single job loses its node's slurmd.

A real slurmctld and three slurmd on this machine (``slurm_cluster_with_spare``: 8 fake GPUs each,
``SlurmdTimeout=5``); ``sn3`` is labelled tenant acme's hot spare. The gang runs on the two others;
the machine of rank 1 hangs — its slurmd, step daemon and trainer are frozen
(``testcluster.freeze_node``), so nothing of it answers or writes and no connection is reset, as when a
machine dies. Slurm marks the node not responding (about 4 s later), then DOWN; the platform reads that
(site sync, every 5 s while jobs run there), cordons the node with the reason, stops the gang, requeues
it (attempt 2) onto the surviving node and the spare, and the trainer resumes from its last complete
checkpoint. The final state equals an undisturbed run's (sha256 of ``result.json``) and the job's
goodput breakdown adds up to its wall time. (Rank 1's machine, not rank 0's: when the batch host hangs,
Slurm 22.05 keeps the survivor "completing" about 10 s longer — the same story, only slower.)

The checkpoint directory is "shared" because every node of this cluster is this one machine (the same
``<root>/tenants/acme``); on a real cluster ``root`` is a shared file system. The trainer runs as the
control plane's user here (the driver's ``run_as`` off): the tenant's unix user cannot read this
test's Python, which lives under /root.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import select

from tests.drivers.slurm.conftest import slurm_cluster_with_spare  # noqa: F401 (fixture: a real Slurm)
from tests.workloads.conftest import LocalSite
from zhisuan.agent.jobs.runner import DEFAULT_PATH
from zhisuan.core.goodput.restart import RestartPolicy
from zhisuan.drivers.slurm import testcluster
from zhisuan.drivers.slurm.driver import SlurmDriver
from zhisuan.inventory.models import Site
from zhisuan.workloads.engines import site_engine_of

pytestmark = pytest.mark.slow

PROGRESS = ("echo '{\"step\": %d, \"tokens\": 0, \"checkpoint_step\": null, \"checkpoint_s\": null, \"at\": 1}'"
            ' >> "$ZHISUAN_PROGRESS_FILE"')
SCRIPT = (PROGRESS % 5 + '; if [ "$ZHISUAN_JOB_ATTEMPT" = 1 ]; then sleep 300; fi; '
          + PROGRESS % 9 + '; echo "attempt $ZHISUAN_JOB_ATTEMPT done"')

STEPS, EVERY = 300, 10
TRAINER = [sys.executable, "-m", "zhisuan.trainer", "--steps", str(STEPS), "--checkpoint-every", str(EVERY),
           "--seed", "11", "--step-seconds", "0.05", "--out", "result.json"]


@pytest.fixture
def spare_site(local_site: LocalSite,
               slurm_cluster_with_spare: testcluster.TestCluster) -> Iterator[LocalSite]:  # noqa: F811
    cluster, world = slurm_cluster_with_spare, local_site.world
    world.ok("POST", "/sites", "operator", {
        "name": "hpc", "engine": "slurm", "region": "cn-north-1", "provider": "p2",
        "engine_config": {"slurm_conf": str(cluster.conf_path), "partition": cluster.partition,
                          "log_dir": str(cluster.workdir_root)}})
    world.ok("POST", "/sites/hpc/sync", "operator", {})
    spare = world.ok("GET", "/nodes/hpc/sn3", "operator")
    world.ok("PATCH", "/nodes/hpc/sn3", "operator", {"labels": {**spare["labels"], "zhisuan.io/spare-for": "acme"}})
    scheduler = local_site.scheduler
    with scheduler.sessions() as session:
        engine = site_engine_of(session.execute(select(Site).where(Site.name == "hpc")).scalar_one())
    driver = scheduler.book.driver(engine)
    assert isinstance(driver, SlurmDriver)
    driver.run_as = None  # see the module's docstring
    scheduler.restart_policy = RestartPolicy(max_restarts=3, backoff_base_s=1, backoff_max_s=2)
    yield local_site
    for job in world.ok("GET", "/jobs", "operator", state="active"):
        world.call("POST", f"/jobs/{job['id']}/cancel", "operator", {})
    for _ in range(5):
        local_site.step()


@pytest.fixture(scope="module")
def undisturbed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("undisturbed") / "result.json"
    # In a worker's minimal environment, as the Slurm job gets it: BLAS settings in the caller's environment
    # (OPENBLAS_CORETYPE on some machines) pick other kernels, and the floats' last bits differ with them.
    subprocess.run([*TRAINER[:-4], "--step-seconds", "0", "--out", str(out)], check=True, capture_output=True,
                   env={"PATH": DEFAULT_PATH, "HOME": str(out.parent)})
    return json.loads(out.read_text())  # type: ignore[no-any-return]


def progress_of(site: LocalSite, job_id: int) -> dict[str, Any]:
    return site.job(job_id).get("progress") or {}


def test_a_hung_machine_moves_the_gang_to_the_spare_and_it_resumes_bit_exactly(
        spare_site: LocalSite, slurm_cluster_with_spare: testcluster.TestCluster,  # noqa: F811
        undisturbed: dict[str, Any]) -> None:
    site, cluster, world = spare_site, slurm_cluster_with_spare, spare_site.world
    started = time.monotonic()
    job = site.submit("acme", workers=2, devices_per_worker=8, sites=["hpc"], checkpoint_dir="ckpt",
                      command=TRAINER, max_run_seconds=600)
    running = site.until_state(job["id"], "running", timeout_s=60)
    first = sorted(w["node"] for w in running["placement"])
    assert "hpc/sn3" not in first  # a spare is not used for a first attempt
    site.until(lambda: (progress_of(site, job["id"]).get("checkpoint_step") or 0) >= 2 * EVERY, timeout_s=60)
    victim = next(w["node"] for w in running["placement"] if w["rank"] == 1).split("/")[1]
    survivor = next(n for n in first if n != f"hpc/{victim}")
    frozen_at = time.monotonic()
    assert testcluster.freeze_node(cluster, victim)  # rank 1's machine hangs: slurmd, step daemon, trainer

    seen: list[tuple[float, str, int, str]] = []  # what the job went through, for a failure's message

    def restarted() -> bool:
        now = site.job(job["id"])
        if not seen or seen[-1][1:] != (now["state"], now["attempt"], now["reason"]):
            seen.append((round(time.monotonic() - frozen_at, 1), now["state"], now["attempt"], now["reason"]))
        return bool(now["attempt"] == 2 and now["state"] == "running")

    try:
        site.until(restarted, timeout_s=90)
    except AssertionError:
        pytest.fail(f"not restarted within 90 s of the fault: {seen}")
    recovered_s = time.monotonic() - frozen_at
    done = site.until_state(job["id"], "succeeded", "failed", timeout_s=90)
    events = world.ok("GET", f"/jobs/{job['id']}/events", "acme")
    reasons = [e["reason"] for e in events]
    assert done["state"] == "succeeded" and done["attempt"] == 2 and done["restarts"] == 1, reasons
    assert sorted(w["node"] for w in done["placement"]) == sorted([survivor, "hpc/sn3"]), done["placement"]

    node = world.ok("GET", f"/nodes/hpc/{victim}", "operator")
    assert node["cordon_reason"] and "engine reports the node down" in node["cordon_reason"], node
    requeued = [e["reason"] for e in events if e["state"] == "requeued"]
    assert len(requeued) == 1 and requeued[0].startswith("restart 1 at once on healthy nodes after node fault")
    assert f"hpc/{victim}" in requeued[0] and survivor not in requeued[0], requeued  # the faulty node only

    result = json.loads((cluster.workdir_root / "tenants" / "acme" / "result.json").read_text())
    assert result["sha256"] == undisturbed["sha256"]  # the same final state as an undisturbed run
    assert result["resumed_from"] is not None and result["resumed_from"] >= 2 * EVERY  # it did resume

    goodput = world.ok("GET", f"/jobs/{job['id']}/goodput", "acme")
    b = goodput["breakdown"]
    wall = (datetime.fromisoformat(done["ended_at"]) - datetime.fromisoformat(done["submitted_at"])).total_seconds()
    parts = b["queueing"] + b["productive"] + b["checkpoint"] + b["lost"] + b["restart"]
    assert abs(parts - wall) < 1e-6 and abs(b["wall"] - wall) < 1e-6, b  # the breakdown adds up to wall time
    assert b["productive"] > 0 and b["restart"] > 0 and 0 < b["ettr"] < 1, b
    assert goodput["attempts"] == 2 and goodput["restarts"] == 1
    print(f"\nfault to attempt 2 running: {recovered_s:.1f} s; whole test body {time.monotonic() - started:.1f} s; "
          f"ETTR {b['ettr']:.3f}")


def test_a_killed_slurmd_cordons_its_node_and_the_job_restarts_elsewhere(
        spare_site: LocalSite, slurm_cluster_with_spare: testcluster.TestCluster) -> None:  # noqa: F811
    """Only the slurmd dies (its job's processes live on): Slurm marks the node not responding; zhisuan
    cordons it with Slurm's verdict as the reason, stops the job and requeues it (attempt 2, an event
    with the reason); the second attempt runs to the end on another node. The progress lines reach the
    job through the driver (rank 0's progress file in the job's log directory)."""
    slurm_site, restored = spare_site, slurm_cluster_with_spare
    job = slurm_site.submit("acme", devices_per_worker=8, sites=["hpc"], checkpoint_dir="ckpt",
                            command=["sh", "-c", SCRIPT])
    running = slurm_site.until_state(job["id"], "running", timeout_s=60)
    # The driver reads rank 0's progress file from the job's log directory at each poll.
    slurm_site.until(lambda: (slurm_site.job(job["id"]).get("progress") or {}).get("step") == 5, timeout_s=60)
    victim = running["placement"][0]["node"].split("/")[1]
    testcluster.stop_node(restored, victim)
    done = slurm_site.until_state(job["id"], "succeeded", "failed", timeout_s=150)
    reasons = [e["reason"] for e in slurm_site.world.ok("GET", f"/jobs/{job['id']}/events", "operator")]
    assert done["state"] == "succeeded" and done["attempt"] == 2, reasons
    assert done["placement"][0]["node"] != f"hpc/{victim}"
    assert "attempt 2 done" in slurm_site.world.ok("GET", f"/jobs/{job['id']}/logs", "acme")["data"]
    assert any("restart 1 at once on healthy nodes after node fault" in r for r in reasons), reasons
    node = slurm_site.world.ok("GET", f"/nodes/hpc/{victim}", "operator")
    assert node["cordon_reason"] is not None and "engine reports the node down" in node["cordon_reason"], node
    goodput = slurm_site.world.ok("GET", f"/jobs/{job['id']}/goodput", "acme")["breakdown"]
    assert goodput["lost"] > 0 and goodput["wall"] > 0  # no checkpoint: the failed attempt's work is lost
    parts = sum(goodput[k] for k in ("queueing", "productive", "checkpoint", "lost", "restart"))
    assert abs(parts - goodput["wall"]) < 1e-6
