"""Model services end to end: ``zhisuan up`` registers and deploys SmolLM2 through the registry; the
CLI deploys a second replica set, undeploys (drain, stop, devices released) — with the real engine."""

from __future__ import annotations

import time
from typing import Any

import openai
import pytest

from tests.e2e.conftest import Platform
from tests.e2e.test_onebox_maas import gateway_url, wait_for_model
from zhisuan.engines.models import SMOLLM2_NAME


def wait_for_status(platform: Platform, name: str, status: str, timeout_s: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    row: dict[str, Any] = {}
    while time.monotonic() < deadline:
        row = platform.cli_json("deployment", "show", name)
        if row["status"] == status:
            return row
        time.sleep(0.5)
    raise AssertionError(f"deployment {name} did not reach {status}: {row}")


def ask(client: openai.OpenAI) -> str:
    reply = client.chat.completions.create(model=SMOLLM2_NAME, max_tokens=4, temperature=0,
                                           messages=[{"role": "user", "content": "Say yes."}])
    return reply.choices[0].message.content or ""


def test_deploy_scale_and_undeploy_through_the_cli(maas_platform: Platform) -> None:
    platform = maas_platform
    client = openai.OpenAI(base_url=gateway_url(platform), api_key=platform.api_key, max_retries=0)
    wait_for_model(client)
    # The one-box default came through the registry and the placement engine like any deployment.
    assert [m["name"] for m in platform.cli_json("model", "list")] == [SMOLLM2_NAME]
    first = wait_for_status(platform, SMOLLM2_NAME, "running")
    assert first["tenant"] is None and first["site"] == "local"
    assert [r["state"] for r in first["replica_states"]] == ["healthy"]
    table = platform.cli("deployment", "list").stdout
    assert SMOLLM2_NAME in table and "running" in table and ":healthy" in table

    # A second deployment of the same model: the gateway routes over both.
    platform.cli_json("deployment", "create", SMOLLM2_NAME, "--name", "smol-b", "--cpu", "0.5")
    second = wait_for_status(platform, "smol-b", "running")
    assert second["replica_states"][0]["port"] != first["replica_states"][0]["port"]

    # Undeploy the first: it drains and stops; the model is still served by smol-b.
    platform.cli("deployment", "delete", SMOLLM2_NAME)
    stopped = wait_for_status(platform, SMOLLM2_NAME, "stopped")
    assert stopped["stopped_at"] and [r["state"] for r in stopped["replica_states"]] == ["stopped"]
    assert ask(client)
    assert [d["name"] for d in platform.cli_json("deployment", "list")] == ["smol-b"]

    # Undeploy the last one: the model is still registered but nothing runs it (503 + Retry-After).
    platform.cli("deployment", "delete", "smol-b")
    wait_for_status(platform, "smol-b", "stopped")
    with pytest.raises(openai.InternalServerError) as refused:
        ask(client)
    assert refused.value.status_code == 503 and refused.value.response.headers["retry-after"] == "5"
    assert refused.value.code == "model_not_running"

    # Too big for this machine: refused whole, one clear line, exit 1.
    result = platform.cli("deployment", "create", SMOLLM2_NAME, "--replicas", "3", "--cpu", "64", check=False)
    assert result.returncode == 1
    assert "does not fit" in result.stderr and "not enough free CPU" in result.stderr
