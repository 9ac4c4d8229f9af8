"""The issue's own scenario on one machine: a real Slurm site with two fake 8-GPU nodes and a local site.

A tenant with a contract runs a 2-node 16-GPU gang on Slurm (each rank sees its eight GPUs) and a
1-GPU job on the local site; a job asking for a model nobody has stays queued with the reason; an
engine that goes away leaves jobs queued with that reason, and they run when it is back.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.api.econ_setup import START, clock_at
from tests.drivers.slurm.conftest import slurm_cluster  # noqa: F401 (fixture: a real throw-away Slurm)
from tests.workloads.conftest import LocalSite
from zhisuan.drivers.slurm import testcluster

pytestmark = pytest.mark.slow


@pytest.fixture
def slurm_site(local_site: LocalSite, slurm_cluster: testcluster.TestCluster) -> Iterator[LocalSite]:  # noqa: F811
    world = local_site.world
    world.ok("POST", "/sites", "operator", {
        "name": "hpc", "engine": "slurm", "region": "cn-north-1", "provider": "p2",
        "engine_config": {"slurm_conf": str(slurm_cluster.conf_path), "partition": slurm_cluster.partition,
                          "log_dir": str(slurm_cluster.workdir_root)}})
    synced = world.ok("POST", "/sites/hpc/sync", "operator", {})
    assert sorted(synced["added"]) == sorted(slurm_cluster.nodes), synced
    yield local_site
    for job in world.ok("GET", "/jobs", "operator", state="active"):
        world.call("POST", f"/jobs/{job['id']}/cancel", "operator", {})
    for _ in range(5):
        local_site.step()


def test_gang_on_slurm_and_one_gpu_locally_under_a_contract(slurm_site: LocalSite) -> None:
    world = slurm_site.world
    with clock_at(world, START):
        contract = world.ok("POST", "/contracts", "operator", {
            "tenant": "acme", "providers": ["p2"], "capacity": {"kind": "quota", "model": "h100-sxm", "quota": 16},
            "pricing_model": "device_hour", "unit_price": "15", "start": START, "closed_months": 1})
    world.ok("POST", f"/contracts/{contract['id']}/activate", "operator", {})
    gang = slurm_site.submit("acme", workers=2, devices_per_worker=8, priority_class="reserved", sites=["hpc"],
                             command=["sh", "-c", 'echo "rank=$RANK of $WORLD_SIZE gpus=$CUDA_VISIBLE_DEVICES"'])
    single = slurm_site.submit("acme", devices_per_worker=1, sites=["loc"], command=["sh", "-c", "echo local-ok"])
    nobody = slurm_site.submit("acme", models=["ascend-910b2"], command=["true"])
    done = slurm_site.until_state(gang["id"], "succeeded", "failed", timeout_s=90)
    assert done["state"] == "succeeded", (done, world.ok("GET", f"/jobs/{gang['id']}/events", "acme"))
    assert done["site"] == "hpc" and done["within_guarantee"] and len(done["placement"]) == 2
    for rank in (0, 1):
        out = world.ok("GET", f"/jobs/{gang['id']}/logs", "acme", rank=rank)["data"]
        assert f"rank={rank} of 2 gpus=0,1,2,3,4,5,6,7" in out, out
    local = slurm_site.until_state(single["id"], "succeeded", "failed")
    assert local["state"] == "succeeded" and local["site"] == "loc"
    assert "local-ok" in world.ok("GET", f"/jobs/{single['id']}/logs", "acme")["data"]
    waiting = slurm_site.job(nobody["id"], "acme")
    assert waiting["state"] == "queued" and "model not allowed" in waiting["reason"]


def test_an_unreachable_engine_keeps_jobs_queued_until_it_returns(slurm_site: LocalSite,
                                                                   slurm_cluster: testcluster.TestCluster,  # noqa: F811
                                                                   ) -> None:
    testcluster.stop_controller(slurm_cluster)
    try:
        job = slurm_site.submit("beta", devices_per_worker=8, sites=["hpc"], command=["true"])
        slurm_site.until(lambda: "unreachable" in slurm_site.job(job["id"])["reason"], timeout_s=60)
        assert slurm_site.job(job["id"])["state"] == "queued"
    finally:
        testcluster.start_controller(slurm_cluster)
    done = slurm_site.until_state(job["id"], "succeeded", "failed", timeout_s=90)
    assert done["state"] == "succeeded", world_events(slurm_site, job["id"])


def world_events(site: LocalSite, job_id: int) -> list[dict]:  # type: ignore[type-arg]
    return site.world.ok("GET", f"/jobs/{job_id}/events", "operator")  # type: ignore[no-any-return]


def test_draining_a_slurm_node_in_zhisuan_drains_it_in_slurm(slurm_site: LocalSite,
                                                              slurm_cluster: testcluster.TestCluster,  # noqa: F811
                                                              ) -> None:
    from zhisuan.drivers.slurm.driver import SlurmDriver

    slurm = SlurmDriver(str(slurm_cluster.conf_path), slurm_cluster.partition, root=slurm_cluster.workdir_root)
    node = slurm_cluster.nodes[-1]
    slurm_site.world.ok("PATCH", f"/nodes/hpc/{node}", "operator", {"drained": True})
    try:
        assert {n.name: n.state for n in slurm.import_inventory()}[node] == "drained"
        synced = slurm_site.world.ok("POST", "/sites/hpc/sync", "operator", {})
        assert node in synced["updated"]
        assert slurm_site.world.ok("GET", f"/nodes/hpc/{node}", "operator")["drained"] is True  # the sync keeps it
    finally:
        slurm_site.world.ok("PATCH", f"/nodes/hpc/{node}", "operator", {"drained": False})
    assert {n.name: n.state for n in slurm.import_inventory()}[node] != "drained"
