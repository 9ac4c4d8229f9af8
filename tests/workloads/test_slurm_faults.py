"""A node fault on the real Slurm site: its slurmd is killed while a job runs there. Slurm marks the node
not responding and ends the job NODE_FAIL (zhisuan submits with --no-requeue: restarts are the control
plane's); its progress lines reach the job through the driver;
zhisuan cordons the node with Slurm's verdict as the reason, requeues the job (attempt 2,
an event with the reason) and it runs to the end on the other node."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest

from tests.drivers.slurm.conftest import slurm_cluster  # noqa: F401 (fixture: a real throw-away Slurm)
from tests.workloads.conftest import LocalSite
from tests.workloads.test_slurm_jobs import slurm_site, world_events  # noqa: F401 (fixture)
from zhisuan.drivers.slurm import testcluster

pytestmark = pytest.mark.slow

PROGRESS = ("echo '{\"step\": %d, \"tokens\": 0, \"checkpoint_step\": null, \"checkpoint_s\": null, \"at\": 1}'"
            ' >> "$ZHISUAN_PROGRESS_FILE"')
SCRIPT = (PROGRESS % 5 + '; if [ "$ZHISUAN_JOB_ATTEMPT" = 1 ]; then sleep 300; fi; '
          + PROGRESS % 9 + '; echo "attempt $ZHISUAN_JOB_ATTEMPT done"')


@pytest.fixture
def restored(slurm_cluster: testcluster.TestCluster) -> Iterator[testcluster.TestCluster]:  # noqa: F811
    yield slurm_cluster
    for node in slurm_cluster.nodes:  # the killed slurmd comes back (ReturnToService=2): the cluster is shared
        pid = slurm_cluster.directory / "run" / f"slurmd.{node}.pid"
        if not pid.exists():
            testcluster.start_node(slurm_cluster, node)
    testcluster.wait_idle(slurm_cluster)


def skip_remembered_keys(site: LocalSite, cluster: testcluster.TestCluster) -> None:
    """Submission is idempotent by the key zs-<job id>-<attempt>, and this session's Slurm remembers ended
    jobs (MinJobAge): another database's job 1 would be "found" there. Jobs that wait forever (a model
    nobody has) move this database's next job id past every key Slurm remembers."""
    names = subprocess.run(["squeue", "-h", "-t", "all", "-o", "%j"], env={**os.environ, **cluster.env},
                           capture_output=True, text=True, check=True).stdout.split()
    used = {int(n.split("-")[1]) for n in names if n.startswith("zs-") and n.split("-")[1].isdigit()}
    while True:
        filler = site.submit("acme", models=["ascend-910b2"], command=["true"])
        if filler["id"] + 1 not in used:
            return


def test_a_killed_slurmd_cordons_its_node_and_the_job_restarts_on_the_other(
        slurm_site: LocalSite, restored: testcluster.TestCluster) -> None:  # noqa: F811
    skip_remembered_keys(slurm_site, restored)
    job = slurm_site.submit("acme", devices_per_worker=8, sites=["hpc"], checkpoint_dir="ckpt",
                            command=["sh", "-c", SCRIPT])
    running = slurm_site.until_state(job["id"], "running", timeout_s=60)
    # The driver reads rank 0's progress file from the job's log directory at each poll.
    slurm_site.until(lambda: (slurm_site.job(job["id"]).get("progress") or {}).get("step") == 5, timeout_s=30)
    victim = running["placement"][0]["node"].split("/")[1]
    testcluster.stop_node(restored, victim)
    done = slurm_site.until_state(job["id"], "succeeded", "failed", timeout_s=150)
    reasons = [e["reason"] for e in world_events(slurm_site, job["id"])]
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
