"""A Kubernetes site through the whole platform: inventory sync, admission, an (indexed) Job, state, logs.

The API server is the in-process FAKE of ``tests/drivers/kubernetes/fake_apiserver.py`` (no API server
can run here): its fake kubelet runs each container's command as a local process. What this shows is
the platform's path — sync, queue, ledger, driver calls, following — not a real cluster's behaviour.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.drivers.kubernetes.fake_apiserver import FakeApiServer, gpu_node
from tests.workloads.conftest import LocalSite


@pytest.fixture
def kube_site(local_site: LocalSite) -> Iterator[tuple[LocalSite, FakeApiServer]]:
    with FakeApiServer(nodes=[gpu_node(name, 8) for name in ("k1", "k2")]) as api:
        local_site.world.ok("POST", "/sites", "operator", {
            "name": "kube", "engine": "kubernetes", "region": "cn-south-1", "provider": "p2",
            "engine_config": {"api_url": api.url}})
        synced = local_site.world.ok("POST", "/sites/kube/sync", "operator", {})
        assert sorted(synced["added"]) == ["k1", "k2"], synced
        yield local_site, api


def test_a_gang_runs_as_an_indexed_job_on_the_fake_api_server(kube_site: tuple[LocalSite, FakeApiServer]) -> None:
    site, _api = kube_site
    job = site.submit("acme", workers=2, devices_per_worker=8, sites=["kube"], image="busybox:1.36",
                      command=["sh", "-c", 'echo "rank=$RANK of $WORLD_SIZE"'])
    done = site.until_state(job["id"], "succeeded", "failed", timeout_s=60)
    assert done["state"] == "succeeded", site.world.ok("GET", f"/jobs/{job['id']}/events", "acme")
    assert done["site"] == "kube" and done["model"] == "h100-sxm"
    logs = [site.world.ok("GET", f"/jobs/{job['id']}/logs", "acme", rank=r)["data"] for r in (0, 1)]
    assert sorted(line.strip() for line in logs) == ["rank=0 of 2", "rank=1 of 2"], logs


def test_a_job_without_an_image_is_refused_by_the_kubernetes_site(kube_site: tuple[LocalSite, FakeApiServer]) -> None:
    site, _api = kube_site
    job = site.submit("acme", devices_per_worker=1, sites=["kube"], command=["true"])
    done = site.until_state(job["id"], "failed", "succeeded", timeout_s=60)
    assert done["state"] == "failed" and "image" in done["reason"], done
