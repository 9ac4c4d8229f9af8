"""The journey of a new user: start the platform, bring a machine under management, add tenants.

Runs the real ``zhisuan up`` and the real CLI as subprocesses. The agent's device tool output
comes from recorded nvidia-smi fixtures (ZHISUAN_FAKE_SMI_DIR) because this machine has no GPU.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import httpx

from tests.e2e.conftest import Platform, start_platform, stop

H100_FIXTURES = str(resources.files("zhisuan.agent").joinpath("demo_fixtures/h100x8"))


def test_up_serves_console_api_openapi_metrics(platform: Platform) -> None:
    assert httpx.get(f"{platform.url}/health", timeout=60).json()["status"] == "ok"
    assert "zhisuan" in httpx.get(f"{platform.url}/", timeout=60).text
    spec = httpx.get(f"{platform.url}/openapi.json", timeout=60).json()
    assert "/api/v1/agent/register" in spec["paths"]
    assert httpx.get(f"{platform.url}/docs", timeout=60).status_code == 200
    metrics = httpx.get(f"{platform.url}/metrics", timeout=60).text
    assert 'zhisuan_nodes{site="local",status="ready"} 1.0' in metrics  # this machine, as site local


def test_agent_registers_a_node_and_tenants_are_isolated(platform: Platform) -> None:
    platform.cli("provider", "create", "dc-east", "--revenue-share", "0.7")
    platform.cli("site", "create", "east-1", "--engine", "slurm", "--region", "cn-east-1", "--provider", "dc-east")
    agent_key = platform.cli_json("site", "agent-key", "east-1")["key"]
    agent = platform.cli("agent", "--server", platform.url, "--name", "gpu-01", "--once",
                         ZHISUAN_FAKE_SMI_DIR=H100_FIXTURES, ZHISUAN_AGENT_TOKEN=agent_key)
    assert "node registered" in agent.stdout
    node = platform.cli_json("node", "show", "east-1/gpu-01")
    assert [d["model"] for d in node["devices"]] == ["h100-sxm"] * 8
    assert "8x h100-sxm" in platform.cli("node", "list").stdout

    platform.cli("tenant", "create", "acme")
    platform.cli("tenant", "create", "beta")
    platform.cli("user", "create", "acme-ops", "--role", "tenant", "--tenant", "acme")
    platform.cli("user", "create", "beta-ops", "--role", "tenant", "--tenant", "beta")
    acme_key = platform.cli_json("key", "create", "--user", "acme-ops")["key"]
    beta_key = platform.cli_json("key", "create", "--user", "beta-ops")["key"]
    assert [t["name"] for t in platform.cli_json("tenant", "list", ZHISUAN_API_KEY=beta_key)] == ["beta"]
    denied = platform.cli("tenant", "show", "acme", check=False, ZHISUAN_API_KEY=beta_key)
    assert denied.returncode == 1 and denied.stderr.startswith("error: tenant 'acme' not found")
    assert len(denied.stderr.strip().splitlines()) == 1
    keys = platform.cli_json("key", "list", ZHISUAN_API_KEY=beta_key)
    assert {k["username"] for k in keys} == {"beta-ops"}
    assert platform.cli_json("tenant", "list", ZHISUAN_API_KEY=acme_key)[0]["name"] == "acme"


def test_cli_errors_are_one_line(platform: Platform) -> None:
    result = platform.cli("node", "add", "n1", "--site", "local", "--cpu", "8", "--memory-mib", "1024",
                          "--accel", "warp-drive:8", check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "error: unknown accelerator model 'warp-drive'; see 'zhisuan catalog list' for the known ones "
        "(field: accelerators.0.model) [HTTP 422]"
    )
    unreachable = platform.cli("tenant", "list", check=False, ZHISUAN_SERVER="http://127.0.0.1:9")
    assert unreachable.returncode == 1 and "cannot reach zhisuan" in unreachable.stderr


def test_catalog_from_the_cli(platform: Platform) -> None:
    models = platform.cli_json("catalog", "list")
    assert len(models) >= 25 and len({m["vendor"] for m in models}) >= 6
    assert platform.cli_json("catalog", "show", "Ascend910B3")["key"] == "ascend-910b3"


def test_second_start_prints_no_credentials_and_keeps_state(tmp_path: Path) -> None:
    first = start_platform(tmp_path)
    first.cli("tenant", "create", "acme")
    stop(first)
    second = start_platform(tmp_path, first_start=False)
    try:
        assert [t["name"] for t in second.cli_json("tenant", "list", ZHISUAN_API_KEY=first.api_key)] == ["acme"]
    finally:
        output = stop(second)
    assert "API key:" not in output and "console login" not in output


def test_up_on_postgresql(tmp_path: Path) -> None:
    """``--database postgresql://…`` runs the same platform; migrations are applied at start."""
    import uuid

    from tests.conftest import _create_pg_database, _drop_pg_database, postgres_admin_url, with_database

    admin = postgres_admin_url()
    if not admin:
        import os

        import pytest

        if os.environ.get("CI") == "true":
            pytest.fail("CI must run the PostgreSQL tests")
        pytest.skip("PostgreSQL not configured (run the suite through scripts/test)")
    name = f"zhisuan_up_{uuid.uuid4().hex[:10]}"
    _create_pg_database(admin, name)
    try:
        running = start_platform(tmp_path, "--database", with_database(admin, name))
        try:
            running.cli("tenant", "create", "acme")
            assert [t["name"] for t in running.cli_json("tenant", "list")] == ["acme"]
            assert running.cli_json("site", "show", "local")["engine"] == "local"
        finally:
            stop(running)
        assert not (tmp_path / "data" / "zhisuan.db").exists()
    finally:
        _drop_pg_database(admin, name)
