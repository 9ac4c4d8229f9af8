"""Jobs API: bad input is refused naming the field with nothing queued; tenants never see each other's jobs."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import Api, h100_node

GOOD: dict[str, Any] = {"command": ["python", "train.py"], "devices_per_worker": 8, "workers": 1}


def fleet(world: Api) -> None:
    """Two 8-H100 nodes in site s1, one in s2."""
    world.ok("POST", "/agent/register", "agent1", h100_node("gpu-a"))
    keys = world.ok("POST", "/sites/s1/agent-keys", "operator", {})["key"]
    world.keys["agent1b"] = keys
    world.ok("POST", "/agent/register", "agent1b", h100_node("gpu-b"))
    world.ok("POST", "/agent/register", "agent2", h100_node("gpu-c"))


BAD_INPUT = [
    ({"models": ["no-such-chip"]}, "models.0"),
    ({"devices_per_worker": 9}, "devices_per_worker"),
    ({"workers": 3}, "workers"),
    ({"max_run_seconds": -60}, "max_run_seconds"),
    ({"max_run_seconds": 10**9}, "max_run_seconds"),
    ({"max_run_seconds": 0}, "max_run_seconds"),
    ({"priority_class": "platinum"}, "priority_class"),
    ({"env": {"X": "y" * 40_000}}, "env"),
    ({"env": {f"V{i}": "x" for i in range(200)}}, "env"),
    ({"env": {"CUDA_VISIBLE_DEVICES": "0"}}, "env"),
    ({"env": {"1BAD": "x"}}, "env"),
    ({"workdir": "../other-tenant"}, "workdir"),
    ({"workdir": "/etc"}, "workdir"),
    ({"checkpoint_dir": "a/../../b"}, "checkpoint_dir"),
    ({"checkpoint_dir": "/shared/ckpt/other-tenant"}, "checkpoint_dir"),  # outside the tenant's space
    ({"max_restarts": -1}, "max_restarts"),
    ({"hang_timeout_s": 1}, "hang_timeout_s"),
    ({"script": "echo hi"}, None),  # both command and script
    ({"command": None}, None),  # neither
    ({"devices_per_worker": 2, "milli_per_device": 500}, None),
    ({"sites": ["nowhere"]}, "sites.0"),
    ({"regions": ["mars-1"]}, "regions.0"),
    ({"priority": 10**6}, "priority"),
    ({"cpu_cores": -1}, "cpu_cores"),
    ({"memory_gib": 0}, "memory_gib"),
    ({"devices_per_worker": 0, "models": ["h100-sxm"]}, "devices_per_worker"),
]


@pytest.mark.parametrize(("change", "field"), BAD_INPUT)
def test_bad_input_names_the_field_and_queues_nothing(world: Api, change: dict[str, Any], field: str | None) -> None:
    fleet(world)
    body = {**GOOD, **change}
    response = world.call("POST", "/jobs", "acme", {k: v for k, v in body.items() if v is not None})
    assert 400 <= response.status_code < 500, response.text
    if field is not None:
        error = response.json()["error"]
        assert field in (error.get("field") or "") or field in error["message"], response.text
    assert world.ok("GET", "/jobs", "acme") == []


def test_a_model_nobody_has_is_queued_not_refused(world: Api) -> None:
    fleet(world)
    job = world.ok("POST", "/jobs", "acme", {**GOOD, "models": ["ascend-910b2"]})
    assert job["state"] == "queued" and job["models"] == ["ascend-910b2"]


def test_gang_fits_largest_site(world: Api) -> None:
    fleet(world)
    job = world.ok("POST", "/jobs", "acme", {**GOOD, "workers": 2})
    assert job["workers"] == 2 and job["state"] == "queued"
    assert world.call("POST", "/jobs", "acme", {**GOOD, "workers": 2, "sites": ["s2"]}).json()["error"]["field"] \
        == "workers"


def test_tenants_never_see_or_touch_each_others_jobs(world: Api) -> None:
    fleet(world)
    job = world.ok("POST", "/jobs", "acme", GOOD)
    path = f"/jobs/{job['id']}"
    for method, suffix in (("GET", ""), ("GET", "/events"), ("GET", "/logs"), ("POST", "/cancel")):
        response = world.call(method, path + suffix, "beta", {} if method == "POST" else None)
        assert response.status_code == 404, (suffix, response.text)
    assert world.ok("GET", "/jobs", "beta") == []
    assert world.ok("GET", "/jobs", "p1") == []  # providers see no tenant's jobs
    assert world.call("POST", "/jobs", "p1", GOOD).status_code == 403
    assert world.call("GET", "/jobs/queue", "acme").status_code == 403
    assert [j["id"] for j in world.ok("GET", "/jobs", "operator")] == [job["id"]]
    assert world.ok("GET", path, "acme")["state"] == "queued"
    # a tenant cannot submit as another tenant
    assert world.call("POST", "/jobs", "acme", {**GOOD, "tenant": "beta"}).status_code == 403
    # agents cannot use the jobs API and tenants cannot use the agents' one
    assert world.call("GET", "/jobs", "agent1").status_code == 403
    assert world.call("POST", "/agent/workers", "acme", {"node": "gpu-a", "workers": []}).status_code == 403


def test_operator_submits_for_a_tenant_and_cancels_a_queued_job(world: Api) -> None:
    fleet(world)
    assert world.call("POST", "/jobs", "operator", GOOD).json()["error"]["field"] == "tenant"
    job = world.ok("POST", "/jobs", "operator", {**GOOD, "tenant": "beta"})
    assert job["tenant"] == "beta"
    cancelled = world.ok("POST", f"/jobs/{job['id']}/cancel", "beta", {})
    assert cancelled["state"] == "cancelled"
    assert world.call("POST", f"/jobs/{job['id']}/cancel", "beta", {}).status_code == 409
    states = [e["state"] for e in world.ok("GET", f"/jobs/{job['id']}/events", "beta")]
    assert states == ["queued", "cancelled"]


def test_an_agent_reports_only_its_own_nodes_workers(world: Api) -> None:
    fleet(world)
    # agent2 (site s2) cannot speak for s1's node, and an unknown worker key is a 404 naming it
    assert world.call("POST", "/agent/workers", "agent2", {"node": "gpu-a", "workers": []}).status_code == 404
    response = world.call("POST", "/agent/workers", "agent1", {"node": "gpu-a", "workers": [
        {"key": "zs-1-1-r0", "state": "running"}]})
    assert response.status_code == 404 and response.json()["error"]["field"] == "workers.0.key"
    assert world.ok("POST", "/agent/workers", "agent1", {"node": "gpu-a", "workers": []}) == []


def test_site_sync_is_for_engine_sites_and_says_when_the_engine_is_away(world: Api) -> None:
    world.ok("POST", "/sites", "operator", {"name": "loc", "engine": "local", "region": "cn-east-1", "provider": "p1"})
    assert world.call("POST", "/sites/loc/sync", "operator", {}).json()["error"]["field"] == "site"
    world.ok("POST", "/sites", "operator", {"name": "hpc", "engine": "slurm", "region": "cn-east-1", "provider": "p1",
                                            "engine_config": {"slurm_conf": "/nonexistent/slurm.conf"}})
    response = world.call("POST", "/sites/hpc/sync", "operator", {})
    assert response.status_code == 409 and "unreachable" in response.json()["error"]["message"], response.text
    assert world.call("POST", "/sites/hpc/sync", "acme", {}).status_code == 403
    assert world.call("POST", "/sites/hpc/sync", "p2", {}).status_code == 404  # another provider's site


def test_goodput_is_the_tenants_own(world: Api) -> None:
    fleet(world)
    job = world.ok("POST", "/jobs", "acme", GOOD)
    measured = world.ok("GET", f"/jobs/{job['id']}/goodput", "acme")
    assert measured["breakdown"]["productive"] == 0 and measured["breakdown"]["ettr"] is None  # still queued
    assert world.call("GET", f"/jobs/{job['id']}/goodput", "beta").status_code == 404
    refused = world.call("GET", "/goodput", "beta", tenant="acme")
    assert refused.status_code == 403 and refused.json()["error"]["field"] == "tenant"
    assert world.ok("GET", "/goodput", "operator", tenant="acme")["jobs"] == 1
    bad = world.call("GET", "/goodput", "operator", tenant="acme", since="2026-12-02T00:00:00Z",
                     until="2026-12-01T00:00:00Z")
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "until"
