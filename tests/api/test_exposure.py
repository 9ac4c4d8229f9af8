"""What each caller may read: /metrics, ?tenant= filters, node and site names; browser headers."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import Api, Clock, h100_node, make_settings
from tests.api.econ_setup import START, a800_node
from zhisuan.api.app import create_app
from zhisuan.catalog.loader import default_catalog


def test_metrics_need_loopback_or_a_metrics_key(world: Api) -> None:
    assert world.client.get("/metrics").status_code == 401  # the test client is not a loopback address
    operator = {"Authorization": f"Bearer {world.keys['operator']}"}
    assert world.client.get("/metrics", headers=operator).status_code == 403  # no 'metrics' scope
    key = world.ok("POST", "/keys", "operator", {"name": "prometheus", "scopes": ["metrics"]})["key"]
    response = world.client.get("/metrics", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200 and "zhisuan_nodes" in response.text
    tenant_key = world.ok("POST", "/keys", "operator", {"user": "acme-user", "scopes": ["metrics"]})["key"]
    assert world.client.get("/metrics", headers={"Authorization": f"Bearer {tenant_key}"}).status_code == 403


def test_metrics_open_to_loopback_and_when_public(database_url: str, tmp_path: Path, clock: Clock) -> None:
    app = create_app(make_settings(database_url, tmp_path), clock=clock, catalog=default_catalog())
    with TestClient(app, client=("127.0.0.1", 40000)) as local, TestClient(app, client=("::1", 40000)) as local6:
        assert local.get("/metrics").status_code == 200 and local6.get("/metrics").status_code == 200
    public = make_settings(database_url, tmp_path)
    object.__setattr__(public, "metrics_public", True)
    with TestClient(create_app(public, clock=clock, catalog=default_catalog())) as remote:
        assert remote.get("/metrics").status_code == 200


@pytest.mark.parametrize("path", ["/allocations", "/contracts", "/invoices", "/usage", "/usage/summary"])
def test_tenant_filter_answers_404_alike_for_unknown_and_foreign(world: Api, path: str) -> None:
    foreign = world.call("GET", path, "acme", tenant="beta")
    unknown = world.call("GET", path, "acme", tenant="no-such-tenant")
    assert foreign.status_code == unknown.status_code == 404, (foreign.text, unknown.text)
    assert foreign.json()["error"]["field"] == unknown.json()["error"]["field"] == "tenant"
    assert world.call("GET", path, "acme", tenant="acme").status_code == 200
    assert world.call("GET", path, "operator", tenant="beta").status_code == 200


def test_tenants_read_node_names_only_of_nodes_they_lease(world: Api) -> None:
    a800_node(world, "a800-1")
    a800_node(world, "a800-2")
    for node in ("s1/a800-1", "s1/a800-2"):
        world.ok("POST", "/allocations", "operator", {"tenant": "acme", "node": node, "devices": [0],
                                                      "start": START})
    lease = {"tenant": "acme", "capacity": {"kind": "nodes", "nodes": ["s1/a800-2"]},
             "pricing_model": "server_month", "unit_price": "75000", "start": "2027-06-01T00:00:00Z",
             "closed_months": 12}
    world.ok("POST", "/contracts", "operator", lease)
    seen = {(row["site"], row["node"]) for row in world.ok("GET", "/allocations", "acme")}
    assert seen == {("s1", None), ("s1", "a800-2")}
    assert {row["node"] for row in world.ok("GET", "/allocations", "operator")} == {"a800-1", "a800-2"}


@pytest.mark.parametrize("path", ["/", "/console/console.js", "/health", "/api/v1/auth/whoami"])
def test_browser_headers(world: Api, path: str) -> None:
    response = world.client.get(path)
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "'unsafe-inline'" not in policy and "frame-ancestors 'none'" in policy
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"


def test_console_has_no_inline_script_or_style(world: Api) -> None:
    page = world.client.get("/").text
    assert "<script>" not in page and "<style>" not in page and "style=" not in page
    assert world.client.get("/console/console.js").headers["content-type"].startswith("text/javascript")
    assert world.client.get("/console/console.css").headers["content-type"].startswith("text/css")
    assert world.client.get("/console/index.html").status_code == 404
    docs = world.client.get("/docs")
    assert "script-src 'self' 'unsafe-inline'" in docs.headers["content-security-policy"]


def test_tenants_read_replica_nodes_only_of_nodes_they_lease(world: Api) -> None:
    world.ok("POST", "/agent/register", "agent1", h100_node("gpu-a", 8))
    world.ok("POST", "/models", "operator", {"name": "qwen", "source": "/models/qwen", "engine": "vllm"})
    out = world.ok("POST", "/deployments", "acme", {"model": "qwen", "devices_per_replica": 1})
    assert [r["node"] for r in out["replica_states"]] == [None]
    operator_view = world.ok("GET", f"/deployments/{out['name']}", "operator")
    assert [r["node"] for r in operator_view["replica_states"]] == ["s1/gpu-a"]
